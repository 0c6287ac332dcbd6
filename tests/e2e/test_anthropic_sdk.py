"""The official Anthropic Python SDK through the real gateway to a local OpenAI-speaking upstream
("Claude Code on DeepSeek"): the gateway translates Anthropic Messages to Chat Completions and
back, streaming included.

Each test looks at both ends: what the SDK user sees (content, stop reason, usage, errors as SDK
exceptions) and what the upstream received (Chat Completions with the adapter's model and the
provider's key), plus what the usage log shows.
"""

from __future__ import annotations

import anthropic
import httpx
import mock_openai as m
import pytest
from conftest import Routed

CLIENT_MODEL = "whatever-claude-code-sends"


def sdk(routed: Routed, key: str | None = None) -> anthropic.Anthropic:
    # The SDK appends /v1/messages itself. No retries: a retry would hide the first answer.
    return anthropic.Anthropic(
        base_url=routed.gw.url, api_key=key or routed.adapter_key, max_retries=0, timeout=30
    )


def assert_upstream_got_chat_completions(routed: Routed) -> dict:
    rec = routed.mock.last("/v1/chat/completions")
    assert rec.json["model"] == routed.model
    assert rec.header("Authorization") == f"Bearer {routed.provider_key}"
    for name, value in rec.headers:
        assert routed.adapter_key not in value, f"the client's fp- key was forwarded upstream in {name}"
    return rec.json


def test_messages_non_stream(routed: Routed) -> None:
    msg = sdk(routed).messages.create(
        model=CLIENT_MODEL,
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == m.REPLY_TEXT
    assert msg.stop_reason == "end_turn"
    # Anthropic's input_tokens leave out cache reads.
    assert msg.usage.input_tokens == m.PROMPT_TOKENS - m.CACHED_TOKENS
    assert msg.usage.cache_read_input_tokens == m.CACHED_TOKENS
    assert msg.usage.output_tokens == m.COMPLETION_TOKENS

    sent = assert_upstream_got_chat_completions(routed)
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent["max_tokens"] == 256
    assert not sent.get("stream")

    [row] = routed.gw.api.wait_usage()
    assert row["endpoint"] == "messages"
    assert row["outcome"] == "completed"
    assert (row["input_tokens"], row["output_tokens"]) == (m.PROMPT_TOKENS, m.COMPLETION_TOKENS)


def test_messages_stream(routed: Routed) -> None:
    with sdk(routed).messages.stream(
        model=CLIENT_MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == m.REPLY_TEXT
    assert len([p for p in pieces if p]) == len(m.REPLY_PARTS), "the stream was not passed on piece by piece"
    assert final.content[0].text == m.REPLY_TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == m.COMPLETION_TOKENS
    assert final.usage.input_tokens == m.PROMPT_TOKENS - m.CACHED_TOKENS

    sent = assert_upstream_got_chat_completions(routed)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}

    [row] = routed.gw.api.wait_usage()
    assert row["stream"] is True and row["outcome"] == "completed"
    assert (row["input_tokens"], row["output_tokens"]) == (m.PROMPT_TOKENS, m.COMPLETION_TOKENS)


def test_raw_stream_events(routed: Routed) -> None:
    events = list(
        sdk(routed).messages.create(
            model=CLIENT_MODEL,
            max_tokens=64,
            stream=True,
            messages=[{"role": "user", "content": "Say hello"}],
        )
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_start") == types.count("content_block_stop") == 1


def test_wrong_key_is_authentication_error(routed: Routed) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        sdk(routed, key="fp-not-a-real-key").messages.create(
            model=CLIENT_MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] == "authentication_error"


def test_upstream_dropping_mid_stream_raises_in_the_sdk(routed: Routed) -> None:
    key = routed.add_adapter("drop-stream")
    with pytest.raises((anthropic.APIError, httpx.HTTPError)):
        with sdk(routed, key=key).messages.stream(
            model=CLIENT_MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
    [row] = routed.gw.api.wait_usage()
    assert row["outcome"] != "completed", row
