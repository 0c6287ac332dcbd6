"""A local stand-in for the six subscription APIs FlexiProxy's accounts talk to, on one loopback
port: Anthropic (Claude accounts), ChatGPT's Codex backend, Google Code Assist (Gemini CLI),
Qwen's and iFlow's OpenAI-compatible chat, GitHub's Copilot token mint and the Copilot API, and
iFlow's user info. Stdlib only, like the other mocks in this folder; the server, its record and
the protocols' stream writers are :mod:`stand_in`'s.

Each kind lives under its own path prefix, so a request that went to the wrong kind's API shows
up as a 404 here (point ``subscription::Endpoints`` at :meth:`SubscriptionUpstream.api_roots`):

* ``/claude/v1/messages`` — Anthropic Messages, JSON or SSE. Needs ``Authorization: Bearer
  <access token>``, ``anthropic-version``, ``anthropic-beta`` containing ``oauth-2025-04-20``,
  no ``x-api-key``, and (as the real API does for subscription tokens) the Claude Code identity
  as the first system block.
* ``/claude/api/oauth/profile`` — the account's plan (``has_claude_max``), read after login.
* ``/codex/responses`` — OpenAI Responses, SSE ONLY: refuses ``stream`` other than true,
  ``store`` other than false, a missing ``instructions`` and ``stream_options``; needs the bearer,
  ``chatgpt-account-id`` (the login's account: the ID token's ``sub`` here, as the OAuth test
  server has no ChatGPT claim), ``openai-beta: responses=experimental`` and an ``originator``;
  ends with ``response.completed`` carrying the whole response.
* ``/code-assist/v1internal:loadCodeAssist`` / ``:onboardUser`` (a done operation with a
  project) / ``:generateContent`` / ``:streamGenerateContent?alt=sse`` — the
  ``{model, project, request}`` envelope in, ``{response: ...}`` out; the project must be the one
  onboarding gave.
* ``/qwen/v1/chat/completions`` — OpenAI chat with the bearer.
* ``/github/copilot_internal/v2/token`` — the mint: ``Authorization: token <github token>`` and
  the editor headers; answers ``{token, expires_at, refresh_in, endpoints: {api}}`` with
  ``api`` = ``/copilot-api`` here. ``/copilot-api/chat/completions`` needs a minted token and
  the editor headers (``editor-version``, ``editor-plugin-version``, ``copilot-integration-id``,
  ``openai-intent``, a Copilot ``User-Agent``).
* ``/iflow/api/oauth/getUserInfo?accessToken=`` — ``{success, data: {apiKey, email}}``;
  ``/iflow/v1/chat/completions`` needs that API key as bearer and ``User-Agent: iFlow-Cli``.

Access tokens are checked against the OAuth server that issued them: the mock asks the issuer's
userinfo endpoint (``{issuer}/me``) on every request, so only a token the server really issued
and still honours passes; what it answers (``sub``) is the account the request is for.

The answer text is ``<kind> says: <last user text>``; usage is ``INPUT_TOKENS`` in,
``OUTPUT_TOKENS`` out, in each protocol's terms.

Test hooks: ``GET /test/requests`` (every request: kind, method, path, query, headers with auth
values replaced by ``<scheme> sha256:<12 hex>``, JSON body, status, ``token`` = that hash, ``sub``),
``POST /test/reset``, ``POST /test/fail?status=401&count=1[&kind=claude]`` (the next `count`
model requests — not set-up, mint or user info — of that kind, or any, answer `status` in their
protocol's error shape).

Run alone: ``python subscription_upstream.py --issuer http://127.0.0.1:PORT [--port 9200]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from stand_in import AnthropicStream, ChatStream, GeminiStream, ResponsesStream, StandInHandler, StandInServer
from stand_in import anthropic_error, chat_completion, gemini_error, openai_error, run_alone

INPUT_TOKENS = 13
OUTPUT_TOKENS = 5
OAUTH_BETA = "oauth-2025-04-20"
CLAUDE_CODE_IDENTITY = "You are Claude Code, Anthropic's official CLI for Claude."
CODEX_BETA = "responses=experimental"
# The usage windows the Codex backend reports on every answer, as the Codex CLI reads them.
CODEX_QUOTA_HEADERS = {
    "x-codex-primary-used-percent": "42.0",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-at": "1900000000",
    "x-codex-secondary-used-percent": "7",
    "x-codex-secondary-window-minutes": "10080",
}
IFLOW_USER_AGENT = "iFlow-Cli"
FREE_TIER = "free-tier"
COPILOT_EDITOR_HEADERS = ("editor-version", "editor-plugin-version", "copilot-integration-id", "openai-intent")
MINT_EDITOR_HEADERS = ("editor-version", "editor-plugin-version")
# The pause after each streamed event, so that a stream really arrives in pieces.
PACE_S = 0.005
# How long a minted Copilot token lives: long enough that a test never sees a second mint unless
# the gateway was told the first one is bad.
COPILOT_TOKEN_TTL_S = 1800
# Which kinds answer in which protocol, for the error shape of `/test/fail`.
PROTOCOL = {
    "claude": "anthropic",
    "codex": "responses",
    "gemini_cli": "google",
    "qwen": "chat",
    "copilot": "chat",
    "iflow": "chat",
}


def token_hash(value: str) -> str:
    """What the record shows for a token: enough to tell tokens apart, nothing to use."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


class Refused(Exception):
    """An answer the real API would give instead of a completion."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class SubscriptionUpstream(StandInServer):
    """The server; use as a context manager. ``validate`` maps an access token to the account
    (``sub``) it belongs to, or None; by default it asks ``{issuer}/me``."""

    def __init__(
        self,
        issuer: str | None = None,
        port: int = 0,
        validate: Callable[[str], str | None] | None = None,
    ):
        self.issuer = issuer
        self._validate = validate or self._userinfo
        self._fail: list[dict[str, Any]] = []  # [{"status", "count", "kind"}]
        self._api_keys: dict[str, str] = {}  # iFlow API key -> sub
        self._iflow_key_of: dict[str, str] = {}  # sub -> its iFlow API key
        self._copilot: dict[str, str] = {}  # minted Copilot token -> sub
        self._projects: dict[str, str] = {}  # sub -> Code Assist project after onboarding
        super().__init__(_Handler, "127.0.0.1", port)

    # -- life ------------------------------------------------------------------------------

    def api_roots(self) -> dict[str, str]:
        """The ``api`` part of ``PUT /api/accounts/endpoints`` (``subscription::Endpoints``)."""
        return {
            "claude": f"{self.url}/claude",
            "codex": f"{self.url}/codex",
            "code_assist": f"{self.url}/code-assist",
            "qwen_default": f"{self.url}/qwen/v1",
            "iflow": f"{self.url}/iflow/v1",
            "iflow_user_info": f"{self.url}/iflow/api/oauth/getUserInfo",
            "github_api": f"{self.url}/github",
            "copilot_default": f"{self.url}/copilot-default",
        }

    # -- for tests ---------------------------------------------------------------------------

    def fail_next(self, status: int = 401, count: int = 1, kind: str | None = None) -> None:
        with self._lock:
            self._fail.append({"status": status, "count": count, "kind": kind})

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._fail.clear()

    def recorded(self, kind: str | None = None, path_suffix: str | None = None) -> list[dict[str, Any]]:
        """The record's rows (``requests``) of that kind, and whose path ends so."""
        return [
            r
            for r in self.requests
            if (kind is None or r["kind"] == kind) and (path_suffix is None or r["path"].endswith(path_suffix))
        ]

    # -- tokens ------------------------------------------------------------------------------

    def _userinfo(self, token: str) -> str | None:
        if not self.issuer:
            return None
        request = urllib.request.Request(f"{self.issuer}/me", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read()).get("sub")
        except (urllib.error.URLError, ValueError, OSError):
            return None

    def account_of(self, token: str) -> str | None:
        """The account an access token belongs to, asked of the issuer every time (no cache: a
        token the server stopped honouring, e.g. after a revoked grant, must fail here too)."""
        return self._validate(token)

    def _take_failure(self, kind: str) -> int | None:
        with self._lock:
            for rule in self._fail:
                if rule["count"] > 0 and rule["kind"] in (None, kind):
                    rule["count"] -= 1
                    return int(rule["status"])
        return None

    # -- test hooks ----------------------------------------------------------------------------

    def _test_hook(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/test/requests" and method == "GET":
            return 200, self.requests
        if path == "/test/reset" and method == "POST":
            self.reset()
            return 200, {"ok": True}
        if path == "/test/fail" and method == "POST":
            self.fail_next(int(query.get("status", "401")), int(query.get("count", "1")), query.get("kind"))
            return 200, {"ok": True}
        return 404, {"error": "no such test hook"}


class _Handler(StandInHandler):
    """Records each request as a JSON-able row (auth values hashed) and answers through an
    :class:`_Exchange`; the ``/test/`` hooks are answered without a row."""

    owner: SubscriptionUpstream

    def new_record(self, **fields: Any) -> dict[str, Any] | None:
        if fields["path"].startswith("/test/"):
            return None
        headers: dict[str, str] = {}
        for name, value in fields["headers"]:
            lname = name.lower()
            if lname in ("authorization", "x-api-key", "x-goog-api-key"):
                scheme, _, rest = value.partition(" ")
                value = f"{scheme} {token_hash(rest)}" if rest else token_hash(value)
            headers[lname] = value
        return {
            "kind": None,
            "method": fields["method"],
            "path": fields["path"],
            "query": {k: (token_hash(v) if k == "accessToken" else v) for k, v in fields["query"].items()},
            "headers": headers,
            "body": fields["json"],
            "status": None,
            "token": None,
            "sub": None,
            "at": time.time(),
        }

    def note_status(self, status: int | None) -> None:
        if self.record is not None:
            self.record["status"] = status

    def answer(self, rec: dict[str, Any] | None) -> None:
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query))
        if rec is None:
            self.send_json(*self.owner._test_hook(self.command, split.path, query))
            return
        ctx = _Exchange(self.owner, self, split.path, query, rec["body"], rec)
        try:
            ctx.route()
        except Refused as refused:
            ctx.error(refused.status, refused.message)

    def client_left(self, rec: dict[str, Any] | None) -> None:
        if rec is not None:
            rec["status"] = rec["status"] or 499
        self.close_connection = True

    def end(self, rec: dict[str, Any]) -> None:
        pass  # a row has no done event: the tests read the status it records


class _Exchange:
    """One request being answered."""

    def __init__(
        self,
        up: SubscriptionUpstream,
        h: StandInHandler,
        path: str,
        query: dict[str, str],
        body: Any,
        record: dict[str, Any],
    ):
        self.up, self.h, self.path, self.query, self.body, self.record = up, h, path, query, body, record
        self.protocol = "chat"

    # -- routing ------------------------------------------------------------------------------

    def route(self) -> None:
        p, method = self.path, self.h.command
        if p.startswith("/code-assist/v1internal"):
            self._kind("gemini_cli")
            return self.code_assist(p[len("/code-assist/v1internal") :])
        routes: dict[tuple[str, str], tuple[str, Callable[[], None]]] = {
            ("POST", "/claude/v1/messages"): ("claude", self.claude),
            ("GET", "/claude/api/oauth/profile"): ("claude_profile", self.claude_profile),
            ("POST", "/codex/responses"): ("codex", self.codex),
            ("POST", "/qwen/v1/chat/completions"): ("qwen", lambda: self.chat(self.bearer_account())),
            ("GET", "/github/copilot_internal/v2/token"): ("copilot_mint", self.copilot_mint),
            ("POST", "/copilot-api/chat/completions"): ("copilot", self.copilot_chat),
            ("GET", "/iflow/api/oauth/getUserInfo"): ("iflow_user_info", self.iflow_user_info),
            ("POST", "/iflow/v1/chat/completions"): ("iflow", self.iflow_chat),
        }
        if (method, p) not in routes:
            self.protocol = "chat"
            raise Refused(404, f"no such endpoint here: {method} {p}")
        kind, answer = routes[(method, p)]
        self._kind(kind)
        return answer()

    def _kind(self, kind: str) -> None:
        self.record["kind"] = kind
        self.protocol = {"copilot_mint": "github", "iflow_user_info": "iflow", "claude_profile": "anthropic"}.get(kind) or PROTOCOL[kind]

    def _maybe_fail(self) -> None:
        status = self.up._take_failure(self.record["kind"])
        if status is not None:
            raise Refused(status, f"injected failure {status} (POST /test/fail)")

    def header(self, name: str) -> str:
        return self.h.headers.get(name) or ""

    def bearer_account(self, token: str | None = None) -> str:
        """The account of the request's bearer token (an OAuth access token); 401 otherwise."""
        if token is None:
            auth = self.header("Authorization")
            if not auth.startswith("Bearer "):
                raise Refused(401, "missing bearer token")
            token = auth[len("Bearer ") :]
        self.record["token"] = token_hash(token)
        sub = self.up.account_of(token)
        if sub is None:
            raise Refused(401, "the access token is not valid at the issuer")
        self.record["sub"] = sub
        return sub

    def issued_bearer(self, issued: dict[str, str], refusal: str) -> str:
        """The account of the request's bearer token when this server issued it (a minted Copilot
        token, an iFlow API key: `issued` maps them to accounts); 401 with `refusal` otherwise."""
        auth = self.header("Authorization")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        self.record["token"] = token_hash(token)
        with self.up._lock:
            sub = issued.get(token)
        if sub is None:
            raise Refused(401, refusal)
        self.record["sub"] = sub
        return sub

    # -- Claude --------------------------------------------------------------------------------

    def claude(self) -> None:
        if self.header("x-api-key"):
            raise Refused(401, "x-api-key sent with an OAuth login")
        self.bearer_account()
        if not self.header("anthropic-version"):
            raise Refused(400, "anthropic-version header is required")
        betas = [b.strip() for b in self.header("anthropic-beta").split(",")]
        if OAUTH_BETA not in betas:
            raise Refused(401, f"OAuth authentication is currently not supported (no {OAUTH_BETA} beta)")
        self._maybe_fail()
        body = self._object()
        system = body.get("system")
        first = system[0].get("text") if isinstance(system, list) and system and isinstance(system[0], dict) else None
        if first != CLAUDE_CODE_IDENTITY:
            raise Refused(403, "This credential is only authorized for use with Claude Code and cannot be used for other API requests.")
        if not isinstance(body.get("max_tokens"), int):
            raise Refused(400, "max_tokens: Field required")
        text = f"claude says: {last_user_text(body.get('messages'), 'anthropic')}"
        model = body.get("model") or ""
        message = {
            "id": "msg_mock1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        }
        if not body.get("stream"):
            return self.json(200, message)
        stream = AnthropicStream(self.h, split_text=halves, pace=PACE_S)
        stream.start(message, {"input_tokens": INPUT_TOKENS, "output_tokens": 1})
        stream.block(0, message["content"][0])
        stream.finish("end_turn", OUTPUT_TOKENS)

    def claude_profile(self) -> None:
        sub = self.bearer_account()
        if OAUTH_BETA not in [b.strip() for b in self.header("anthropic-beta").split(",")]:
            raise Refused(401, f"OAuth authentication is currently not supported (no {OAUTH_BETA} beta)")
        self.json(200, {"account": {"uuid": f"uuid-{sub}", "email": f"{sub}@example.com", "has_claude_max": True,
                                    "has_claude_pro": False},
                        "organization": {"uuid": "org-1", "organization_type": "claude_max"}})

    # -- Codex ---------------------------------------------------------------------------------

    def codex(self) -> None:
        sub = self.bearer_account()
        if self.header("chatgpt-account-id") != sub:
            raise Refused(401, f"chatgpt-account-id {self.header('chatgpt-account-id')!r} is not the login's account")
        if self.header("openai-beta") != CODEX_BETA:
            raise Refused(400, f"OpenAI-Beta must be {CODEX_BETA}")
        if not self.header("originator"):
            raise Refused(400, "originator header is required")
        self._maybe_fail()
        body = self._object()
        if body.get("stream") is not True:
            raise Refused(400, "Stream must be set to true")
        if body.get("store") is not False:
            raise Refused(400, "Store must be set to false")
        if not isinstance(body.get("instructions"), str):
            raise Refused(400, "Instructions are required")
        if "stream_options" in body:
            raise Refused(400, "Unsupported parameter: stream_options")
        text = f"codex says: {last_user_text(body.get('input'), 'responses')}"
        model = body.get("model") or ""
        message = {"id": "msg_codex1", "type": "message", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        base = {"id": "resp_codex1", "object": "response", "created_at": int(time.time()), "model": model,
                "instructions": body["instructions"], "store": False, "output": [], "status": "in_progress",
                "usage": None, "error": None, "incomplete_details": None, "parallel_tool_calls": True,
                "tool_choice": "auto", "tools": []}
        done = {**base, "status": "completed", "output": [message], "usage": {
            "input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}}
        stream = ResponsesStream(self.h, split_text=halves, pace=PACE_S, headers=CODEX_QUOTA_HEADERS)
        stream.emit("response.created", response=base)
        stream.emit("response.in_progress", response=base)
        stream.item(0, message)
        stream.completed(done)

    # -- Code Assist ---------------------------------------------------------------------------

    def code_assist(self, rest: str) -> None:
        sub = self.bearer_account()
        if rest == ":loadCodeAssist" and self.h.command == "POST":
            body = self._object()
            if not isinstance(body.get("metadata"), dict):
                raise Refused(400, "metadata is required")
            project = self.up._projects.get(sub)
            if project is None:
                return self.json(200, {"allowedTiers": [
                    {"id": FREE_TIER, "name": "Gemini Code Assist for individuals", "isDefault": True},
                    {"id": "standard-tier", "name": "Gemini Code Assist Standard", "userDefinedCloudaicompanionProject": True},
                ]})
            return self.json(200, {"currentTier": {"id": FREE_TIER, "name": "Gemini Code Assist for individuals"},
                                   "cloudaicompanionProject": project})
        if rest == ":onboardUser" and self.h.command == "POST":
            body = self._object()
            if body.get("tierId") != FREE_TIER:
                raise Refused(400, f"unexpected tierId {body.get('tierId')!r}")
            if body.get("cloudaicompanionProject"):
                raise Refused(400, "the free tier takes no project")
            project = f"mock-project-{sub}"
            with self.up._lock:
                self.up._projects[sub] = project
            return self.json(200, {"name": f"operations/onboard-{sub}", "done": True, "response": {
                "@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
                "cloudaicompanionProject": {"id": project, "name": project}}})
        if rest.startswith("/operations/") and self.h.command == "GET":
            project = self.up._projects.get(sub)
            return self.json(200, {"name": rest[1:], "done": project is not None,
                                   "response": {"cloudaicompanionProject": {"id": project}} if project else None})
        if rest in (":generateContent", ":streamGenerateContent") and self.h.command == "POST":
            self._maybe_fail()
            stream = rest == ":streamGenerateContent"
            if stream and self.query.get("alt") != "sse":
                raise Refused(400, "streamGenerateContent is served here only with ?alt=sse")
            body = self._object()
            unknown = sorted(set(body) - {"model", "project", "request", "user_prompt_id"})
            if unknown:
                raise Refused(400, f"unknown envelope fields {unknown}")
            if not body.get("model"):
                raise Refused(400, "model is required in the envelope")
            if body.get("project") != self.up._projects.get(sub):
                raise Refused(403, f"project {body.get('project')!r} is not this account's ({self.up._projects.get(sub)!r})")
            request = body.get("request")
            if not isinstance(request, dict) or not isinstance(request.get("contents"), list):
                raise Refused(400, "request.contents is required")
            if "model" in request:
                raise Refused(400, "the model goes in the envelope, not in request")
            text = f"gemini_cli says: {last_user_text(request['contents'], 'google')}"
            usage = {"promptTokenCount": INPUT_TOKENS, "candidatesTokenCount": OUTPUT_TOKENS,
                     "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS}
            if not stream:
                return self.json(200, {"response": {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": usage, "modelVersion": body["model"], "responseId": "ca-1"}, "traceId": "trace-1"})
            pieces = halves(text)
            stream = GeminiStream(self.h, sse=True, pace=PACE_S)
            for n, piece in enumerate(pieces):
                candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
                inner: dict[str, Any] = {"candidates": [candidate], "modelVersion": body["model"], "responseId": "ca-1"}
                if n == len(pieces) - 1:
                    candidate["finishReason"] = "STOP"
                    inner["usageMetadata"] = usage
                stream.send({"response": inner, "traceId": "trace-1"})
            return stream.end()
        raise Refused(404, f"no Code Assist method {rest!r}")

    # -- OpenAI chat (Qwen, Copilot, iFlow) ---------------------------------------------------

    def chat(self, sub: str) -> None:
        self._maybe_fail()
        body = self._object()
        kind = self.record["kind"]
        text = f"{kind} says: {last_user_text(body.get('messages'), 'chat')}"
        model = body.get("model") or ""
        usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
        created = int(time.time())
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            return self.json(200, chat_completion("chatcmpl-mock1", created, model, message, "stop", usage))

        stream = ChatStream(self.h, "chatcmpl-mock1", created, model, pace=PACE_S)
        stream.delta({"role": "assistant", "content": ""})
        for piece in halves(text):
            stream.delta({"content": piece})
        stream.delta({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            stream.usage(usage)
        stream.done()

    def copilot_mint(self) -> None:
        auth = self.header("Authorization")
        if not auth.startswith("token "):
            raise Refused(401, "Bad credentials (the mint takes `Authorization: token <github token>`)")
        missing = [h for h in MINT_EDITOR_HEADERS if not self.header(h)]
        if missing or not self.header("User-Agent"):
            raise Refused(400, f"missing editor headers {missing or ['user-agent']}")
        sub = self.bearer_account(auth[len("token ") :])
        minted = "cop-" + secrets.token_hex(16)
        with self.up._lock:
            self.up._copilot[minted] = sub
        now = int(time.time())
        self.json(200, {"token": minted, "expires_at": now + COPILOT_TOKEN_TTL_S, "refresh_in": COPILOT_TOKEN_TTL_S - 300,
                        "endpoints": {"api": f"{self.up.url}/copilot-api"}, "sku": "free_limited_copilot"})

    def copilot_chat(self) -> None:
        sub = self.issued_bearer(self.up._copilot, "unauthorized: the token is not a minted Copilot token")
        missing = [h for h in COPILOT_EDITOR_HEADERS if not self.header(h)]
        if missing:
            raise Refused(400, f"missing Copilot editor headers {missing}")
        if "copilot" not in self.header("User-Agent").lower():
            raise Refused(400, f"User-Agent {self.header('User-Agent')!r} is not a Copilot editor's")
        self.chat(sub)

    def iflow_user_info(self) -> None:
        access = self.query.get("accessToken") or ""
        self.record["token"] = token_hash(access)
        sub = self.up.account_of(access) if access else None
        if sub is None:
            return self.json(200, {"success": False, "code": "401", "message": "invalid accessToken", "data": None})
        self.record["sub"] = sub
        with self.up._lock:
            key = self.up._iflow_key_of.get(sub)
            if key is None:
                key = "sk-iflow-" + secrets.token_hex(16)
                self.up._iflow_key_of[sub] = key
                self.up._api_keys[key] = sub
        self.json(200, {"success": True, "code": "200", "message": "success",
                        "data": {"apiKey": key, "email": f"{sub}@iflow.example", "userName": sub}})

    def iflow_chat(self) -> None:
        if self.header("User-Agent") != IFLOW_USER_AGENT:
            raise Refused(403, f"User-Agent {self.header('User-Agent')!r} is not the iFlow CLI's")
        refusal = "invalid API key (iFlow takes the key from the user info, not the OAuth token)"
        self.chat(self.issued_bearer(self.up._api_keys, refusal))

    # -- writing -------------------------------------------------------------------------------

    def _object(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise Refused(400, "the body must be a JSON object")
        return self.body

    def json(self, status: int, payload: Any) -> None:
        self.h.send_json(status, payload)

    def error(self, status: int, message: str) -> None:
        """`status` with the error body of the request's protocol."""
        if self.protocol == "anthropic":
            payload: Any = anthropic_error(status, message)
        elif self.protocol == "google":
            payload = gemini_error(status, message)
        elif self.protocol == "github":
            payload = {"message": message, "documentation_url": "https://docs.github.com/rest"}
        elif self.protocol == "responses":
            payload = {"detail": message} if status == 401 else {"error": {"message": message, "type": "invalid_request_error"}}
        else:
            payload = openai_error(status, message, code="invalid_api_key" if status == 401 else None)
        self.record["error"] = message
        self.json(status, payload)


def halves(text: str) -> list[str]:
    """The text in two pieces, so streams have more than one delta."""
    cut = max(1, len(text) // 2)
    return [text[:cut], text[cut:]] if len(text) > 1 else [text]


def last_user_text(items: Any, shape: str) -> str:
    """The text of the last user turn, in any of the four request shapes."""
    if isinstance(items, str):
        return items
    if not isinstance(items, list):
        return ""
    for item in reversed(items):
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        if shape == "google":
            return "".join(p.get("text", "") for p in item.get("parts") or [] if isinstance(p, dict) and not p.get("thought"))
        content = item.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                b.get("text", "") for b in content
                if isinstance(b, dict) and b.get("type") in ("text", "input_text")
            )
    return ""


def iter_sse(raw: bytes) -> Iterator[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body, for the self-test and the tests."""
    for frame in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, []
        for line in frame.decode().splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            yield name, "\n".join(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--issuer", required=True)
    args = parser.parse_args()
    run_alone(
        SubscriptionUpstream(args.issuer, args.port),
        lambda up: json.dumps({"url": up.url, "api": up.api_roots()}),
    )


if __name__ == "__main__":
    main()
