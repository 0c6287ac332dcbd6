// @ts-check
// The Settings page: the address the gateway listens on (saved for the next start, with a
// warning when it leaves this computer), usage statistics on/off (turning them off asks whether
// to keep or delete the history), start at login (only in the desktop app), "About FlexiProxy"
// (the version and where the data, the config file and the keys live), and a CSV export of the
// usage records.

import { api, apiOptional, download, errorText } from './api.js';
import {
  $, h, showMsg, withBusy, choiceDialog, copyButton, localMidnightMs,
} from './dom.js';
import { state, on, loadStatus, setSettings } from './state.js';

/** @typedef {import('./state.js').Settings} Settings */

/**
 * `GET`/`PUT /api/desktop` (server/host_views.rs): whether a desktop app hosts this gateway,
 * and whether it starts at login (null without one).
 * @typedef {{ available: boolean, autostart: boolean | null }} DesktopView
 */

/** @param {unknown} bind */
function isLoopback(bind) {
  const b = String(bind || '').trim().toLowerCase();
  return b === '' || b === 'localhost' || b === '::1' || b === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(b);
}

// ---------------------------------------------------------------------------------------------
// Address

/** @param {Settings} s */
function renderListen(s) {
  const listen = s?.listen;
  const form = $('listen-form');
  const fields = [$('set-bind', HTMLInputElement), $('set-port', HTMLInputElement), $('listen-save', HTMLButtonElement)];
  if (!listen) {
    $('listen-running').textContent = state.status?.listen
      ? `Listening on ${state.status.listen}. This gateway cannot change its address from here; use --bind and --port.`
      : '';
    for (const f of fields) f.disabled = true;
    return;
  }
  for (const f of fields) f.disabled = false;
  // Keep what the user is typing.
  if (!form.contains(document.activeElement)) {
    $('set-bind', HTMLInputElement).value = listen.saved_bind ?? listen.bind ?? '';
    $('set-port', HTMLInputElement).value = String(listen.saved_port ?? listen.port ?? '');
  }
  const parts = [`Listening on ${listen.bind}:${listen.port}.`];
  if (listen.from_command_line) {
    parts.push('This run took its address from the command line or environment (--bind/--port, FLEXIPROXY_BIND/PORT); the saved address applies when FlexiProxy starts without them.');
  }
  if (listen.restart_required) parts.push('Restart FlexiProxy to use the saved address.');
  $('listen-running').textContent = parts.join(' ');
  syncBindWarning(s.warnings);
}

/**
 * Shows the gateway's warnings about the saved address, or, while none came, one about the
 * address being typed.
 * @param {string[] | null | undefined} serverWarnings
 */
function syncBindWarning(serverWarnings) {
  const warn = $('listen-warning');
  const texts = Array.isArray(serverWarnings) ? [...serverWarnings] : [];
  if (texts.length === 0 && !isLoopback($('set-bind', HTMLInputElement).value)) {
    texts.push(`Binding to ${$('set-bind', HTMLInputElement).value.trim()} exposes the gateway to your network: anyone who can reach this computer can try adapter keys. Keep 127.0.0.1 unless you need that.`);
  }
  warn.textContent = texts.join(' ');
  warn.hidden = texts.length === 0;
}

/** @param {SubmitEvent} ev */
async function saveListen(ev) {
  ev.preventDefault();
  const msg = $('listen-msg');
  const bind = $('set-bind', HTMLInputElement).value.trim();
  const port = Number($('set-port', HTMLInputElement).value);
  if (!bind) {
    showMsg(msg, 'Enter an IP address to bind to, e.g. 127.0.0.1.');
    $('set-bind', HTMLInputElement).focus();
    return;
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    showMsg(msg, 'The port is a whole number from 1 to 65535.');
    $('set-port', HTMLInputElement).focus();
    return;
  }
  showMsg(msg, '');
  await withBusy($('listen-save', HTMLButtonElement), 'Saving…', async () => {
    try {
      const saved = /** @type {Settings | null} */ (await api('PUT', '/api/settings', { listen: { bind, port } }));
      setSettings(saved);
      const restart = saved?.listen?.restart_required;
      showMsg(msg, restart
        ? `Saved ${bind}:${port}. Restart FlexiProxy to use it.`
        : `Saved ${bind}:${port}.`, 'ok');
      syncBindWarning(saved?.warnings);
    } catch (e) {
      showMsg(msg, `Could not save the address: ${errorText(e)}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Usage statistics

/** @param {boolean} on */
function renderUsage(on) {
  const toggle = $('usage-toggle', HTMLInputElement);
  toggle.checked = on;
  toggle.disabled = false;
  $('usage-toggle-state').textContent = on ? 'Recording' : 'Not recording';
}

async function onUsageToggle() {
  const toggle = $('usage-toggle', HTMLInputElement);
  const want = toggle.checked;
  const msg = $('usage-setting-msg');
  let remove = false;
  if (!want) {
    // Stays on while the question is open: nothing changed until the user answers.
    toggle.checked = true;
    const answer = await choiceDialog({
      title: 'Turn usage statistics off?',
      text: 'New requests will not be recorded. What should happen to the history already recorded?',
      choices: [
        { value: 'cancel', label: 'Cancel' },
        { value: 'delete', label: 'Delete history', kind: 'danger' },
        { value: 'keep', label: 'Keep history', kind: 'primary', focus: true },
      ],
    });
    if (answer !== 'keep' && answer !== 'delete') {
      toggle.focus();
      return;
    }
    remove = answer === 'delete';
    toggle.checked = false;
  }
  toggle.disabled = true;
  $('usage-toggle-state').replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), remove ? 'Turning off and deleting…' : 'Saving…');
  showMsg(msg, '');
  try {
    const s = /** @type {Settings | null} */ (await api('PUT', '/api/settings', { usage_enabled: want }));
    setSettings(s);
    let text = want ? 'Usage statistics are on.' : 'Usage statistics are off. Existing records are kept.';
    if (remove) {
      const gone = /** @type {{ deleted: number } | null} */ (await api('DELETE', '/api/usage'));
      text = `Usage statistics are off. ${Number(gone?.deleted ?? 0).toLocaleString()} records deleted.`;
    }
    showMsg(msg, text, 'ok');
  } catch (e) {
    showMsg(msg, `Could not change usage statistics: ${errorText(e)}`);
  } finally {
    renderUsage(!!state.settings?.usage_enabled);
    toggle.focus();
    loadStatus().catch(() => {});
  }
}

async function exportCsv() {
  const msg = $('usage-setting-msg');
  const period = $('export-period', HTMLSelectElement).value;
  const since = period === 'today' ? localMidnightMs() : period === 'week' ? localMidnightMs(6) : null;
  const path = `/api/usage/export.csv${since == null ? '' : `?since_ms=${since}`}`;
  showMsg(msg, '');
  await withBusy($('export-csv', HTMLButtonElement), 'Exporting…', async () => {
    try {
      const { name, bytes } = await download(path, 'flexiproxy-usage.csv');
      showMsg(msg, `Downloaded ${name} (${(bytes / 1024).toFixed(1)} KB).`, 'ok');
    } catch (e) {
      showMsg(msg, `Could not export usage: ${errorText(e)}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Desktop

async function loadDesktop() {
  const card = $('desktop-card');
  try {
    const d = /** @type {DesktopView | null} */ (await apiOptional('GET', '/api/desktop'));
    card.hidden = !d?.available;
    if (d?.available) renderAutostart(!!d.autostart);
  } catch (e) {
    card.hidden = false;
    showMsg($('desktop-msg'), `Could not read the start-at-login setting: ${errorText(e)}`);
  }
}

/** @param {boolean} on */
function renderAutostart(on) {
  const toggle = $('autostart-toggle', HTMLInputElement);
  toggle.checked = on;
  toggle.disabled = false;
  $('autostart-state').textContent = on ? 'On' : 'Off';
}

async function onAutostartToggle() {
  const toggle = $('autostart-toggle', HTMLInputElement);
  const want = toggle.checked;
  toggle.disabled = true;
  $('autostart-state').replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Saving…');
  showMsg($('desktop-msg'), '');
  try {
    const d = /** @type {DesktopView | null} */ (await api('PUT', '/api/desktop', { autostart: want }));
    renderAutostart(!!d?.autostart);
  } catch (e) {
    renderAutostart(!want);
    showMsg($('desktop-msg'), `Could not change start at login: ${errorText(e)}`);
  }
  toggle.focus();
}

// ---------------------------------------------------------------------------------------------
// Data location

function renderData() {
  const dir = state.settings?.data_dir || state.status?.data_dir;
  const db = state.settings?.database;
  const facts = $('data-facts');
  /**
   * A fact with a Copy button.
   * @param {string} label
   * @param {string} value
   */
  const row = (label, value) => {
    const code = h('code', { class: 'break' }, value);
    return [h('dt', {}, label), h('dd', {}, code, copyButton(() => value, 'Copy', {
      aria: `Copy ${label.toLowerCase()}`, selectOnFail: () => window.getSelection()?.selectAllChildren(code),
    }))];
  };
  const version = state.status?.version;
  const configFile = state.status?.config?.path;
  const kind = state.status?.secrets?.kind;
  const keys = kind === 'OS keychain'
    ? 'OS keychain (the system\'s keyring: Secret Service, macOS Keychain, Windows Credential Manager)'
    : String(kind ?? '—');
  facts.replaceChildren(
    h('dt', {}, 'Version'),
    h('dd', { id: 'about-version' }, version ? `FlexiProxy ${version}` : '—'),
    ...(dir ? row('Data folder', String(dir)) : []),
    ...(db ? row('Database', String(db)) : []),
    ...(configFile ? row('Config file', String(configFile)) : []),
    h('dt', {}, 'Keys and token'),
    h('dd', {}, keys, state.status?.secrets?.writable === false ? ' (read-only)' : ''),
  );
}

// ---------------------------------------------------------------------------------------------

export async function load() {
  await loadDesktop();
}

export function clear() {
  $('desktop-card').hidden = true;
  for (const id of ['settings-msg', 'listen-msg', 'usage-setting-msg', 'desktop-msg']) showMsg($(id), '');
  $('usage-toggle', HTMLInputElement).disabled = true;
}

export function init() {
  $('listen-form').addEventListener('submit', saveListen);
  $('set-bind', HTMLInputElement).addEventListener('input', () => syncBindWarning(null));
  $('usage-toggle', HTMLInputElement).addEventListener('change', onUsageToggle);
  $('autostart-toggle', HTMLInputElement).addEventListener('change', onAutostartToggle);
  $('export-csv', HTMLButtonElement).addEventListener('click', exportCsv);
  on('settings', (s) => {
    if (!s) return;
    renderUsage(!!s.usage_enabled);
    renderListen(s);
    renderData();
  });
  on('status', () => renderData());
}
