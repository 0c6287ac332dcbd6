// @ts-check
// The management API client: every call carries the management token as a Bearer token, and
// every failure becomes an ApiError whose message a person can act on (the gateway's own
// message when it gave one, else what to check). A 401 signs the page out.

export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status; 0 when the gateway could not be reached
   * @param {string} code the gateway's error code (`invalid`, `not_found`, …) or `http_<status>`
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * The management API's error body: `{"error": {"code", "message"}}` (server/management.rs).
 * @typedef {{ error?: { code?: string, type?: string, message?: string } }} ErrorBody
 */

/**
 * Readable text for any failure, for showing next to the action that failed.
 * @param {unknown} err
 */
export function errorText(err) {
  if (err instanceof ApiError) return err.message;
  const message = typeof err === 'object' && err !== null && 'message' in err ? err.message : undefined;
  return message ? String(message) : String(err);
}

/**
 * The HTTP status of a failure, when it is an ApiError (401: the page signs out by itself).
 * @param {unknown} err
 * @returns {number | undefined}
 */
export function statusOf(err) {
  return err instanceof ApiError ? err.status : undefined;
}

/** @type {{ token: string | null, fromApp: boolean, onUnauthorized: (message: string) => void }} */
export const auth = {
  token: null,
  // True when the desktop app injected the token: then there is no sign-in form to go back to
  // unless the gateway rejects it.
  fromApp: false,
  /** Set by the app: called with a message when the gateway rejects the token. */
  onUnauthorized: () => {},
};

/** @param {number} status */
function explainStatus(status) {
  if (status === 404) return 'This gateway does not know that request (is FlexiProxy up to date?).';
  if (status === 409) return 'The gateway refused the change because of a conflict.';
  if (status >= 500) return `The gateway failed (HTTP ${status}); its log says more.`;
  return `The gateway answered HTTP ${status}.`;
}

/**
 * A fetch with the token; throws ApiError for network failures and 401. Returns the Response.
 * @param {string} method
 * @param {string} path
 * @param {{ body?: unknown, accept?: string, signal?: AbortSignal }} [options] `body` is sent as JSON
 * @returns {Promise<Response>}
 */
export async function send(method, path, { body, accept = 'application/json', signal } = {}) {
  if (!auth.token) throw new ApiError(401, 'unauthorized', 'Not signed in.');
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${auth.token}`, Accept: accept };
  /** @type {RequestInit} */
  const init = { method, headers, cache: 'no-store', signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e instanceof Error && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the gateway. Is FlexiProxy still running?');
  }
  if (res.status === 401) {
    /** @type {ErrorBody | null} */
    const data = await res.json().catch(() => null);
    const msg = data?.error?.message || 'The gateway did not accept the management token.';
    auth.onUnauthorized(msg);
    throw new ApiError(401, 'unauthorized', msg);
  }
  return res;
}

/**
 * A JSON call; resolves with the parsed answer (null for 204). The answer is `unknown` here: the
 * caller says which of the management API's shapes it reads (typedefs beside the code that
 * reads them, e.g. state.js's Provider).
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON
 * @returns {Promise<unknown>}
 */
export async function api(method, path, body) {
  const res = await send(method, path, { body });
  const text = await res.text().catch(() => '');
  /** @type {ErrorBody | null} */
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = data?.error;
    throw new ApiError(res.status, e?.code || e?.type || `http_${res.status}`, e?.message || explainStatus(res.status));
  }
  return res.status === 204 ? null : data;
}

/**
 * Like api(), but a 404 or 405 (an endpoint this gateway does not have) resolves with null.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<unknown>}
 */
export async function apiOptional(method, path, body) {
  try {
    return await api(method, path, body);
  } catch (e) {
    // The management API's fallback answers 404 "no such management endpoint"; other 404s
    // (a provider that is not there) are real errors.
    const missing = e instanceof ApiError
      && (e.status === 405 || (e.status === 404 && /no such management endpoint/i.test(e.message)));
    if (missing) return null;
    throw e;
  }
}

/**
 * Downloads a file the gateway makes (it needs the token, so a plain link cannot fetch it).
 * @param {string} path
 * @param {string} fallbackName the file's name when the answer does not give one
 * @returns {Promise<{ name: string, bytes: number }>}
 */
export async function download(path, fallbackName) {
  const res = await send('GET', path, { accept: '*/*' });
  if (!res.ok) {
    /** @type {ErrorBody | null} */
    const data = await res.json().catch(() => null);
    throw new ApiError(res.status, `http_${res.status}`, data?.error?.message || explainStatus(res.status));
  }
  const disposition = res.headers.get('content-disposition') || '';
  const name = /filename="?([^";]+)"?/i.exec(disposition)?.[1] || fallbackName;
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The click has started the download by now; keep the URL a moment for slow webviews.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return { name, bytes: blob.size };
}
