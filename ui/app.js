// @ts-check
// FlexiProxy web UI entry: sign-in, the page router (#dashboard, #providers, #accounts,
// #adapters, #settings), the top bar, and start-up. The pages live in lib/*.js; they talk only to the
// gateway's management API (/api/*) with the management token as a Bearer token.
//
// No build step and no dependencies: these files are embedded in the binary as written and
// loaded as ES modules (the gateway serves lib/ from a fixed list in server/assets.rs).
// TypeScript only checks them, from their JSDoc (ui/tsconfig.json; .ci/run runs it).

import { auth, api, errorText, statusOf, ApiError } from './lib/api.js';
import { $, showMsg, withBusy, copyButton } from './lib/dom.js';
import * as live from './lib/live.js';
import * as dashboard from './lib/dashboard.js';
import * as providers from './lib/providers.js';
import * as accounts from './lib/accounts.js';
import * as adapters from './lib/adapters.js';
import * as settings from './lib/settings.js';
import { on, reset, loadStatus, loadProviders, loadAdapters, loadSettings } from './lib/state.js';

const TOKEN_KEY = 'flexiproxy.managementToken';
const PAGES = ['dashboard', 'providers', 'accounts', 'adapters', 'settings'];

// ---------------------------------------------------------------------------------------------
// Router

/** The page the hash names, or null. */
function pageFromHash() {
  const name = window.location.hash.replace(/^#\/?/, '');
  return PAGES.includes(name) ? name : null;
}

/**
 * The heading `selector` finds (`#page-<name> h1`, or the shown page's), where the keyboard goes.
 * @param {string} selector
 */
function heading(selector) {
  const el = document.querySelector(selector);
  return el instanceof HTMLElement ? el : null;
}

/**
 * Shows the page the hash names; `focus` moves the keyboard to its heading (a user's choice).
 * @param {boolean} focus
 */
function route(focus) {
  const page = pageFromHash() || 'dashboard';
  for (const section of document.querySelectorAll('.page')) {
    if (section instanceof HTMLElement) section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll('#nav a')) {
    if (link instanceof HTMLElement && link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const title = heading(`#page-${page} h1`)?.textContent || 'FlexiProxy';
  document.title = `${title} · FlexiProxy`;
  if (focus) heading(`#page-${page} h1`)?.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  if (page === 'settings') settings.load();
}

// ---------------------------------------------------------------------------------------------
// Top bar

/** @param {import('./lib/state.js').Status | null} s */
function renderStatus(s) {
  $('gateway-status').hidden = !s;
  if (!s) return;
  $('st-version').textContent = s.version ? `v${s.version}` : '';
  $('st-base-url').textContent = s.base_url || '';
  const warn = s.secrets?.warning;
  $('secrets-warning').hidden = warn == null || warn === '';
  $('secrets-warning-text').textContent = warn ?? '';
  const cfgError = s.config?.error;
  showMsg($('status-error'), cfgError ? `The config file has an error, so the last good version is in use: ${cfgError}` : '');
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

/** @param {string | null} token */
function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage can be disabled; the token then lives for this page load only.
  }
}

function clearData() {
  reset();
  dashboard.clear();
  providers.clear();
  accounts.clear();
  adapters.clear();
  settings.clear();
  $('secrets-warning').hidden = true;
  showMsg($('status-error'), '');
  $('st-version').textContent = '';
}

/** @param {string} message */
function showLogin(message) {
  live.stop();
  clearData();
  for (const d of document.querySelectorAll('dialog[open]')) {
    if (d instanceof HTMLDialogElement) d.close();
  }
  $('main').hidden = true;
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('login-view').hidden = false;
  showMsg($('login-msg'), message || '');
  $('login-token', HTMLInputElement).value = '';
  $('login-token', HTMLInputElement).focus();
}

/** Loads everything the pages show; each failure is reported where it belongs. */
async function loadAll() {
  /** @type {[() => Promise<void>, (e: unknown) => void][]} */
  const jobs = [
    [loadStatus, (e) => showMsg($('status-error'), `Gateway status unavailable: ${errorText(e)}`)],
    [loadProviders, (e) => showMsg($('providers-msg'), `Could not load providers: ${errorText(e)}`)],
    [loadAdapters, (e) => showMsg($('adapters-msg'), `Could not load adapters: ${errorText(e)}`)],
    [accounts.load, (e) => showMsg($('accounts-msg'), `Could not load the accounts: ${errorText(e)}`)],
    [loadSettings, (e) => showMsg($('settings-msg'), `Could not load settings: ${errorText(e)}`)],
  ];
  await Promise.all(jobs.map(([load, fail]) => load().catch((e) => {
    if (statusOf(e) !== 401) fail(e);
  })));
}

async function showApp() {
  $('login-view').hidden = true;
  $('main').hidden = false;
  $('nav').hidden = false;
  // The desktop app manages its own token, so signing out there would only strand the user.
  $('signout').hidden = auth.fromApp;
  route(false);
  await loadAll();
  await dashboard.refresh();
  dashboard.seedRpm();
  live.start({
    usage: dashboard.onUsage,
    lagged: () => {
      dashboard.refreshSoon();
      accounts.refresh();
    },
    // Whatever changed while the stream was down is in the summaries and the account list.
    connected: () => {
      dashboard.refreshSoon();
      accounts.refresh();
    },
    accounts: accounts.refresh,
    state: dashboard.setLiveState,
  });
}

/** @param {string} message */
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

/** @param {SubmitEvent} ev */
async function submitLogin(ev) {
  ev.preventDefault();
  const token = $('login-token', HTMLInputElement).value.trim();
  const msg = $('login-msg');
  if (!token) {
    showMsg(msg, 'Enter the management token.');
    return;
  }
  showMsg(msg, '');
  await withBusy($('login-submit', HTMLButtonElement), 'Signing in…', async () => {
    auth.token = token;
    auth.fromApp = false;
    try {
      // Check the token before switching views so a typo stays on this form.
      await api('GET', '/api/status');
    } catch (e) {
      auth.token = null;
      showMsg(msg, e instanceof ApiError && e.status === 401 ? 'That token was not accepted. Check it and try again.' : errorText(e));
      $('login-token', HTMLInputElement).focus();
      return;
    }
    storeToken(token);
    showApp();
    heading('.page:not([hidden]) h1')?.focus({ preventScroll: true });
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
  const icon = $('brand-icon', HTMLImageElement);
  const hideIcon = () => { icon.hidden = true; };
  icon.addEventListener('error', hideIcon);
  if (icon.complete && icon.naturalWidth === 0) hideIcon();

  auth.onUnauthorized = onUnauthorized;
  dashboard.init();
  providers.init();
  accounts.init();
  adapters.init();
  settings.init();
  on('status', renderStatus);

  $('login-form').addEventListener('submit', submitLogin);
  $('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => {
    if (pageFromHash()) route(true);
  });
  // Skip to the page's heading without touching the hash (which names the page).
  $('skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    const target = $('main').hidden ? $('login-token', HTMLInputElement) : heading('.page:not([hidden]) h1');
    target?.focus();
  });

  const baseUrlEl = $('st-base-url');
  const copyBase = copyButton(() => baseUrlEl.textContent, 'Copy', {
    aria: 'Copy base URL',
    selectOnFail: () => window.getSelection()?.selectAllChildren(baseUrlEl),
  });
  copyBase.id = 'copy-base-url';
  $('copy-base-url').replaceWith(copyBase);

  // The desktop app defines this before the page loads (src-tauri/app/src/window.rs).
  const fromApp = /** @type {{ __FLEXIPROXY__?: { token?: unknown } }} */ (window).__FLEXIPROXY__;
  const injected = fromApp?.token;
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
