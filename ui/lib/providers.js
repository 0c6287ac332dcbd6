// @ts-check
// The Providers page: add a provider from a preset (base URL and protocol filled in, key pasted
// once into the keychain), test it with a real minimal call, list and refresh its models, and
// manage its pool of keys with their health (ready, cooling down until …, key refused, at a
// limit, disabled) and limits.

import { api, apiOptional, errorText, ApiError } from './api.js';
import { runAction } from './actions.js';
import {
  $, $maybe, h, td, showMsg, withBusy, spinnerText, fmtInt, fmtMs, fmtWhen, PROTOCOLS, protocolLabel,
} from './dom.js';
import { state, on, loadProviders, loadStatus, putProvider } from './state.js';

/** @typedef {import('./state.js').Provider} Provider */
/** @typedef {import('./state.js').Credential} Credential */
/** @typedef {import('./state.js').Preset} Preset */

/**
 * `POST /api/providers/{id}/test` (provider_test.rs): `ok` with the answer and its tokens, or
 * not with `error`.
 * @typedef {object} TestReport
 * @property {boolean} ok
 * @property {string} model
 * @property {string} credential `<provider>/<credential>`
 * @property {number | null} status the provider's HTTP status; null when no answer came
 * @property {number} latency_ms
 * @property {string} [answer]
 * @property {number} [input_tokens]
 * @property {number} [output_tokens]
 * @property {string} [error]
 */

/**
 * What a provider's card shows besides the provider itself: its last test (a report, or why
 * none was made), whether one runs, the whole model list or its start, a discovery running,
 * and the model picked for the test.
 * @typedef {object} ProviderUi
 * @property {{ kind: 'result', result: TestReport } | { kind: 'error', text: string } | null} test
 * @property {boolean} testing
 * @property {boolean} allModels
 * @property {boolean} discovering
 * @property {string} testModel
 */

const ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
const MODELS_SHOWN = 24;

/** Per provider, what the page shows besides the provider itself (kept across re-renders). @type {Map<string, ProviderUi>} */
const ui = new Map();

/** @param {string} id */
function uiOf(id) {
  let u = ui.get(id);
  if (!u) {
    u = { test: null, testing: false, allModels: false, discovering: false, testModel: '' };
    ui.set(id, u);
  }
  return u;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------
// Rendering

/** @param {Credential} c */
function healthBadge(c) {
  /** @type {Partial<import('./state.js').Health>} */
  const hl = c.health || {};
  const until = hl.available_at_ms ? ` until ${fmtWhen(hl.available_at_ms)}` : '';
  /** @type {Record<string, [string, string]>} */
  const map = {
    ready: ['ok', 'Ready'],
    cooling_down: ['warn', `Cooling down${until}`],
    auth_failed: ['bad', `Key refused${until}`],
    at_limit: ['warn', `At its limit${until}`],
    disabled: ['muted', 'Disabled'],
    key_unavailable: ['bad', 'Key unavailable'],
  };
  const [kind, text] = (hl.state && map[hl.state]) || ['muted', String(hl.state || 'unknown')];
  return h('span', { class: 'health' },
    h('span', { class: 'badge', dataset: { kind } }, text),
    hl.reason ? h('span', { class: 'sub block break' }, String(hl.reason)) : null);
}

/** @param {Credential} c */
function limitsText(c) {
  /** @type {import('./state.js').Limits} */
  const l = c.limits || {};
  /** @type {Partial<import('./state.js').Windows>} */
  const w = c.windows || {};
  const parts = [];
  if (l.max_request_min) parts.push(`${fmtInt(w.req_min ?? 0)} / ${fmtInt(l.max_request_min)} req/min`);
  if (l.max_request_day) parts.push(`${fmtInt(w.req_day ?? 0)} / ${fmtInt(l.max_request_day)} req/day`);
  if (l.max_token_min) parts.push(`${fmtInt(w.tok_min ?? 0)} / ${fmtInt(l.max_token_min)} tokens/min`);
  if (parts.length === 0) return h('span', { class: 'muted' }, 'none');
  return h('span', {}, parts.map((p) => h('span', { class: 'block' }, p)));
}

/** @param {Credential} c */
function keyText(c) {
  const source = c.key_source == null ? '' : String(c.key_source);
  if (source.startsWith('env:')) return h('span', {}, h('span', { class: 'muted' }, 'env '), h('code', {}, source.slice(4)));
  if (!c.key_hint && !source) return h('span', { class: 'muted' }, 'no key');
  return h('span', {}, c.key_hint ? h('code', {}, String(c.key_hint)) : 'set', source ? h('span', { class: 'sub block' }, source) : null);
}

/** @param {Provider} p */
function credentialRows(p) {
  const readOnly = p.source === 'config';
  const list = p.credentials || [];
  if (list.length === 0) {
    return [h('tr', {}, h('td', { colspan: 6, class: 'empty' },
      'No key yet. Local servers need none; for a cloud provider add the key it gave you.'))];
  }
  return list.map((c) => {
    const name = `${p.id}/${c.id}`;
    const actions = [];
    if (!readOnly) {
      actions.push(h('button', {
        type: 'button', class: 'btn btn-small', 'aria-label': `${c.enabled ? 'Disable' : 'Enable'} key ${name}`, dataset: { fkey: `toggle:${name}` },
        onclick: (ev) => toggleCredential(p, c, ev.currentTarget),
      }, c.enabled ? 'Disable' : 'Enable'));
    }
    if (['cooling_down', 'auth_failed', 'at_limit'].includes(c.health?.state)) {
      actions.push(h('button', {
        type: 'button', class: 'btn btn-small', 'aria-label': `Reset key ${name}`, title: 'End its rest now', dataset: { fkey: `reset:${name}` },
        onclick: (ev) => resetCredential(p, c, ev.currentTarget),
      }, 'Reset'));
    }
    if (!readOnly) {
      actions.push(
        h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Edit key ${name}`, dataset: { fkey: `edit:${name}` }, onclick: () => openCredentialDialog(p, c) }, 'Edit'),
        h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', 'aria-label': `Delete key ${name}`, dataset: { fkey: `del:${name}` }, onclick: (ev) => deleteCredential(p, c, ev.currentTarget) }, 'Delete'),
      );
    }
    return h('tr', { class: c.enabled ? null : 'row-off' },
      td('Key', h('span', {}, h('strong', {}, String(c.label || c.id)),
        c.label && c.label !== c.id ? h('span', { class: 'sub block' }, c.id) : null,
        c.priority ? h('span', { class: 'tag' }, `priority ${c.priority}`) : null)),
      td('Secret', keyText(c)),
      td('Health', healthBadge(c)),
      td('Limits', limitsText(c), 'small'),
      td('', h('div', { class: 'row-actions' }, actions), 'actions'),
    );
  });
}

/** @param {Provider} p */
function testResult(p) {
  const u = uiOf(p.id);
  if (u.testing) return spinnerText(`Sending a test request to ${p.id}${u.testModel ? ` with ${u.testModel}` : ''}…`);
  const t = u.test;
  if (!t) return null;
  if (t.kind === 'error') return h('p', { class: 'test-bad' }, h('strong', {}, 'Test not made: '), t.text);
  const r = t.result;
  const facts = [r.model ? `model ${r.model}` : null, r.credential ? `key ${r.credential}` : null,
    typeof r.latency_ms === 'number' ? fmtMs(r.latency_ms) : null].filter(Boolean).join(' · ');
  if (r.ok) {
    return h('div', { class: 'test-ok' },
      h('strong', {}, '✓ The provider answered: '), h('q', { class: 'answer' }, String(r.answer ?? '')),
      h('span', { class: 'sub block' }, facts,
        typeof r.input_tokens === 'number' ? ` · ${fmtInt(r.input_tokens)} in / ${fmtInt(r.output_tokens)} out tokens` : ''));
  }
  return h('div', { class: 'test-bad' },
    h('strong', {}, `✗ The test failed${r.status ? ` (HTTP ${r.status})` : ''}: `), String(r.error || 'no reason given'),
    h('span', { class: 'sub block' }, facts));
}

/** @param {Provider} p */
function modelsBlock(p) {
  const u = uiOf(p.id);
  const models = p.models || [];
  const shown = u.allModels ? models : models.slice(0, MODELS_SHOWN);
  const refresh = h('button', {
    type: 'button', class: 'btn btn-small', 'aria-label': `Refresh the models of ${p.id}`, dataset: { fkey: `discover:${p.id}` },
    onclick: () => discover(p.id),
  }, 'Refresh');
  if (u.discovering) {
    // aria-disabled, not disabled: the button keeps the keyboard focus across re-renders.
    refresh.setAttribute('aria-disabled', 'true');
    refresh.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Refreshing…');
  }
  const when = p.discovered_at_ms ? `read ${fmtWhen(p.discovered_at_ms)}` : p.discovery === 'off' ? 'discovery off' : 'not read yet';
  return h('div', { class: 'provider-models' },
    h('div', { class: 'sub-head' },
      h('h3', {}, 'Models ', h('span', { class: 'count' }, `(${models.length})`)),
      h('span', { class: 'small muted' }, when),
      refresh),
    p.discovery_error ? h('p', { class: 'small bad-text' }, `Could not list the models: ${p.discovery_error}`) : null,
    models.length === 0
      ? h('p', { class: 'small muted' }, 'No models known. Refresh reads them from the provider; you can still type a model name when creating an adapter.')
      : h('ul', { class: 'chips', 'aria-label': `Models of ${p.id}` }, shown.map((m) => h('li', { class: 'chip mono' }, m))),
    models.length > MODELS_SHOWN
      ? h('button', {
        type: 'button', class: 'btn btn-small btn-ghost', 'aria-expanded': String(u.allModels), dataset: { fkey: `more:${p.id}` },
        onclick: () => { u.allModels = !u.allModels; renderProviders(); },
      }, u.allModels ? 'Show fewer' : `Show all ${models.length}`)
      : null,
  );
}

/** @param {Provider} p */
function providerCard(p) {
  const u = uiOf(p.id);
  const readOnly = p.source === 'config';
  const modelSelect = h('select', { class: 'select-small', 'aria-label': `Model to test ${p.id} with`, dataset: { fkey: `tm:${p.id}` } },
    h('option', { value: '' }, 'default model'),
    (p.models || []).map((m) => h('option', { value: m }, m)));
  modelSelect.value = (p.models || []).includes(u.testModel) ? u.testModel : '';
  modelSelect.addEventListener('change', () => { u.testModel = modelSelect.value; });
  const testBtn = h('button', {
    type: 'button', class: 'btn btn-small', 'aria-label': `Test provider ${p.id}`, dataset: { fkey: `test:${p.id}` },
    onclick: () => testProvider(p),
  }, 'Test');
  if (u.testing) {
    testBtn.setAttribute('aria-disabled', 'true');
    testBtn.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Testing…');
  }
  return h('article', { class: 'card provider', id: `provider-${p.id}`, 'aria-labelledby': `provider-h-${p.id}`, dataset: { provider: p.id } },
    h('div', { class: 'provider-head' },
      h('div', { class: 'provider-title' },
        h('h2', { id: `provider-h-${p.id}`, tabindex: '-1' }, String(p.id)),
        h('span', { class: 'badge' }, protocolLabel(p.protocol)),
        readOnly ? h('span', { class: 'tag', title: 'Declared in the config file; edit the file to change it' }, 'config file') : null),
      h('div', { class: 'row-actions' },
        readOnly ? null : h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Edit provider ${p.id}`, dataset: { fkey: `edit:${p.id}` }, onclick: () => openProviderDialog(p) }, 'Edit'),
        readOnly ? null : h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', 'aria-label': `Delete provider ${p.id}`, dataset: { fkey: `delete:${p.id}` }, onclick: (ev) => deleteProvider(p, ev.currentTarget) }, 'Delete'))),
    h('p', { class: 'mono break provider-url' }, String(p.url || '')),
    h('div', { class: 'test-row' }, modelSelect, testBtn),
    h('div', { class: 'test-result', role: 'status', 'aria-live': 'polite' }, testResult(p)),
    modelsBlock(p),
    h('div', { class: 'provider-keys' },
      h('div', { class: 'sub-head' },
        h('h3', {}, 'Keys ', h('span', { class: 'count' }, `(${(p.credentials || []).length})`)),
        readOnly ? null : h('button', {
          type: 'button', class: 'btn btn-small', 'aria-label': `Add a key to ${p.id}`, dataset: { fkey: `addkey:${p.id}` },
          onclick: () => openCredentialDialog(p, null),
        }, 'Add key')),
      h('table', { class: 'data stack-narrow keys-table' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Secret'), h('th', { scope: 'col' }, 'Health'),
          h('th', { scope: 'col', title: 'used now / maximum' }, 'Limits'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, credentialRows(p)))),
  );
}

export function renderProviders() {
  const list = $('provider-list');
  const focused = document.activeElement instanceof HTMLElement ? document.activeElement.dataset.fkey : undefined;
  if (state.providers.length === 0) {
    list.replaceChildren(h('div', { class: 'card empty-card' },
      h('p', {}, 'No providers yet.'),
      h('p', { class: 'muted small' }, 'Add OpenAI, Anthropic, Gemini, a local Ollama or any compatible server. Its key goes to the OS keychain.'),
      h('button', { type: 'button', class: 'btn btn-primary', onclick: () => openProviderDialog(null) }, 'Add your first provider')));
  } else {
    list.replaceChildren(...state.providers.map(providerCard));
  }
  // A re-render replaces the buttons; keep the keyboard where it was.
  const again = focused ? list.querySelector(`[data-fkey="${CSS.escape(focused)}"]`) : null;
  if (again instanceof HTMLElement) again.focus();
}

// ---------------------------------------------------------------------------------------------
// Actions on a provider

/** @param {string} id */
async function reloadOne(id) {
  try {
    putProvider(/** @type {Provider} */ (await api('GET', `/api/providers/${enc(id)}`)));
  } catch (e) {
    showMsg($('providers-msg'), `Could not reload provider ${id}: ${errorText(e)}`);
  }
}

/** @param {Provider} p */
async function testProvider(p) {
  const u = uiOf(p.id);
  if (u.testing) return;
  u.testing = true;
  u.test = null;
  renderProviders();
  try {
    const body = u.testModel ? { model: u.testModel } : {};
    const result = /** @type {TestReport | null} */ (await apiOptional('POST', `/api/providers/${enc(p.id)}/test`, body));
    u.test = result
      ? { kind: 'result', result }
      : { kind: 'error', text: 'this gateway cannot test providers yet; update FlexiProxy.' };
  } catch (e) {
    let text = errorText(e);
    if (e instanceof ApiError && e.status === 400 && /model/i.test(text)) {
      text += ' — refresh the models list or pick a model next to the Test button.';
    }
    u.test = { kind: 'error', text };
  } finally {
    u.testing = false;
  }
  // The test may have changed the key's health (it should not, but show the truth).
  await reloadOne(p.id);
  renderProviders();
}

/**
 * Reads the provider's models again (its Refresh button; also right after a save).
 * @param {string} id
 */
export async function discover(id) {
  const u = uiOf(id);
  if (u.discovering) return;
  u.discovering = true;
  renderProviders();
  try {
    await api('POST', `/api/providers/${enc(id)}/discover`);
  } catch (e) {
    showMsg($('providers-msg'), `Could not refresh the models of ${id}: ${errorText(e)}`);
  } finally {
    u.discovering = false;
  }
  await reloadOne(id);
  renderProviders();
}

/**
 * @param {Provider} p
 * @param {HTMLButtonElement} btn
 */
function deleteProvider(p, btn) {
  return runAction(btn, {
    ask: {
      title: `Delete provider ${p.id}?`,
      text: `Adapters that use ${p.id} will fail until you add it again. Its keys are removed from the keychain.`,
      ok: 'Delete provider',
      danger: true,
    },
    busy: 'Deleting…',
    call: async () => {
      await api('DELETE', `/api/providers/${enc(p.id)}`);
      ui.delete(p.id);
    },
    msg: $('providers-msg'),
    done: `Provider ${p.id} deleted.`,
    failed: `Could not delete provider ${p.id}`,
    reload: () => Promise.allSettled([loadProviders(), loadStatus()]),
    after: () => $('providers-h').focus(),
  });
}

// ---------------------------------------------------------------------------------------------
// Actions on a key

/**
 * A call on one key of `p` from a button of its row: `method` on the key's path plus `suffix`;
 * then the provider is read again (the key's health may have changed).
 * @param {Provider} p
 * @param {Credential} c
 * @param {HTMLButtonElement} btn
 * @param {{ ask?: import('./dom.js').Question, busy: string, method: string, suffix?: string, body?: unknown, done: string, after?: () => void }} call
 */
function credentialAction(p, c, btn, { ask, busy, method, suffix = '', body, done, after }) {
  return runAction(btn, {
    ask,
    busy,
    call: () => api(method, `/api/providers/${enc(p.id)}/credentials/${enc(c.id)}${suffix}`, body),
    msg: $('providers-msg'),
    done,
    failed: `Key ${p.id}/${c.id}`,
    reload: () => reloadOne(p.id),
    after,
  });
}

/**
 * @param {Provider} p
 * @param {Credential} c
 * @param {HTMLButtonElement} btn
 */
function toggleCredential(p, c, btn) {
  return credentialAction(p, c, btn, {
    busy: c.enabled ? 'Disabling…' : 'Enabling…',
    method: 'PATCH',
    body: { enabled: !c.enabled },
    done: `Key ${p.id}/${c.id} ${c.enabled ? 'disabled' : 'enabled'}.`,
  });
}

/**
 * @param {Provider} p
 * @param {Credential} c
 * @param {HTMLButtonElement} btn
 */
function resetCredential(p, c, btn) {
  return credentialAction(p, c, btn, {
    busy: 'Resetting…', method: 'POST', suffix: '/reset', done: `Key ${p.id}/${c.id} is back in use.`,
  });
}

/**
 * @param {Provider} p
 * @param {Credential} c
 * @param {HTMLButtonElement} btn
 */
function deleteCredential(p, c, btn) {
  return credentialAction(p, c, btn, {
    ask: {
      title: `Delete key ${c.label || c.id}?`,
      text: `Provider ${p.id} stops using it and it is removed from the keychain.`,
      ok: 'Delete key',
      danger: true,
    },
    busy: 'Deleting…',
    method: 'DELETE',
    done: `Key ${p.id}/${c.id} deleted.`,
    after: () => $maybe(`provider-h-${p.id}`)?.focus(),
  });
}

// ---------------------------------------------------------------------------------------------
// Add / edit a provider

/**
 * The provider the dialog edits (null: a new one) and the preset picked for a new one.
 * @type {{ editing: Provider | null, preset: Preset | null }}
 */
const dialogState = { editing: null, preset: null };

async function loadPresets() {
  if (state.presets.length) return;
  try {
    state.presets = /** @type {Preset[] | null} */ (await apiOptional('GET', '/api/presets')) || [];
  } catch (e) {
    showMsg($('provider-form-msg'), `Could not load the presets (${errorText(e)}); fill in the fields by hand.`);
  }
}

/**
 * `base`, or `base-2`, `base-3`, … when a provider has it already.
 * @param {string} base
 */
function freeId(base) {
  if (!state.providers.some((p) => p.id === base)) return base;
  for (let n = 2; ; n += 1) {
    if (!state.providers.some((p) => p.id === `${base}-${n}`)) return `${base}-${n}`;
  }
}

/**
 * The note under the key field: where the key goes, and where to get one.
 * @param {Preset | null} preset
 * @param {Provider | null} editing
 */
function keyNote(preset, editing) {
  const readOnly = state.status?.secrets?.writable === false;
  const parts = [];
  if (editing?.has_api_key) parts.push(`Leave empty to keep the current key (${editing.key_hint || 'set'}). `);
  parts.push(readOnly
    ? `This gateway cannot store keys (no writable keychain): write env:NAME to read the key from its environment (${ENV_NAMES}).`
    : `Stored in the OS keychain; only a hint is shown again. Or write env:NAME to read it from the gateway's environment (${ENV_NAMES}).`);
  const note = $('pf-key-note');
  note.replaceChildren(...parts);
  if (preset?.key_url) {
    note.append(' Get a key at ', h('a', { href: preset.key_url, target: '_blank', rel: 'noopener noreferrer' }, preset.key_url), '.');
  }
  note.classList.toggle('note-warn', readOnly);
}

/** The variables an env:NAME key may name (the gateway refuses others with a 400 that says so). */
const ENV_NAMES = 'a variable whose name starts with FLEXIPROXY_, or one allowed with --allow-env';

/**
 * The origin (scheme, host, port) of an http(s) URL, or null: a provider's keys belong to it.
 * @param {string} url
 */
function originOf(url) {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

/**
 * The keys of a provider that moving it to another host clears (not subscription logins).
 * @param {Provider | null} p
 */
function clearableKeys(p) {
  return (p?.credentials || []).filter((c) => c.key_source && c.key_source !== 'account');
}

/** Warns, while the URL is edited, that another host means entering the key again. */
function moveNote() {
  const editing = dialogState.editing;
  const note = $('pf-url-note');
  const from = editing ? originOf(editing.url || '') : null;
  const to = originOf($('pf-url', HTMLInputElement).value.trim());
  const keys = clearableKeys(editing);
  const moving = !!(from && to && from !== to && keys.length);
  note.hidden = !moving;
  note.textContent = moving
    ? `${to} is another host than ${from}. Saving clears this provider's ${keys.length === 1 ? 'key' : `${keys.length} keys`} (${keys.map((c) => c.id).join(', ')}): a key is only sent to the host it was given for. Enter the key for the new host below.`
    : '';
}

/** @param {Preset} preset */
function applyPreset(preset) {
  dialogState.preset = preset;
  $('pf-id', HTMLInputElement).value = freeId(preset.id);
  $('pf-url', HTMLInputElement).value = preset.url || '';
  $('pf-protocol', HTMLSelectElement).value = preset.protocol || 'openai_chat';
  $('pf-key-label').textContent = preset.needs_key ? 'API key' : 'API key (not needed)';
  $('pf-key', HTMLInputElement).placeholder = preset.needs_key ? 'paste the key' : 'leave empty';
  const note = $('pf-preset-note');
  note.textContent = preset.note || '';
  note.hidden = !preset.note;
  keyNote(preset, null);
  showMsg($('provider-form-msg'), '');
}

function renderPresetGrid() {
  const grid = $('preset-grid');
  grid.replaceChildren(...state.presets.map((preset, i) => {
    const input = h('input', { type: 'radio', name: 'preset', value: preset.id, id: `preset-${preset.id}` });
    input.addEventListener('change', () => {
      if (input.checked) applyPreset(preset);
    });
    if (i === 0) input.required = false;
    return h('label', { class: 'preset', for: `preset-${preset.id}` }, input,
      h('span', { class: 'preset-name' }, preset.name),
      h('span', { class: 'preset-url' }, preset.url ? preset.url.replace(/^https?:\/\//, '') : 'any compatible server'));
  }));
}

/**
 * Opens the Add provider dialog, or with `editing` the dialog that edits it.
 * @param {Provider | null} editing
 */
export async function openProviderDialog(editing) {
  dialogState.editing = editing;
  dialogState.preset = null;
  const dlg = $('provider-dialog', HTMLDialogElement);
  $('provider-form', HTMLFormElement).reset();
  showMsg($('provider-form-msg'), '');
  $('pf-preset-note').hidden = true;
  $('provider-dialog-h').textContent = editing ? `Edit provider ${editing.id}` : 'Add a provider';
  $('pf-submit', HTMLButtonElement).textContent = editing ? 'Save provider' : 'Add provider';
  $('preset-fieldset').hidden = !!editing;
  $('pf-id', HTMLInputElement).readOnly = !!editing;
  $('pf-key-label').textContent = editing ? 'Replace the API key' : 'API key';
  $('pf-key', HTMLInputElement).placeholder = editing?.has_api_key ? 'leave empty to keep it' : 'paste the key';
  keyNote(null, editing);
  if (editing) {
    $('pf-id', HTMLInputElement).value = editing.id;
    $('pf-url', HTMLInputElement).value = editing.url || '';
    $('pf-protocol', HTMLSelectElement).value = editing.protocol || 'openai_chat';
  } else {
    $('pf-protocol', HTMLSelectElement).value = 'openai_chat';
  }
  moveNote();
  dlg.showModal();
  if (editing) {
    $('pf-url', HTMLInputElement).focus();
  } else {
    const grid = $('preset-grid');
    if (!state.presets.length) grid.replaceChildren(spinnerText('Loading presets…'));
    await loadPresets();
    renderPresetGrid();
    grid.querySelector('input')?.focus();
  }
}

/** @param {SubmitEvent} ev */
async function submitProvider(ev) {
  ev.preventDefault();
  const msg = $('provider-form-msg');
  const editing = dialogState.editing;
  const id = $('pf-id', HTMLInputElement).value.trim();
  const url = $('pf-url', HTMLInputElement).value.trim();
  if (!ID_RE.test(id)) {
    showMsg(msg, 'The ID must be 1–64 letters, digits, dots, underscores or dashes.');
    $('pf-id', HTMLInputElement).focus();
    return;
  }
  if (!editing && state.providers.some((p) => p.id === id)) {
    showMsg(msg, `A provider ${id} exists already. Choose another ID, or close this and press Edit on it.`);
    $('pf-id', HTMLInputElement).focus();
    return;
  }
  if (!/^https?:\/\/[^/]+/.test(url)) {
    showMsg(msg, 'The base URL must start with http:// or https://, e.g. https://api.openai.com/v1.');
    $('pf-url', HTMLInputElement).focus();
    return;
  }
  /** @type {{ url: string, protocol: string, api_key?: string }} */
  const body = { url, protocol: $('pf-protocol', HTMLSelectElement).value };
  const key = $('pf-key', HTMLInputElement).value.trim();
  if (key) body.api_key = key;
  showMsg(msg, '');
  await withBusy($('pf-submit', HTMLButtonElement), editing ? 'Saving…' : 'Adding…', async () => {
    try {
      const saved = /** @type {Provider | null} */ (await api('POST', `/api/providers/${enc(id)}`, body));
      $('pf-key', HTMLInputElement).value = '';
      $('provider-dialog', HTMLDialogElement).close();
      if (saved?.id) putProvider(saved);
      if (saved?.keys_cleared?.length) {
        // The URL moved to another host: say which keys went, and that the new host needs its own.
        showMsg($('providers-msg'), `Provider ${id} saved. ${saved.notice || `Its keys were cleared (${saved.keys_cleared.join(', ')}): enter the key for the new host.`}`, 'warn');
      } else {
        showMsg($('providers-msg'), `Provider ${id} ${editing ? 'saved' : 'added'}.`, 'ok');
      }
      loadStatus().catch(() => {});
      $maybe(`provider-h-${id}`)?.focus();
      // Show what it serves right away (the gateway also reads it in the background).
      discover(id);
    } catch (e) {
      showMsg(msg, `Could not save provider ${id}: ${errorText(e)}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Add / edit a key

/** The provider whose key the dialog adds or (`credential`) edits. @type {{ provider: Provider | null, credential: Credential | null }} */
const credState = { provider: null, credential: null };

/**
 * @param {Provider} p
 * @param {Credential | null} c null: a new key
 */
function openCredentialDialog(p, c) {
  credState.provider = p;
  credState.credential = c;
  $('credential-form', HTMLFormElement).reset();
  showMsg($('credential-form-msg'), '');
  $('credential-dialog-h').textContent = c ? `Edit key ${p.id}/${c.id}` : `Add a key to ${p.id}`;
  $('cf-submit', HTMLButtonElement).textContent = c ? 'Save key' : 'Add key';
  $('cf-key-label').textContent = c ? 'Replace the secret' : 'API key';
  $('cf-key', HTMLInputElement).placeholder = c?.key_hint ? `leave empty to keep ${c.key_hint}` : 'paste the key';
  $('cf-label', HTMLInputElement).value = c?.label || '';
  $('cf-rpm', HTMLInputElement).value = String(c?.limits?.max_request_min ?? '');
  $('cf-rpd', HTMLInputElement).value = String(c?.limits?.max_request_day ?? '');
  $('cf-tpm', HTMLInputElement).value = String(c?.limits?.max_token_min ?? '');
  $('cf-priority', HTMLSelectElement).value = String(Math.min(3, c?.priority ?? 0));
  $('credential-dialog', HTMLDialogElement).showModal();
  (c ? $('cf-label', HTMLInputElement) : $('cf-key', HTMLInputElement)).focus();
}

/**
 * A limit field's number; empty is none (null when editing: remove the limit).
 * @param {string} id
 * @param {boolean} editing
 */
function limitValue(id, editing) {
  const raw = $(id, HTMLInputElement).value.trim();
  if (raw === '') return editing ? null : undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error('Limits are whole numbers of at least 1 (or empty for none).');
  return n;
}

/** @param {SubmitEvent} ev */
async function submitCredential(ev) {
  ev.preventDefault();
  const p = credState.provider;
  const c = credState.credential;
  if (!p) return;
  const msg = $('credential-form-msg');
  /** @type {{ label?: string, priority: number, max_request_min?: number | null, max_request_day?: number | null, max_token_min?: number | null, api_key?: string }} */
  let body;
  try {
    body = {
      label: $('cf-label', HTMLInputElement).value.trim() || undefined,
      priority: Number($('cf-priority', HTMLSelectElement).value),
      max_request_min: limitValue('cf-rpm', !!c),
      max_request_day: limitValue('cf-rpd', !!c),
      max_token_min: limitValue('cf-tpm', !!c),
    };
  } catch (e) {
    showMsg(msg, errorText(e));
    return;
  }
  const key = $('cf-key', HTMLInputElement).value.trim();
  if (key) body.api_key = key;
  else if (!c && !confirmKeyless()) return;
  await withBusy($('cf-submit', HTMLButtonElement), c ? 'Saving…' : 'Adding…', async () => {
    try {
      if (c) await api('PATCH', `/api/providers/${enc(p.id)}/credentials/${enc(c.id)}`, body);
      else await api('POST', `/api/providers/${enc(p.id)}/credentials`, body);
      $('cf-key', HTMLInputElement).value = '';
      $('credential-dialog', HTMLDialogElement).close();
      showMsg($('providers-msg'), c ? `Key ${p.id}/${c.id} saved.` : `Key added to ${p.id}.`, 'ok');
      await reloadOne(p.id);
      $maybe(`provider-h-${p.id}`)?.focus();
    } catch (e) {
      showMsg(msg, `Could not save the key: ${errorText(e)}`);
    }
  });
}

function confirmKeyless() {
  showMsg($('credential-form-msg'), 'Paste the key the provider gave you (or env:NAME).');
  $('cf-key', HTMLInputElement).focus();
  return false;
}

// ---------------------------------------------------------------------------------------------

export function clear() {
  ui.clear();
  state.presets = [];
  $('provider-list').replaceChildren(h('p', { class: 'card empty-card' }, 'Loading…'));
  showMsg($('providers-msg'), '');
}

export function init() {
  $('pf-protocol', HTMLSelectElement).replaceChildren(...PROTOCOLS.map(([v, label]) => h('option', { value: v }, label)));
  $('add-provider').addEventListener('click', () => openProviderDialog(null));
  $('provider-form', HTMLFormElement).addEventListener('submit', submitProvider);
  $('pf-url', HTMLInputElement).addEventListener('input', moveNote);
  $('pf-cancel').addEventListener('click', () => $('provider-dialog', HTMLDialogElement).close());
  $('credential-form', HTMLFormElement).addEventListener('submit', submitCredential);
  $('cf-cancel').addEventListener('click', () => $('credential-dialog', HTMLDialogElement).close());
  on('providers', renderProviders);
}
