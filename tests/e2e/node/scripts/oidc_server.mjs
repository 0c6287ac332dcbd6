// A real OAuth 2 / OpenID Connect server (npm `oidc-provider`) on 127.0.0.1 for the gateway's
// OAuth login tests (src-tauri/gateway/tests/oauth_oidc_provider.rs). It prints
// `{"issuer": "http://127.0.0.1:PORT"}` on its first line and serves until stdin closes.
//
// The provider is the real thing (PKCE S256 required, rotating refresh tokens for public
// clients, device authorization grant); only the user is simulated:
// - the login/consent interaction signs in account `ada` and consents to what was asked, except
//   for client `flexiproxy-deny`, which declines (access_denied);
// - POST /test/device?user_code=...&outcome=approve|deny decides a pending device login, as the
//   user would on the verification page;
// - GET /test/grants lists what the token endpoint did (`{grant_type, client_id, error?}` in
//   order), so a test can see a refresh happen (tests/e2e/test_accounts.py);
// - POST /test/revoke withdraws every grant the user gave, as revoking the app's access on the
//   provider's site would: refresh tokens stop working (invalid_grant).
import http from 'node:http';
import Provider from 'oidc-provider';

const ACCOUNT = 'ada';
const CLAIMS = { sub: ACCOUNT, email: 'ada@example.com' };
const native = (client_id) => ({
  client_id,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  // Loopback redirects match on any port (RFC 8252); `localhost` for logins whose callback
  // listens on both loopback families.
  redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
  grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
});

let provider;
const server = http.createServer((req, res) => route(req, res).catch((err) => {
  res.statusCode = 500;
  res.end(String(err));
}));
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

provider = new Provider(issuer, {
  clients: [native('flexiproxy'), native('flexiproxy-deny')],
  findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ ...CLAIMS, sub: id }) }),
  claims: { openid: ['sub'], email: ['email'] },
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false }, deviceFlow: { enabled: true } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AccessToken: 3600, IdToken: 3600, DeviceCode: 600, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600 },
  cookies: { keys: ['flexiproxy-test-cookie-key'] },
});
const callback = provider.callback();

const tokenLog = [];
const grantIds = new Set();
provider.on('grant.success', (ctx) => {
  tokenLog.push({ grant_type: ctx.oidc.params.grant_type, client_id: ctx.oidc.client?.clientId ?? null });
});
provider.on('grant.error', (ctx, err) => {
  tokenLog.push({ grant_type: ctx.oidc.params?.grant_type ?? null, client_id: ctx.oidc.client?.clientId ?? null, error: err.error ?? String(err) });
});

async function route(req, res) {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/interaction/')) return interact(req, res);
  if (url.pathname === '/test/device' && req.method === 'POST') return decideDevice(url, res);
  if (url.pathname === '/test/grants' && req.method === 'GET') return json(res, tokenLog);
  if (url.pathname === '/test/revoke' && req.method === 'POST') return revokeAll(res);
  return callback(req, res);
}

async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (details.params.client_id === 'flexiproxy-deny') {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user declined' });
  }
  const grant = await grantFor(details.params.client_id, details.prompt.details, details.grantId);
  const result = { login: { accountId: ACCOUNT }, consent: { grantId: remember(await grant.save()) } };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

async function grantFor(clientId, missing = {}, grantId = undefined) {
  const grant = grantId ? await provider.Grant.find(grantId) : new provider.Grant({ accountId: ACCOUNT, clientId });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant;
}

function remember(grantId) {
  grantIds.add(grantId);
  return grantId;
}

function json(res, value) {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(value));
}

async function revokeAll(res) {
  let revoked = 0;
  for (const id of grantIds) {
    const grant = await provider.Grant.find(id);
    if (grant) {
      await grant.destroy();
      revoked += 1;
    }
  }
  grantIds.clear();
  json(res, { revoked });
}

async function decideDevice(url, res) {
  const userCode = url.searchParams.get('user_code').replace(/[^a-z]/gi, '').toUpperCase();
  const code = await provider.DeviceCode.findByUserCode(userCode);
  if (!code) {
    res.statusCode = 404;
    return res.end('no such user code');
  }
  if (url.searchParams.get('outcome') === 'deny') {
    Object.assign(code, { error: 'access_denied', errorDescription: 'the user declined' });
  } else {
    const grant = new provider.Grant({ accountId: ACCOUNT, clientId: code.clientId });
    const { scope } = code.params;
    grant.addOIDCScope(scope);
    Object.assign(code, {
      accountId: ACCOUNT,
      scope,
      grantId: remember(await grant.save()),
      authTime: Math.floor(Date.now() / 1000),
    });
  }
  await code.save();
  res.end('ok');
}

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
