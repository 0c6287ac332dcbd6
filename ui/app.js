// FlexiProxy web UI: the dashboard page served by the gateway at "/" and shown in the desktop
// app's window. It talks only to the gateway's management API (/api/*, see the team contract)
// with the management token as a Bearer token.
//
// No build step and no dependencies, so the file is embedded in the binary as written.
// Every server-provided string is rendered with textContent / DOM nodes, never innerHTML:
// provider URLs, model names and upstream error texts are untrusted.

/** The shortest gap between two refetches of the usage views while requests stream in. */
const REFRESH_GAP_MS = 250;
const RECENT_LIMIT = 20;
const TOKEN_KEY = 'flexiproxy.managementToken';
const PROVIDER_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
const PROTOCOLS = [
  ['openai_chat', 'OpenAI Chat Completions'],
  ['openai_responses', 'OpenAI Responses'],
  ['anthropic_messages', 'Anthropic Messages'],
  ['gemini', 'Google Gemini'],
];

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// DOM building

/** Creates an element. Children that are not Nodes become text nodes, so they cannot inject markup. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A table cell carrying its column name, which narrow layouts show as a label. */
function td(label, content, cls) {
  return h('td', { 'data-label': label, class: cls }, content);
}

function emptyRow(colspan, text) {
  return h('tr', {}, h('td', { colspan, class: 'empty' }, text));
}

function showMsg(el, text, kind = 'error') {
  el.textContent = text || '';
  el.dataset.kind = kind;
  el.hidden = !text;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const intFmt = new Intl.NumberFormat();

function fmtInt(n) {
  return typeof n === 'number' && Number.isFinite(n) ? intFmt.format(n) : '—';
}

function fmtMs(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** Time of day; rows from an earlier day get their date on a second line to keep the column narrow. */
function timeCell(tsMs) {
  if (typeof tsMs !== 'number') return '—';
  const d = new Date(tsMs);
  const iso = d.toISOString();
  const el = h('time', { datetime: iso, title: d.toLocaleString() }, d.toLocaleTimeString());
  if (!sameDay(d, new Date())) {
    el.append(h('span', { class: 'sub block' }, d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', year: 'numeric' })));
  }
  return el;
}

function fmtDate(tsMs) {
  if (typeof tsMs !== 'number') return '—';
  return new Date(tsMs).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function protocolLabel(p) {
  const found = PROTOCOLS.find(([id]) => id === p);
  return found ? found[1] : String(p ?? '—');
}

// ---------------------------------------------------------------------------------------------
// API client

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Readable text for any failure, for showing next to the action that failed. */
function errorText(err) {
  if (err instanceof ApiError) {
    return err.code && !String(err.message).includes(err.code) ? `${err.message} (${err.code})` : err.message;
  }
  return err?.message ? String(err.message) : String(err);
}

const auth = {
  token: null,
  // True when the desktop app injected the token: then there is no sign-in form to go back to
  // unless the gateway rejects it.
  fromApp: false,
};

async function api(method, path, body) {
  if (!auth.token) throw new ApiError(401, 'unauthorized', 'Not signed in.');
  const headers = { Authorization: `Bearer ${auth.token}`, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the gateway (${e?.message || 'network error'}). Is it still running?`);
  }
  const text = await res.text().catch(() => '');
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.status === 401) {
    const msg = data?.error?.message || 'The gateway did not accept the management token.';
    onUnauthorized(msg);
    throw new ApiError(401, data?.error?.code || 'unauthorized', msg);
  }
  if (!res.ok) {
    const e = data?.error;
    const message = e?.message || `${res.status} ${res.statusText || 'error'}`.trim();
    throw new ApiError(res.status, e?.code || `http_${res.status}`, message);
  }
  return res.status === 204 ? null : data;
}

// ---------------------------------------------------------------------------------------------
// Progress and clipboard

/** Runs fn with the button disabled and a spinner + label; always restores the button. */
async function withBusy(button, label, fn) {
  const original = Array.from(button.childNodes, (n) => n.cloneNode(true));
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
  try {
    return await fn();
  } finally {
    button.replaceChildren(...original);
    button.removeAttribute('aria-busy');
    button.disabled = false;
  }
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Some webviews expose the API but deny it; fall through to the legacy path.
    }
  }
  const ta = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
  ta.value = text;
  // Outside an open modal dialog everything is inert, so the helper must live inside it.
  (document.querySelector('dialog[open]') || document.body).append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** A Copy button with visible feedback; on failure it tells the user to copy by hand. */
function copyButton(getText, label = 'Copy', { selectOnFail } = {}) {
  const btn = h('button', { type: 'button', class: 'btn btn-small' }, label);
  let timer = null;
  btn.addEventListener('click', async () => {
    const ok = await copyText(getText());
    btn.textContent = ok ? 'Copied' : 'Copy failed — select and press Ctrl+C';
    btn.classList.toggle('copied', ok);
    if (!ok && selectOnFail) selectOnFail();
    clearTimeout(timer);
    timer = setTimeout(() => {
      btn.textContent = label;
      btn.classList.remove('copied');
    }, ok ? 1500 : 4000);
  });
  return btn;
}

// ---------------------------------------------------------------------------------------------
// Dialogs

function confirmDialog({ title, text, ok = 'OK', danger = false }) {
  const dlg = $('confirm-dialog');
  $('confirm-h').textContent = title;
  $('confirm-text').textContent = text;
  const okBtn = $('confirm-ok');
  okBtn.textContent = ok;
  okBtn.classList.toggle('btn-danger', danger);
  okBtn.classList.toggle('btn-primary', !danger);
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
    // Destructive actions start on Cancel so an accidental Enter does nothing harmful.
    (danger ? $('confirm-cancel') : okBtn).focus();
  });
}

function snippet(title, text) {
  const pre = h('pre', { class: 'snippet', tabindex: '0' }, h('code', {}, text));
  const selectPre = () => {
    const range = document.createRange();
    range.selectNodeContents(pre);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  };
  return h('div', { class: 'snippet-block' },
    h('div', { class: 'snippet-head' }, h('span', { class: 'snippet-title' }, title),
      copyButton(() => text, 'Copy', { selectOnFail: selectPre })),
    pre);
}

function showNewKey(adapter) {
  const gatewayBase = (state.status?.base_url || window.location.origin).replace(/\/+$/, '');
  const key = String(adapter.api_key ?? '');
  const model = String(adapter.model_id ?? '');

  const keyInput = h('input', { class: 'mono key-field', readonly: true, id: 'new-key', 'aria-label': 'Adapter API key' });
  keyInput.value = key;
  keyInput.addEventListener('focus', () => keyInput.select());

  const curl = [
    `curl ${gatewayBase}/v1/chat/completions \\`,
    `  -H "Authorization: Bearer ${key}" \\`,
    '  -H "Content-Type: application/json" \\',
    `  -d '${JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello' }] }).replace(/'/g, "'\\''")}'`,
  ].join('\n');

  $('key-dialog-content').replaceChildren(
    h('p', {}, 'Provider ', h('strong', {}, String(adapter.provider_id ?? '')), ', model ',
      h('strong', {}, model), '.'),
    h('div', { class: 'field' },
      h('label', { for: 'new-key' }, 'API key'),
      h('div', { class: 'inline' }, keyInput, copyButton(() => key, 'Copy key', { selectOnFail: () => keyInput.select() }))),
    snippet('OpenAI SDKs and tools (environment)', `OPENAI_BASE_URL=${gatewayBase}/v1\nOPENAI_API_KEY=${key}`),
    snippet('curl', curl),
    h('p', { class: 'small muted' }, 'Any model name the tool sends is replaced by ', h('code', {}, model),
      '. This key will not be shown again; if it is lost, delete the adapter and create a new one.'),
  );
  const dlg = $('key-dialog');
  // Drop the key from the page once the dialog closes, so it is really shown only once.
  dlg.addEventListener('close', () => $('key-dialog-content').replaceChildren(), { once: true });
  dlg.showModal();
  keyInput.focus();
}

// ---------------------------------------------------------------------------------------------
// State and rendering

const state = {
  status: null,
  providers: [],
  adapters: [],
  settings: null,
};

function renderStatus() {
  const s = state.status;
  $('gateway-status').hidden = !s;
  if (!s) return;
  $('st-version').textContent = s.version ? `v${s.version}` : '';
  $('st-base-url').textContent = s.base_url || '';
  const sec = s.secrets || {};
  $('st-secrets').textContent = `${sec.kind || 'unknown'}${sec.writable === false ? ' (read-only)' : ''}`;
  const warn = sec.warning;
  $('secrets-warning').hidden = warn == null || warn === '';
  $('secrets-warning-text').textContent = warn ?? '';
  renderUsageEnabled(!!s.usage_enabled);
  // If the key store cannot take new keys, say so where keys are typed in.
  const readOnly = sec.writable === false;
  $('pf-key-note').classList.toggle('note-warn', readOnly);
  $('pf-key-note-text').textContent = readOnly
    ? 'This gateway cannot store keys (no writable keychain): write '
    : 'Stored in the OS keychain; or write ';
  $('pf-key-note-tail').textContent = readOnly
    ? ' to read the key from an environment variable of the gateway.'
    : ' to read it from an environment variable of the gateway.';
  $('data-dir-row').hidden = !s.data_dir;
  $('data-dir').textContent = s.data_dir ? String(s.data_dir) : '';
  syncProviderFormMode();
}

function renderUsageEnabled(on) {
  const badge = $('st-usage');
  badge.textContent = on ? 'on' : 'off';
  badge.dataset.kind = on ? 'ok' : 'muted';
  $('usage-off-note').hidden = on;
  const toggle = $('usage-toggle');
  toggle.checked = on;
  $('usage-toggle-state').textContent = on ? 'Recording' : 'Not recording';
}

function renderSummary(sum) {
  const t = sum?.today || {};
  $('u-requests').textContent = fmtInt(t.requests);
  $('u-input').textContent = fmtInt(t.input_tokens);
  $('u-output').textContent = fmtInt(t.output_tokens);
  $('u-cached').textContent = fmtInt(t.cached_tokens);
  $('u-errors').textContent = fmtInt(t.errors);
  $('u-errors').closest('.tile').classList.toggle('tile-bad', (t.errors || 0) > 0);

  const by = Array.isArray(sum?.by_provider) ? sum.by_provider : [];
  const box = $('by-provider');
  box.hidden = by.length === 0;
  box.replaceChildren(
    h('span', { class: 'muted' }, 'By provider:'),
    ...by.map((p) => h('span', { class: 'chip' },
      h('strong', {}, String(p.provider_id ?? '?')),
      ` ${fmtInt(p.requests)} req · ${fmtInt(p.input_tokens)} in · ${fmtInt(p.output_tokens)} out`)),
  );
}

function statusKind(status) {
  if (typeof status !== 'number' || status === 0) return 'bad';
  if (status < 300) return 'ok';
  if (status < 500) return 'warn';
  return 'bad';
}

function outcomeKind(outcome, status) {
  const o = String(outcome ?? '').toLowerCase();
  if (['ok', 'success', 'completed', 'done'].includes(o)) return 'ok';
  // The client going away or a stream breaking off is not necessarily the provider's fault.
  if (['cancel', 'abort', 'closed', 'interrupt'].some((w) => o.includes(w))) return 'warn';
  if (o === '') return statusKind(status);
  return 'bad';
}

let lastRecentJson = null;

function renderRecent(rows) {
  // Re-rendering identical rows every few seconds would only steal keyboard focus and hover.
  const json = JSON.stringify(rows) + String(state.status?.usage_enabled);
  if (json === lastRecentJson) return;
  lastRecentJson = json;
  const body = $('recent-body');
  if (!Array.isArray(rows) || rows.length === 0) {
    body.replaceChildren(emptyRow(9, state.status && !state.status.usage_enabled
      ? 'No requests recorded (usage recording is off).'
      : 'No requests yet. Point a tool at the base URL with an adapter key.'));
    return;
  }
  body.replaceChildren(...rows.map((r) => {
    const tokens = h('span', {}, `${fmtInt(r.input_tokens)} / ${fmtInt(r.output_tokens)}`);
    if (r.cached_tokens) tokens.append(h('span', { class: 'muted' }, ` (${fmtInt(r.cached_tokens)})`));
    const err = r.error == null || r.error === '' ? '' : String(r.error);
    const model = String(r.model ?? '—');
    const endpoint = String(r.endpoint ?? '—');
    return h('tr', {},
      td('Time', timeCell(r.ts_ms), 'nowrap'),
      td('Provider', h('span', { title: r.adapter != null ? `adapter ${r.adapter}` : null }, String(r.provider_id ?? '—')), 'clip'),
      td('Model', [
        h('span', { class: 'mono block ellipsis', title: model }, model),
        h('span', { class: 'sub block ellipsis', title: endpoint },
          h('span', { class: 'mono' }, endpoint), r.stream ? h('span', { class: 'tag' }, 'stream') : null),
      ], 'clip model-cell'),
      td('Status', h('span', { class: 'badge', dataset: { kind: statusKind(r.status) } }, String(r.status ?? '—'))),
      td('Tokens', tokens, 'num nowrap'),
      td('Latency', fmtMs(r.latency_ms), 'num nowrap'),
      td('TTFB', fmtMs(r.ttfb_ms), 'num nowrap'),
      td('Outcome', r.outcome == null ? '—'
        : h('span', { class: 'badge', dataset: { kind: outcomeKind(r.outcome, r.status) } }, String(r.outcome))),
      // Long errors are clamped; hovering or focusing one (Tab) shows it whole.
      td('Error', err ? h('span', { class: 'err-text', title: err, tabindex: '0' }, err) : h('span', { class: 'muted' }, '—')),
    );
  }));
}

function keyCell(p) {
  if (!p.has_api_key) return h('span', { class: 'muted' }, 'none');
  const source = p.key_source == null ? '' : String(p.key_source);
  const envName = source.startsWith('env:') ? source.slice(4) : null;
  return h('span', {},
    envName != null
      ? [h('span', { class: 'muted' }, 'env '), h('code', {}, envName)]
      : [p.key_hint ? h('code', {}, String(p.key_hint)) : 'set',
        source ? h('span', { class: 'muted small block' }, source) : null],
    // The gateway says why a configured key cannot be used (e.g. the env variable is unset).
    p.key_error ? h('span', { class: 'key-error small block' }, String(p.key_error)) : null);
}

function renderProviders() {
  const body = $('providers-body');
  if (state.providers.length === 0) {
    body.replaceChildren(emptyRow(5, 'No providers yet. Add one below.'));
  } else {
    body.replaceChildren(...state.providers.map((p) => {
      const editBtn = h('button', { type: 'button', class: 'btn btn-small', onclick: () => editProvider(p) }, 'Edit');
      const delBtn = h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost' }, 'Delete');
      delBtn.addEventListener('click', () => deleteProvider(p, delBtn));
      editBtn.setAttribute('aria-label', `Edit provider ${p.id}`);
      delBtn.setAttribute('aria-label', `Delete provider ${p.id}`);
      return h('tr', {},
        td('ID', h('strong', {}, String(p.id))),
        td('URL', String(p.url ?? ''), 'mono break'),
        td('Protocol', protocolLabel(p.protocol)),
        td('API key', keyCell(p)),
        td('', h('div', { class: 'row-actions' }, editBtn, delBtn), 'actions'),
      );
    }));
  }
  renderProviderSelect();
  syncProviderFormMode();
}

function renderProviderSelect() {
  const sel = $('af-provider');
  const prev = sel.value;
  if (state.providers.length === 0) {
    sel.replaceChildren(h('option', { value: '' }, 'Add a provider first'));
    sel.disabled = true;
    $('af-submit').disabled = true;
    return;
  }
  sel.disabled = false;
  $('af-submit').disabled = false;
  sel.replaceChildren(...state.providers.map((p) => h('option', { value: p.id }, String(p.id))));
  if (state.providers.some((p) => p.id === prev)) sel.value = prev;
}

function renderAdapters() {
  const body = $('adapters-body');
  if (state.adapters.length === 0) {
    body.replaceChildren(emptyRow(6, 'No adapters yet. Create one below to get a key for your tools.'));
    return;
  }
  const sorted = [...state.adapters].sort((a, b) => (b.create_time ?? 0) - (a.create_time ?? 0));
  body.replaceChildren(...sorted.map((a) => {
    const delBtn = h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost' }, 'Delete');
    delBtn.setAttribute('aria-label', `Delete adapter ${a.model_id} on ${a.provider_id}`);
    delBtn.addEventListener('click', () => deleteAdapter(a, delBtn));
    return h('tr', {},
      td('Created', fmtDate(a.create_time), 'nowrap'),
      td('Provider', String(a.provider_id ?? '—')),
      td('Model', String(a.model_id ?? '—'), 'mono'),
      td('Upstream URL', a.base_url ? String(a.base_url) : h('span', { class: 'muted' }, "provider's URL"), 'mono break'),
      td('Key', a.key_hint ? h('code', {}, String(a.key_hint)) : '—'),
      td('', h('div', { class: 'row-actions' }, delBtn), 'actions'),
    );
  }));
}

// ---------------------------------------------------------------------------------------------
// Loaders: each shows its own failure next to its section.

async function loadStatus() {
  try {
    state.status = await api('GET', '/api/status');
    showMsg($('status-error'), '');
    renderStatus();
  } catch (e) {
    if (e.status !== 401) showMsg($('status-error'), `Gateway status unavailable: ${errorText(e)}`);
  }
}

async function loadProviders() {
  try {
    const list = await api('GET', '/api/providers');
    state.providers = Array.isArray(list) ? list : [];
    showMsg($('providers-msg'), '');
    renderProviders();
  } catch (e) {
    if (e.status !== 401) showMsg($('providers-msg'), `Could not load providers: ${errorText(e)}`);
  }
}

async function loadAdapters() {
  try {
    const list = await api('GET', '/api/adapters');
    state.adapters = Array.isArray(list) ? list : [];
    showMsg($('adapters-msg'), '');
    renderAdapters();
  } catch (e) {
    if (e.status !== 401) showMsg($('adapters-msg'), `Could not load adapters: ${errorText(e)}`);
  }
}

async function loadSettings() {
  try {
    state.settings = await api('GET', '/api/settings');
    $('usage-toggle').disabled = false;
    renderUsageEnabled(!!state.settings.usage_enabled);
    showMsg($('settings-msg'), '');
  } catch (e) {
    if (e.status !== 401) showMsg($('settings-msg'), `Could not load settings: ${errorText(e)}`);
  }
}

function localMidnightMs() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

async function refreshUsage() {
  const [sum, recent] = await Promise.allSettled([
    // "Today" is the user's day: the browser knows the time zone, the gateway does not.
    api('GET', `/api/usage/summary?since_ms=${localMidnightMs()}`),
    api('GET', `/api/usage/recent?limit=${RECENT_LIMIT}`),
  ]);
  if (sum.status === 'fulfilled') renderSummary(sum.value);
  if (recent.status === 'fulfilled') renderRecent(recent.value);
  const failed = [sum, recent].find((r) => r.status === 'rejected');
  if (failed && failed.reason?.status !== 401) {
    showMsg($('usage-msg'), `Could not refresh usage: ${errorText(failed.reason)}`);
  } else if (!failed) {
    showMsg($('usage-msg'), '');
    $('usage-updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Live updates: the gateway's event stream (`GET /api/events`) says when a request has been
// recorded; the dashboard then refetches its summaries once per burst. Nothing runs on a timer
// while no requests happen, so an idle dashboard costs the database nothing.

const live = { active: false, controller: null, refresh: null, running: false, again: false, retry: 0 };

/** Refetches the usage views at most once per REFRESH_GAP_MS, however many events arrive. */
function refreshSoon() {
  if (live.refresh) return;
  live.refresh = setTimeout(async () => {
    live.refresh = null;
    if (live.running) {
      live.again = true;
      return;
    }
    live.running = true;
    try {
      await refreshUsage();
    } finally {
      live.running = false;
      if (live.again) {
        live.again = false;
        refreshSoon();
      }
    }
  }, REFRESH_GAP_MS);
}

function setLiveState(text) {
  $('usage-live').textContent = text;
}

/** Follows the event stream until signed out; reconnects with a growing pause when it drops. */
async function followEvents() {
  while (live.active) {
    live.controller = new AbortController();
    try {
      const res = await fetch('/api/events', {
        headers: { Authorization: `Bearer ${auth.token}`, Accept: 'text/event-stream' },
        cache: 'no-store',
        signal: live.controller.signal,
      });
      if (res.status === 401) {
        onUnauthorized('The gateway did not accept the management token.');
        return;
      }
      if (!res.ok || !res.body) throw new Error(`${res.status} ${res.statusText}`);
      live.retry = 0;
      setLiveState('Live');
      // Whatever happened while disconnected is in the summaries.
      refreshSoon();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: *(.*)$/m.exec(block)?.[1];
          if (event === 'usage' || event === 'lagged') refreshSoon();
        }
      }
    } catch (e) {
      if (!live.active) return;
      console.debug('event stream dropped', e);
    }
    if (!live.active) return;
    live.retry = Math.min(live.retry + 1, 6);
    const pause = 500 * 2 ** live.retry;
    setLiveState(`Reconnecting in ${Math.round(pause / 1000)} s…`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

function startLive() {
  if (live.active) return;
  live.active = true;
  followEvents();
}

function stopLive() {
  live.active = false;
  live.controller?.abort();
  clearTimeout(live.refresh);
  live.refresh = null;
  setLiveState('');
}

// ---------------------------------------------------------------------------------------------
// Providers form

function existingProvider(id) {
  return state.providers.find((p) => p.id === id) || null;
}

/** Switches the form between "add" and "update" by whether the typed id already exists. */
function syncProviderFormMode() {
  const id = $('pf-id').value.trim();
  const existing = existingProvider(id);
  $('provider-form-title').textContent = existing ? `Update provider ${existing.id}` : 'Add a provider';
  $('pf-submit').textContent = existing ? 'Update provider' : 'Add provider';
  const keyInput = $('pf-key');
  keyInput.placeholder = existing?.has_api_key
    ? `leave empty to keep ${existing.key_hint || 'the current key'}`
    : state.status?.secrets?.writable === false ? 'env:NAME' : 'sk-… or env:NAME';
  $('pf-remove-key-row').hidden = !existing?.has_api_key;
  if (!existing?.has_api_key) $('pf-remove-key').checked = false;
  keyInput.disabled = $('pf-remove-key').checked;
}

function editProvider(p) {
  $('pf-id').value = p.id;
  $('pf-url').value = p.url ?? '';
  $('pf-protocol').value = PROTOCOLS.some(([v]) => v === p.protocol) ? p.protocol : 'openai_chat';
  $('pf-key').value = '';
  $('pf-remove-key').checked = false;
  showMsg($('provider-form-msg'), '');
  syncProviderFormMode();
  $('provider-form').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  $('pf-url').focus();
}

function resetProviderForm() {
  $('provider-form').reset();
  $('pf-protocol').value = 'openai_chat';
  showMsg($('provider-form-msg'), '');
  syncProviderFormMode();
}

async function submitProvider(ev) {
  ev.preventDefault();
  const msg = $('provider-form-msg');
  const id = $('pf-id').value.trim();
  const url = $('pf-url').value.trim();
  if (!PROVIDER_ID_RE.test(id)) {
    showMsg(msg, 'The ID must be 1–64 letters, digits, dots, underscores or dashes.');
    $('pf-id').focus();
    return;
  }
  const body = { url, protocol: $('pf-protocol').value };
  const key = $('pf-key').value.trim();
  if ($('pf-remove-key').checked) body.api_key = null;
  else if (key) body.api_key = key;
  const updating = !!existingProvider(id);
  showMsg(msg, '');
  await withBusy($('pf-submit'), updating ? 'Updating…' : 'Adding…', async () => {
    try {
      const saved = await api('POST', `/api/providers/${encodeURIComponent(id)}`, body);
      const i = state.providers.findIndex((p) => p.id === id);
      if (saved && typeof saved === 'object') {
        if (i >= 0) state.providers[i] = saved;
        else state.providers.push(saved);
      }
      $('provider-form').reset();
      $('pf-protocol').value = 'openai_chat';
      renderProviders();
      showMsg(msg, `Provider ${id} ${updating ? 'updated' : 'added'}.`, 'ok');
      loadProviders();
      loadStatus();
    } catch (e) {
      showMsg(msg, `Could not save provider ${id}: ${errorText(e)}`);
    }
  });
}

async function deleteProvider(p, btn) {
  const ok = await confirmDialog({
    title: `Delete provider ${p.id}?`,
    text: `Requests through adapters that use ${p.id} will fail until you add it again.`
      + (p.key_source === 'keychain' ? ' Its API key is removed from the keychain.' : ''),
    ok: 'Delete provider',
    danger: true,
  });
  if (!ok) {
    btn.focus();
    return;
  }
  const msg = $('providers-msg');
  showMsg(msg, '');
  await withBusy(btn, 'Deleting…', async () => {
    try {
      await api('DELETE', `/api/providers/${encodeURIComponent(p.id)}`);
      state.providers = state.providers.filter((x) => x.id !== p.id);
      showMsg(msg, `Provider ${p.id} deleted.`, 'ok');
    } catch (e) {
      showMsg(msg, `Could not delete provider ${p.id}: ${errorText(e)}`);
    }
  });
  renderProviders();
  loadProviders();
  loadStatus();
}

// ---------------------------------------------------------------------------------------------
// Adapters form

async function submitAdapter(ev) {
  ev.preventDefault();
  const msg = $('adapter-form-msg');
  const body = {
    provider_id: $('af-provider').value,
    model_id: $('af-model').value.trim(),
  };
  const base = $('af-base').value.trim();
  if (base) body.base_url = base;
  if (!body.provider_id) {
    showMsg(msg, 'Add a provider first.');
    return;
  }
  if (!body.model_id) {
    showMsg(msg, 'Enter the model ID the provider expects.');
    $('af-model').focus();
    return;
  }
  showMsg(msg, '');
  await withBusy($('af-submit'), 'Creating…', async () => {
    try {
      const created = await api('POST', '/api/adapters', body);
      if (!created?.api_key) throw new Error('The gateway did not return the new key.');
      $('af-model').value = '';
      $('af-base').value = '';
      showMsg(msg, `Adapter for ${created.model_id} created.`, 'ok');
      showNewKey(created);
      loadAdapters();
      loadStatus();
    } catch (e) {
      showMsg(msg, `Could not create the adapter: ${errorText(e)}`);
    }
  });
}

async function deleteAdapter(a, btn) {
  const ok = await confirmDialog({
    title: 'Delete this adapter?',
    text: `Tools using the key ${a.key_hint || ''} (${a.model_id} on ${a.provider_id}) will get 401 errors. This cannot be undone.`,
    ok: 'Delete adapter',
    danger: true,
  });
  if (!ok) {
    btn.focus();
    return;
  }
  const msg = $('adapters-msg');
  showMsg(msg, '');
  await withBusy(btn, 'Deleting…', async () => {
    try {
      await api('DELETE', '/api/adapters', { create_time: a.create_time });
      state.adapters = state.adapters.filter((x) => x.create_time !== a.create_time);
      showMsg(msg, 'Adapter deleted.', 'ok');
    } catch (e) {
      showMsg(msg, `Could not delete the adapter: ${errorText(e)}`);
    }
  });
  renderAdapters();
  loadAdapters();
  loadStatus();
}

// ---------------------------------------------------------------------------------------------
// Settings

async function onUsageToggle() {
  const toggle = $('usage-toggle');
  const want = toggle.checked;
  const msg = $('settings-msg');
  if (!want) {
    const ok = await confirmDialog({
      title: 'Stop recording usage?',
      text: 'New requests will not be recorded. Nothing already recorded is deleted, and you can turn it back on at any time.',
      ok: 'Stop recording',
    });
    if (!ok) {
      toggle.checked = true;
      toggle.focus();
      return;
    }
  }
  toggle.disabled = true;
  const stateLabel = $('usage-toggle-state');
  stateLabel.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Saving…');
  showMsg(msg, '');
  try {
    const s = await api('PUT', '/api/settings', { usage_enabled: want });
    state.settings = s;
    const on = !!s?.usage_enabled;
    if (state.status) state.status.usage_enabled = on;
    renderUsageEnabled(on);
    showMsg(msg, on ? 'Usage recording is on.' : 'Usage recording is off. Existing records are kept.', 'ok');
  } catch (e) {
    renderUsageEnabled(!want);
    showMsg(msg, `Could not change the setting: ${errorText(e)}`);
  } finally {
    toggle.disabled = false;
    loadStatus();
  }
}

// ---------------------------------------------------------------------------------------------
// Sign-in / sign-out

function readStoredToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage can be disabled; the token then lives for this page load only.
  }
}

function clearData() {
  state.status = null;
  state.providers = [];
  state.adapters = [];
  state.settings = null;
  renderStatus();
  $('secrets-warning').hidden = true;
  showMsg($('status-error'), '');
  $('st-version').textContent = '';
  $('providers-body').replaceChildren(emptyRow(5, 'Loading…'));
  $('adapters-body').replaceChildren(emptyRow(6, 'Loading…'));
  $('recent-body').replaceChildren(emptyRow(9, 'Loading…'));
  lastRecentJson = null;
  $('usage-updated').textContent = '';
  for (const id of ['providers-msg', 'adapters-msg', 'usage-msg', 'settings-msg', 'provider-form-msg', 'adapter-form-msg']) {
    showMsg($(id), '');
  }
}

function showLogin(message) {
  stopLive();
  clearData();
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('main').hidden = true;
  $('signout').hidden = true;
  $('login-view').hidden = false;
  showMsg($('login-msg'), message || '');
  $('login-token').value = '';
  $('login-token').focus();
}

async function showApp() {
  $('login-view').hidden = true;
  $('main').hidden = false;
  // The desktop app manages its own token, so signing out there would only strand the user.
  $('signout').hidden = auth.fromApp;
  await Promise.all([loadStatus(), loadProviders(), loadAdapters(), loadSettings()]);
  await refreshUsage();
  startLive();
}

function onUnauthorized(message) {
  if (!auth.token) return;
  const fromApp = auth.fromApp;
  auth.token = null;
  auth.fromApp = false;
  storeToken(null);
  showLogin(fromApp
    ? `The gateway rejected the token from the desktop app (${message}). Enter the management token.`
    : `Signed out: ${message} Enter the management token again.`);
}

async function submitLogin(ev) {
  ev.preventDefault();
  const token = $('login-token').value.trim();
  const msg = $('login-msg');
  if (!token) {
    showMsg(msg, 'Enter the management token.');
    return;
  }
  showMsg(msg, '');
  await withBusy($('login-submit'), 'Signing in…', async () => {
    auth.token = token;
    auth.fromApp = false;
    try {
      // Check the token before switching views so a typo stays on this form.
      state.status = await api('GET', '/api/status');
    } catch (e) {
      auth.token = null;
      showMsg(msg, e.status === 401 ? 'That token was not accepted. Check it and try again.' : errorText(e));
      $('login-token').focus();
      return;
    }
    storeToken(token);
    showApp();
  });
}

function signOut() {
  auth.token = null;
  auth.fromApp = false;
  storeToken(null);
  showLogin('Signed out.');
}

// ---------------------------------------------------------------------------------------------
// Start-up

function init() {
  const icon = $('brand-icon');
  const hideIcon = () => { icon.hidden = true; };
  icon.addEventListener('error', hideIcon);
  if (icon.complete && icon.naturalWidth === 0) hideIcon();

  $('pf-protocol').replaceChildren(...PROTOCOLS.map(([v, label]) => h('option', { value: v }, label)));
  $('pf-protocol').value = 'openai_chat';

  $('login-form').addEventListener('submit', submitLogin);
  $('signout').addEventListener('click', signOut);
  $('provider-form').addEventListener('submit', submitProvider);
  $('pf-reset').addEventListener('click', resetProviderForm);
  $('pf-id').addEventListener('input', () => {
    $('pf-remove-key').checked = false;
    syncProviderFormMode();
  });
  $('pf-remove-key').addEventListener('change', syncProviderFormMode);
  $('adapter-form').addEventListener('submit', submitAdapter);
  $('usage-toggle').addEventListener('change', onUsageToggle);

  const baseUrlEl = $('st-base-url');
  const copyBase = copyButton(() => baseUrlEl.textContent, 'Copy', {
    selectOnFail: () => window.getSelection().selectAllChildren(baseUrlEl),
  });
  copyBase.id = 'copy-base-url';
  copyBase.setAttribute('aria-label', 'Copy base URL');
  $('copy-base-url').replaceWith(copyBase);

  const injected = window.__FLEXIPROXY__?.token;
  if (typeof injected === 'string' && injected) {
    auth.token = injected;
    auth.fromApp = true;
  } else {
    auth.token = readStoredToken();
  }
  if (auth.token) showApp();
  else showLogin('');
}

init();
