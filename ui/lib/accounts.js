// @ts-check
// The Accounts page: subscriptions used through their own login (Claude Pro/Max, ChatGPT,
// Gemini, Qwen, Copilot, iFlow) instead of an API key. One "Log in" button per kind the gateway
// knows, a login dialog that follows one login (`/api/logins`) from start to the account it
// made, and the list of accounts with their health (needs login, last and next refresh, last
// error) and actions (log in again, refresh now, log out).
//
// The list is refetched when the gateway's event stream says the accounts changed (the
// `accounts` event, see live.js), never on a timer; only the open login dialog polls its login,
// once a second. A sign-in page opens in the system browser through the desktop app
// (`POST /api/desktop/open`); a headless gateway cannot, so the dialog offers a plain link and a
// field to paste the callback URL into (for a browser on another computer).

import { api, apiOptional, errorText, statusOf, ApiError } from './api.js';
import { runAction } from './actions.js';
import {
  $, $maybe, h, showMsg, withBusy, spinnerText, copyButton, fmtDate,
} from './dom.js';

/**
 * A subscription account (`GET /api/accounts`, server/account_views.rs). No answer carries a token.
 * @typedef {object} Account
 * @property {string} id
 * @property {string} kind e.g. `claude`, `codex`
 * @property {string} kind_label
 * @property {string} provider_id the provider its requests go through
 * @property {string} label
 * @property {string | null} email
 * @property {string | null} account_id
 * @property {string | null} plan
 * @property {string | null} project
 * @property {number} created_at
 * @property {number | null} refreshed_at
 * @property {number | null} expires_at
 * @property {number | null} next_refresh_at
 * @property {string | null} last_error
 * @property {boolean} needs_login the provider no longer accepts the login
 * @property {string | null} tokens_not_saved why the newest tokens (in use) are not in the keychain yet
 * @property {QuotaWindow[]} quota what the provider reported of its usage windows (Codex)
 */

/**
 * @typedef {object} QuotaWindow
 * @property {string} name `primary`, `secondary`
 * @property {number} used_percent
 * @property {number | null} window_minutes
 * @property {number | null} resets_at_ms
 */

/** A kind of subscription one can log in to. @typedef {{ kind: string, label: string, flow: 'pkce' | 'device' }} LoginKind */

/**
 * A login under way or ended (`/api/logins`), as the dialog follows it.
 * @typedef {object} Login
 * @property {string} id
 * @property {string} kind
 * @property {'pkce' | 'device'} flow
 * @property {'waiting' | 'finishing' | 'done' | 'failed' | 'cancelled'} status
 * @property {string} [authorize_url] pkce: the sign-in page
 * @property {string} [redirect_uri] pkce: where the browser comes back to
 * @property {string} [user_code] device: the code to enter
 * @property {string} [verification_uri] device: where to enter it
 * @property {string} [verification_uri_complete]
 * @property {number} [expires_at]
 * @property {string} [error]
 * @property {Account} [account] the account it made, once done
 * @property {boolean} [paste] set here: started to paste the callback URL (no local listener)
 */

const enc = encodeURIComponent;
const POLL_MS = 1000;

/** What each kind gives, in the words of the subscription it uses. @type {Record<string, string>} */
const KIND_NOTES = {
  claude: 'Claude Pro/Max via your Anthropic login',
  codex: 'ChatGPT Plus/Pro (Codex) via your OpenAI login',
  gemini_cli: 'Gemini via your Google account (Gemini CLI / Code Assist)',
  qwen: 'Qwen Code via your qwen.ai account',
  copilot: 'GitHub Copilot via your GitHub account',
  iflow: 'iFlow models via your iFlow account',
};

/**
 * @type {{ accounts: Account[], kinds: LoginKind[], loaded: boolean, clock: ReturnType<typeof setInterval> | undefined }}
 */
const page = {
  accounts: [],
  kinds: [],
  loaded: false,
  // Re-renders the relative times ("in 12 min") while the page is open; no request is made.
  clock: undefined,
};

// ---------------------------------------------------------------------------------------------
// Times

/**
 * "in 12 min", "3 h ago", "just now": how far `ms` is from now.
 * @param {unknown} ms
 */
export function fmtRelative(ms, now = Date.now()) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  const diff = ms - now;
  const abs = Math.abs(diff);
  if (abs < 45_000) return diff >= 0 ? 'in less than a minute' : 'just now';
  /** @type {[string, number][]} */
  const units = [['day', 86_400_000], ['h', 3_600_000], ['min', 60_000]];
  const [unit, size] = units.find(([, s]) => abs >= s) || units[units.length - 1];
  const n = Math.round(abs / size);
  const text = unit === 'day' ? `${n} day${n === 1 ? '' : 's'}` : `${n} ${unit}`;
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}

/**
 * Relative time with the exact time beside it (and in a <time> for screen readers).
 * @param {number | null | undefined} ms
 * @param {string} never what to say without a time
 */
function whenCell(ms, never) {
  if (typeof ms !== 'number') return h('span', { class: 'muted' }, never);
  const d = new Date(ms);
  return h('span', {},
    h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, fmtRelative(ms)),
    h('span', { class: 'muted' }, ` (${fmtDate(ms)})`));
}

// ---------------------------------------------------------------------------------------------
// The list

/** @param {string | null} kind */
function kindLabel(kind) {
  return page.kinds.find((k) => k.kind === kind)?.label || String(kind);
}

/** @param {Account} a */
function healthBadge(a) {
  if (a.needs_login) return h('span', { class: 'badge', dataset: { kind: 'bad' } }, 'Needs login');
  if (a.last_error) return h('span', { class: 'badge', dataset: { kind: 'warn' } }, 'Refresh failed');
  if (a.tokens_not_saved) return h('span', { class: 'badge', dataset: { kind: 'warn' } }, 'Tokens not saved');
  return h('span', { class: 'badge', dataset: { kind: 'ok' } }, 'Signed in');
}

/**
 * @param {string} name
 * @param {import('./dom.js').Child} value
 */
function fact(name, value) {
  return [h('dt', {}, name), h('dd', {}, value)];
}

/**
 * "5 h window: 37% used, resets in 2 h" for each window the provider reported.
 * @param {QuotaWindow[]} windows
 */
function quotaCell(windows) {
  return h('ul', { class: 'plain-list' }, ...windows.map((w) => {
    const minutes = Number(w.window_minutes);
    let span = 'Window';
    if (minutes >= 1440) span = `${Math.round(minutes / 1440)} d window`;
    else if (minutes > 0) span = `${Math.round(minutes / 60)} h window`;
    const used = `${Math.round(Number(w.used_percent))}% used`;
    return h('li', {}, `${span}: ${used}`,
      w.resets_at_ms ? h('span', { class: 'muted' }, ', resets ', whenCell(w.resets_at_ms, '')) : null);
  }));
}

/** @param {Account} a */
function accountCard(a) {
  const name = a.label || a.email || a.id;
  const actions = h('div', { class: 'row-actions' },
    h('button', {
      type: 'button', class: `btn btn-small${a.needs_login ? ' btn-primary' : ''}`, 'aria-label': `Log in again to ${name}`,
      dataset: { fkey: `relogin:${a.id}` }, onclick: () => openLogin(a.kind, a),
    }, 'Re-login'),
    h('button', {
      type: 'button', class: 'btn btn-small', 'aria-label': `Refresh the login of ${name} now`,
      dataset: { fkey: `refresh:${a.id}` }, onclick: (ev) => refreshAccount(a, ev.currentTarget),
    }, 'Refresh now'),
    h('button', {
      type: 'button', class: 'btn btn-small btn-danger-ghost', 'aria-label': `Log out of ${name}`,
      dataset: { fkey: `logout:${a.id}` }, onclick: (ev) => logOut(a, ev.currentTarget),
    }, 'Log out'));
  const facts = h('dl', { class: 'facts account-facts' },
    fact('Kind', a.kind_label || kindLabel(a.kind)),
    a.email && a.email !== name ? fact('Email', a.email) : null,
    fact('Plan', a.plan ? String(a.plan) : h('span', { class: 'muted' }, 'not reported')),
    a.project ? fact('Project', h('code', {}, String(a.project))) : null,
    Array.isArray(a.quota) && a.quota.length ? fact('Usage', quotaCell(a.quota)) : null,
    fact('Provider', h('code', {}, String(a.provider_id || '—'))),
    fact('Last refresh', whenCell(a.refreshed_at, 'not yet')),
    fact('Next refresh', a.needs_login
      ? h('span', { class: 'muted' }, 'none until you log in again')
      : whenCell(a.next_refresh_at, 'not scheduled')),
    a.last_error ? fact('Last error', h('span', { class: 'bad-text break' }, String(a.last_error))) : null,
    // New tokens in use that the keychain refused; the gateway keeps trying to save them.
    a.tokens_not_saved ? fact('Keychain', h('span', { class: 'bad-text break' }, String(a.tokens_not_saved))) : null);
  return h('article', {
    class: `card account${a.needs_login ? ' account-needs-login' : ''}`, id: `account-${a.id}`,
    'aria-labelledby': `account-h-${a.id}`, dataset: { account: a.id },
  },
  h('div', { class: 'provider-head' },
    h('div', { class: 'provider-title' },
      h('h3', { id: `account-h-${a.id}`, tabindex: '-1' }, String(name)),
      healthBadge(a)),
    actions),
  a.needs_login
    ? h('p', { class: 'small bad-text' }, 'The provider no longer accepts this login, so requests skip this account. Press Re-login to sign in again.')
    : null,
  facts);
}

function renderList() {
  const list = $('account-list');
  const focused = document.activeElement instanceof HTMLElement ? document.activeElement.dataset.fkey : undefined;
  if (!page.loaded) return;
  if (page.accounts.length === 0) {
    list.replaceChildren(h('div', { class: 'card empty-card' },
      h('p', {}, 'No accounts yet.'),
      h('p', { class: 'muted small' }, 'Log in above with a subscription you have; requests to its models then use it like a provider.')));
  } else {
    list.replaceChildren(...page.accounts.map(accountCard));
  }
  const again = focused ? list.querySelector(`[data-fkey="${CSS.escape(focused)}"]`) : null;
  if (again instanceof HTMLElement) again.focus();
  renderNavBadge();
}

function renderKinds() {
  const grid = $('login-kinds');
  if (page.kinds.length === 0) {
    grid.replaceChildren(h('p', { class: 'muted small' }, page.loaded ? 'This gateway offers no subscription logins.' : 'Loading…'));
    return;
  }
  grid.replaceChildren(...page.kinds.map((k) => h('button', {
    type: 'button', class: 'kind', id: `login-kind-${k.kind}`, dataset: { kind: k.kind },
    onclick: () => openLogin(k.kind, null),
  },
  h('span', { class: 'kind-name' }, `Log in: ${k.label || k.kind}`),
  h('span', { class: 'kind-note' }, KIND_NOTES[k.kind] || (k.flow === 'device' ? 'Sign in with a code in your browser' : 'Sign in in your browser')))));
}

/** A count on the navigation link while some account needs a login, seen from every page. */
function renderNavBadge() {
  const link = document.querySelector('#nav a[data-page="accounts"]');
  if (!link) return;
  const n = page.accounts.filter((a) => a.needs_login).length;
  const found = link.querySelector('.nav-badge');
  let badge = found instanceof HTMLElement ? found : null;
  if (n === 0) {
    badge?.remove();
    return;
  }
  if (!badge) {
    badge = h('span', { class: 'nav-badge' });
    link.append(badge);
  }
  badge.textContent = String(n);
  badge.title = `${n} account${n === 1 ? '' : 's'} need${n === 1 ? 's' : ''} login`;
  badge.setAttribute('aria-label', badge.title);
}

/** Loads the accounts and the kinds of login; throws for the caller to report. */
export async function load() {
  const data = /** @type {{ accounts: Account[], kinds: LoginKind[] } | null} */ (await apiOptional('GET', '/api/accounts'));
  page.loaded = true;
  page.accounts = Array.isArray(data?.accounts) ? data.accounts : [];
  page.kinds = Array.isArray(data?.kinds) ? data.kinds : [];
  if (!data) showMsg($('accounts-msg'), 'This gateway cannot use subscription accounts; update FlexiProxy.');
  renderKinds();
  renderList();
}

/** Refetches after the gateway said the accounts changed; failures land on the page. */
export async function refresh() {
  try {
    await load();
  } catch (e) {
    if (statusOf(e) !== 401) showMsg($('accounts-msg'), `Could not load the accounts: ${errorText(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Actions on an account

/**
 * @param {Account} a
 * @param {HTMLButtonElement} btn
 */
function refreshAccount(a, btn) {
  const name = a.label || a.email || a.id;
  return runAction(btn, {
    busy: 'Refreshing…',
    call: () => api('POST', `/api/accounts/${enc(a.id)}/refresh`),
    msg: $('accounts-msg'),
    done: `The login of ${name} was refreshed.`,
    failed: `Could not refresh ${name}`,
    hint: (e) => (e instanceof ApiError && e.status === 409 ? ' Press Re-login to sign in again.' : ''),
    reload: refresh,
  });
}

/**
 * @param {Account} a
 * @param {HTMLButtonElement} btn
 */
function logOut(a, btn) {
  const name = a.label || a.email || a.id;
  return runAction(btn, {
    ask: {
      title: `Log out of ${name}?`,
      text: 'Its tokens leave the keychain and requests stop using this subscription. You can log in again later.',
      ok: 'Log out',
      danger: true,
    },
    busy: 'Logging out…',
    call: () => api('DELETE', `/api/accounts/${enc(a.id)}`),
    msg: $('accounts-msg'),
    done: `Logged out of ${name}.`,
    failed: `Could not log out of ${name}`,
    reload: refresh,
    after: () => $('accounts-h').focus(),
  });
}

// ---------------------------------------------------------------------------------------------
// The login dialog

/**
 * The login the dialog follows (of `kind`, or for the account `relogin`); `seq` tells a stale
 * poll answer from the current one; `canOpen`: whether the gateway can open the system
 * browser (null: not asked yet); `shape`: what the dialog shows now (see renderLogin).
 * @type {{ login: Login | null, kind: string | null, relogin: Account | null, seq: number, timer: ReturnType<typeof setTimeout> | undefined, canOpen: boolean | null, shape: string }}
 */
const flow = { login: null, kind: null, relogin: null, seq: 0, timer: undefined, canOpen: null, shape: '' };

const FINISHED = ['done', 'failed', 'cancelled'];

/**
 * @param {unknown} url
 * @returns {url is string}
 */
function isWebUrl(url) {
  return typeof url === 'string' && /^https?:\/\//i.test(url);
}

/** Whether the gateway can open the system browser (a desktop app hosts it); asked once. */
async function canOpenBrowser() {
  if (flow.canOpen == null) {
    try {
      const desktop = /** @type {import('./settings.js').DesktopView | null} */ (await apiOptional('GET', '/api/desktop'));
      flow.canOpen = desktop?.available === true;
    } catch {
      flow.canOpen = false;
    }
  }
  return flow.canOpen;
}

/**
 * A link that opens in a new tab, for a browser or a gateway that cannot open one itself.
 * @param {string} url
 * @param {string} text
 * @param {string} cls
 */
function plainLink(url, text, cls) {
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', class: cls }, text);
}

/**
 * "Open sign-in page": through the desktop app, or a plain link when the gateway cannot.
 * @param {string | undefined} url
 * @param {string} text
 */
function openButton(url, text) {
  if (!isWebUrl(url)) return null;
  if (flow.canOpen === false) return plainLink(url, text, 'btn btn-primary open-link');
  const btn = h('button', { type: 'button', class: 'btn btn-primary open-link' }, text);
  btn.addEventListener('click', async () => {
    try {
      await api('POST', '/api/desktop/open', { url });
      setNote('The page is open in your browser. Sign in there; this dialog continues by itself.');
    } catch (e) {
      if (e instanceof ApiError && (e.status === 409 || e.status === 404)) {
        // Headless: a link the user opens (or copies to the computer with the browser).
        flow.canOpen = false;
        const link = plainLink(url, text, 'btn btn-primary open-link');
        btn.replaceWith(link);
        link.focus();
        setNote('This gateway cannot open a browser itself: use the link, or copy it to a computer with a browser.');
      } else {
        showMsg($('ld-msg'), `Could not open the browser: ${errorText(e)}`);
      }
    }
  });
  return btn;
}

/** @param {string} text */
function setNote(text) {
  const note = $maybe('ld-note');
  if (note) {
    note.textContent = text;
    note.hidden = !text;
  }
}

/** @param {Login} l */
function pkceContent(l) {
  const url = l.authorize_url;
  const paste = h('form', { class: 'paste-form', autocomplete: 'off' },
    h('div', { class: 'field' },
      h('label', { for: 'ld-callback' }, 'Paste the callback URL'),
      h('div', { class: 'inline' },
        h('input', {
          id: 'ld-callback', type: 'url', spellcheck: 'false', required: true,
          placeholder: l.redirect_uri ? `${l.redirect_uri}?code=…&state=…` : 'http://localhost:…/callback?code=…',
          'aria-describedby': 'ld-callback-note',
        }),
        h('button', { type: 'submit', class: 'btn', id: 'ld-callback-submit' }, 'Finish login')),
      h('p', { class: 'note small', id: 'ld-callback-note' },
        'After you sign in, the browser goes to ',
        h('code', {}, l.redirect_uri || 'a localhost address'),
        '. If that page does not load (the browser is on another computer), copy the whole address from its address bar and paste it here.')));
  paste.addEventListener('submit', submitCallback);
  const pasteBlock = h('details', { class: 'paste', open: l.paste ? true : null },
    h('summary', {}, 'Browser on another computer?'), paste);
  return [
    h('ol', { class: 'login-steps' },
      h('li', {}, 'Open the sign-in page and log in with your account.'),
      h('li', {}, 'Allow FlexiProxy when the page asks.'),
      h('li', {}, 'Come back here: the login finishes by itself.')),
    h('div', { class: 'form-actions open-row' },
      openButton(url, 'Open sign-in page'),
      isWebUrl(url) ? copyButton(() => url, 'Copy link', { aria: 'Copy the sign-in link' }) : null),
    h('p', { class: 'note small', id: 'ld-note', role: 'status', hidden: true }),
    pasteBlock,
  ];
}

/** @param {Login} l */
function deviceContent(l) {
  const url = l.verification_uri_complete || l.verification_uri;
  const code = String(l.user_code || '');
  return [
    h('p', {}, 'Enter this code on the sign-in page:'),
    h('div', { class: 'user-code-row' },
      h('output', { class: 'user-code', id: 'ld-user-code', 'aria-label': `Code ${code.split('').join(' ')}` }, code),
      copyButton(() => code, 'Copy code', { aria: 'Copy the code' })),
    h('div', { class: 'form-actions open-row' },
      openButton(url, 'Open sign-in page'),
      isWebUrl(l.verification_uri) ? h('span', { class: 'small muted break' }, 'or go to ',
        plainLink(l.verification_uri, l.verification_uri.replace(/^https?:\/\//, ''), 'mono')) : null),
    typeof l.expires_at === 'number'
      ? h('p', { class: 'note small' }, `The code is valid until ${new Date(l.expires_at).toLocaleTimeString()}.`)
      : null,
    h('p', { class: 'note small', id: 'ld-note', role: 'status', hidden: true }),
  ];
}

/** @param {Login} l */
function resultContent(l) {
  if (l.status === 'done') {
    /** @type {Partial<Account>} */
    const a = l.account || {};
    return [h('div', { class: 'test-ok login-result' },
      h('strong', {}, '✓ Logged in'),
      h('span', { class: 'block' }, String(a.label || a.email || kindLabel(l.kind))),
      a.email && a.email !== a.label ? h('span', { class: 'sub block' }, String(a.email)) : null,
      a.plan ? h('span', { class: 'sub block' }, `Plan: ${a.plan}`) : null)];
  }
  if (l.status === 'cancelled') return [h('p', { class: 'muted' }, 'The login was cancelled.')];
  return [h('div', { class: 'test-bad login-result', id: 'ld-error' },
    h('strong', {}, '✗ The login failed: '), String(l.error || 'no reason given')),
  h('div', { class: 'form-actions' },
    h('button', { type: 'button', class: 'btn btn-primary', id: 'ld-retry', onclick: () => startLogin(false) }, 'Try again'))];
}

/** @param {Login} l */
function progressText(l) {
  if (l.status === 'finishing') return 'Finishing…';
  if (l.status === 'waiting') return l.flow === 'device' ? 'Waiting for you to enter the code in the browser…' : 'Waiting for the browser…';
  return '';
}

/**
 * Shows the login: its steps once, then only the progress line until it ends.
 * @param {Login} l
 */
function renderLogin(l) {
  const shape = FINISHED.includes(l.status) ? `end:${l.status}` : `run:${l.flow}:${l.id}`;
  if (shape !== flow.shape) {
    flow.shape = shape;
    const content = FINISHED.includes(l.status) ? resultContent(l) : l.flow === 'device' ? deviceContent(l) : pkceContent(l);
    $('ld-content').replaceChildren(...content.filter((c) => c !== null));
    const cancel = $('ld-cancel');
    const ended = FINISHED.includes(l.status);
    cancel.textContent = ended ? 'Close' : 'Cancel';
    cancel.className = ended && l.status === 'done' ? 'btn btn-primary' : 'btn';
    if (ended) {
      (l.status === 'done' ? cancel : $maybe('ld-retry') || cancel).focus();
    } else {
      const link = $('ld-content').querySelector('.open-link');
      if (link instanceof HTMLElement) link.focus();
    }
  }
  const text = progressText(l);
  $('ld-status').replaceChildren(text ? spinnerText(text) : '');
  $('login-dialog', HTMLDialogElement).dataset.status = l.status;
}

function stopPolling() {
  clearTimeout(flow.timer);
  flow.timer = undefined;
}

function schedulePoll() {
  stopPolling();
  const seq = flow.seq;
  flow.timer = setTimeout(() => poll(seq), POLL_MS);
}

/** @param {number} seq the login's `flow.seq` when this poll was scheduled */
async function poll(seq) {
  const l = flow.login;
  if (!l || seq !== flow.seq) return;
  try {
    const next = /** @type {Login} */ (await api('GET', `/api/logins/${enc(l.id)}`));
    if (seq !== flow.seq) return;
    showMsg($('ld-msg'), '');
    took(next);
  } catch (e) {
    if (seq !== flow.seq) return;
    if (e instanceof ApiError && e.status === 404) {
      took({ ...l, status: 'failed', error: 'The gateway no longer knows this login (it expired). Start again.' });
      return;
    }
    if (statusOf(e) === 401) return;
    showMsg($('ld-msg'), `${errorText(e)} Trying again…`);
    schedulePoll();
  }
}

/**
 * Takes in the login's latest state: shows it, and polls again until it ends.
 * @param {Login} l
 */
function took(l) {
  flow.login = l;
  renderLogin(l);
  if (FINISHED.includes(l.status)) {
    stopPolling();
    if (l.status === 'done') refresh();
  } else {
    schedulePoll();
  }
}

/** @param {SubmitEvent} ev */
async function submitCallback(ev) {
  ev.preventDefault();
  const l = flow.login;
  const input = $('ld-callback', HTMLInputElement);
  const url = input.value.trim();
  if (!l) return;
  if (!/^https?:\/\/.+[?#].*code=/.test(url)) {
    showMsg($('ld-msg'), 'Paste the whole address the browser went to after you signed in: it starts with http:// and has code=… in it.');
    input.focus();
    return;
  }
  const seq = flow.seq;
  await withBusy($('ld-callback-submit', HTMLButtonElement), 'Finishing…', async () => {
    try {
      const next = /** @type {Login} */ (await api('POST', `/api/logins/${enc(l.id)}/callback`, { url }));
      if (seq === flow.seq) {
        showMsg($('ld-msg'), '');
        took(next);
      }
    } catch (e) {
      showMsg($('ld-msg'), `That address did not finish the login: ${errorText(e)}`);
    }
  });
}

/**
 * Starts a login of the dialog's kind; `paste` starts one without a local listener.
 * @param {boolean} paste
 */
async function startLogin(paste) {
  stopPolling();
  flow.seq += 1;
  flow.login = null;
  flow.shape = '';
  const seq = flow.seq;
  const msg = $('ld-msg');
  showMsg(msg, '');
  $('ld-cancel').textContent = 'Cancel';
  $('ld-cancel').className = 'btn';
  $('ld-content').replaceChildren();
  $('ld-status').replaceChildren(spinnerText('Starting the login…'));
  await canOpenBrowser();
  /** @type {{ kind: string | null, relogin?: string, paste?: boolean }} */
  const body = { kind: flow.kind };
  if (flow.relogin) body.relogin = flow.relogin.id;
  if (paste) body.paste = true;
  try {
    const l = /** @type {Login} */ (await api('POST', '/api/logins', body));
    if (seq !== flow.seq) {
      // Closed or restarted meanwhile: this login is nobody's.
      api('DELETE', `/api/logins/${enc(l.id)}`).catch(() => {});
      return;
    }
    took({ ...l, paste });
  } catch (e) {
    if (seq !== flow.seq) return;
    $('ld-status').replaceChildren();
    showMsg(msg, `Could not start the login: ${errorText(e)}`);
    if (e instanceof ApiError && e.status === 409 && !paste) {
      // The callback port is taken (another login, or another program): paste instead.
      $('ld-content').replaceChildren(h('div', { class: 'form-actions' },
        h('button', { type: 'button', class: 'btn btn-primary', id: 'ld-paste-instead', onclick: () => startLogin(true) },
          'Log in by pasting the callback URL instead')));
      $('ld-paste-instead').focus();
    }
  }
}

/**
 * Opens the dialog for a new login of `kind`, or a new login for `relogin` (an account).
 * @param {string} kind
 * @param {Account | null} relogin
 */
export function openLogin(kind, relogin) {
  flow.kind = kind;
  flow.relogin = relogin;
  const label = kindLabel(kind);
  $('login-dialog-h').textContent = relogin
    ? `Log in again: ${relogin.label || relogin.email || label}`
    : `Log in: ${label}`;
  $('ld-kind-note').textContent = KIND_NOTES[kind] || '';
  const dlg = $('login-dialog', HTMLDialogElement);
  if (!dlg.open) dlg.showModal();
  $('ld-cancel').focus();
  startLogin(false);
}

/** Ends the dialog's login: a running one is cancelled on the gateway (its listener stops). */
function endLogin() {
  stopPolling();
  flow.seq += 1;
  const l = flow.login;
  flow.login = null;
  flow.shape = '';
  if (l && !FINISHED.includes(l.status)) {
    api('DELETE', `/api/logins/${enc(l.id)}`).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------

function tick() {
  if (!$('page-accounts').hidden && page.accounts.length) renderList();
}

export function clear() {
  endLogin();
  page.accounts = [];
  page.kinds = [];
  page.loaded = false;
  flow.canOpen = null;
  $('account-list').replaceChildren(h('p', { class: 'card empty-card' }, 'Loading…'));
  renderKinds();
  renderNavBadge();
  showMsg($('accounts-msg'), '');
}

export function init() {
  $('ld-cancel').addEventListener('click', () => $('login-dialog', HTMLDialogElement).close());
  // Escape, Cancel and Close all end here.
  $('login-dialog', HTMLDialogElement).addEventListener('close', () => {
    const relogin = flow.relogin;
    endLogin();
    const back = relogin ? document.querySelector(`[data-fkey="relogin:${CSS.escape(relogin.id)}"]`) : $maybe(`login-kind-${flow.kind}`);
    (back instanceof HTMLElement ? back : $('accounts-h')).focus();
  });
  renderKinds();
  clearInterval(page.clock);
  page.clock = setInterval(tick, 30_000);
}
