// @ts-check
// The Adapters page: create an adapter from a provider and model (or one that routes by the
// tool's model), then set up tools with it. Right after creating, the dialog shows the key once
// and every tool's settings with the key filled in, with "Write to <config file>" for the tools
// whose config FlexiProxy can edit (and Undo). Later the same settings are reachable from the
// list, with the key as a placeholder.

import { api, apiOptional, errorText } from './api.js';
import { runAction } from './actions.js';
import {
  $, $maybe, h, td, emptyRow, showMsg, withBusy, spinnerText, copyButton, snippet, fmtDate, fmtWhen,
  selectTab, tabKeys,
} from './dom.js';
import { state, on, loadAdapters, loadStatus } from './state.js';

/** @typedef {import('./state.js').Adapter} Adapter */

/** `POST /api/adapters`: the adapter, with its key this once. @typedef {Adapter & { api_key: string }} CreatedAdapter */

/**
 * `GET /api/routes` (each): a model name the gateway routes (an alias or an `auto` model).
 * @typedef {object} Route
 * @property {string} name
 * @property {string | null} strategy
 * @property {boolean} auto
 * @property {{ provider: string, model: string, priority: number }[]} candidates
 * @property {import('./state.js').Source} source
 */

/**
 * `GET /api/tools?adapter=` (each, server/tool_views.rs), or a built-in one (fallbackTools),
 * which has no config file and no status.
 * @typedef {object} Tool
 * @property {string} id
 * @property {string} name
 * @property {string} [protocol]
 * @property {boolean} writable whether FlexiProxy can write its config file
 * @property {string | null} [config_path]
 * @property {{ language: string, text: string }} snippet its settings, the key as `{{KEY}}`
 * @property {ToolStatus} [status]
 */

/**
 * Whether a tool's files point at this gateway (tool_setup/mod.rs).
 * @typedef {object} ToolStatus
 * @property {boolean} applied FlexiProxy wrote its settings and they were not undone
 * @property {boolean} points_here
 * @property {string | null} points_elsewhere the address they point at when it is another one
 * @property {number | null} applied_at_ms
 * @property {boolean} can_undo
 * @property {number} undo_steps
 */

/**
 * `POST /api/tools/{tool}/apply`.
 * @typedef {object} Applied
 * @property {string} tool
 * @property {string | null} path the first file written
 * @property {string | null} backup_path
 * @property {string[]} changed the settings whose value changed
 * @property {{ path: string, backup_path: string | null, changed: string[], created: boolean, private: boolean }[]} files
 */

/**
 * `POST /api/tools/{tool}/undo`.
 * @typedef {object} Undone
 * @property {string} tool
 * @property {string | null} path
 * @property {string[]} paths
 * @property {number} remaining earlier set-ups still on record
 */

/**
 * What the last Write or Undo of a tool did, under its panel.
 * @typedef {{ busy: string } | { error: string } | { undone: Partial<Undone> } | { applied: Applied }} ToolResult
 */

const ROUTING = '';
const KEY_PLACEHOLDER = '<adapter key>';

function gatewayBase() {
  return (state.status?.base_url || window.location.origin).replace(/\/+$/, '');
}

/**
 * What the adapter serves, for people: `name (provider · model)`.
 * @param {Adapter} a
 */
export function adapterLabel(a) {
  const target = `${a.provider_id ?? 'any provider'} · ${a.model_id ?? "the tool's model"}`;
  return a.name ? `${a.name} (${target})` : target;
}

// ---------------------------------------------------------------------------------------------
// Create form

/** Route names (aliases and auto models), read once when "any provider" is first chosen. @type {string[] | null} */
let routeNames = null;

async function loadRouteNames() {
  if (routeNames) return;
  try {
    const routes = /** @type {Route[] | null} */ (await api('GET', '/api/routes'));
    routeNames = Array.isArray(routes) ? routes.map((r) => r.name) : [];
  } catch {
    // Suggestions only: without them the field still takes any model name.
    routeNames = [];
  }
  syncForm();
}

/**
 * The model names to suggest for a provider (or, for ROUTING, every name a request can use).
 * @param {string} id
 * @returns {string[]}
 */
function providerModels(id) {
  if (id === ROUTING) {
    if (!routeNames) loadRouteNames();
    return [...new Set([
      ...(routeNames || []),
      ...state.providers.flatMap((p) => (p.models || []).map((m) => `${p.id}/${m}`)),
    ])];
  }
  return state.providers.find((p) => p.id === id)?.models || [];
}

function syncForm() {
  const providerId = $('af-provider', HTMLSelectElement).value;
  const model = $('af-model', HTMLInputElement).value.trim();
  $('af-models').replaceChildren(...providerModels(providerId).map((m) => h('option', { value: m })));
  const p = state.providers.find((x) => x.id === providerId);
  $('af-model', HTMLInputElement).placeholder = providerId === ROUTING
    ? "empty: the model the tool sends"
    : (p?.models?.[0] ? `e.g. ${p.models[0]}` : 'e.g. gpt-4o-mini');
  let note;
  if (providerId === ROUTING) {
    note = model
      ? `Every request asks for ${model}, served by whichever provider has it (a route name, provider/model, or a model a provider lists).`
      : 'Routes by the model the tool sends: provider/model, a route name, or any model a provider lists.';
  } else {
    note = model
      ? `Every request goes to ${providerId} as ${model}, whatever model the tool names.`
      : `The model the tool sends goes to ${providerId} unchanged. Type or pick a model to pin one.`;
  }
  $('af-model-note').textContent = note;
}

function renderProviderSelect() {
  const sel = $('af-provider', HTMLSelectElement);
  const prev = sel.value;
  sel.replaceChildren(
    ...state.providers.map((p) => h('option', { value: p.id }, `${p.id}${p.models?.length ? ` (${p.models.length} models)` : ''}`)),
    h('option', { value: ROUTING }, 'Any provider (route by model)'),
  );
  if ([...sel.options].some((o) => o.value === prev) && prev !== ROUTING) sel.value = prev;
  else sel.value = state.providers[0]?.id ?? ROUTING;
  syncForm();
}

/** @param {SubmitEvent} ev */
async function submitAdapter(ev) {
  ev.preventDefault();
  const msg = $('adapter-form-msg');
  const providerId = $('af-provider', HTMLSelectElement).value;
  const model = $('af-model', HTMLInputElement).value.trim();
  const name = $('af-name', HTMLInputElement).value.trim();
  if (providerId === ROUTING && state.providers.length === 0) {
    showMsg(msg, 'Add a provider first (Providers page): an adapter needs somewhere to send requests.');
    return;
  }
  /** @type {{ provider_id?: string, model_id?: string, name?: string }} */
  const body = {};
  if (providerId) body.provider_id = providerId;
  if (model) body.model_id = model;
  if (name) body.name = name;
  showMsg(msg, '');
  await withBusy($('af-submit', HTMLButtonElement), 'Creating…', async () => {
    try {
      const created = /** @type {CreatedAdapter | null} */ (await api('POST', '/api/adapters', body));
      if (!created?.api_key) throw new Error('The gateway did not return the new key; delete this adapter and try again.');
      $('af-model', HTMLInputElement).value = '';
      $('af-name', HTMLInputElement).value = '';
      syncForm();
      showMsg(msg, `Adapter ${adapterLabel(created)} created.`, 'ok');
      loadAdapters().catch(() => {});
      loadStatus().catch(() => {});
      openToolsDialog(created, created.api_key);
    } catch (e) {
      showMsg(msg, `Could not create the adapter: ${errorText(e)}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// List

export function renderAdapters() {
  const body = $('adapters-body');
  if (state.adapters.length === 0) {
    body.replaceChildren(emptyRow(6, 'No adapters yet. Create one above to get a key for your tools.'));
    return;
  }
  const sorted = [...state.adapters].sort((a, b) => (b.create_time ?? 0) - (a.create_time ?? 0));
  body.replaceChildren(...sorted.map((a) => {
    const label = adapterLabel(a);
    const actions = [
      h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Tool settings for ${label}`, onclick: () => openToolsDialog(a, null) }, 'Tool settings'),
    ];
    if (a.source !== 'config') {
      const del = h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', 'aria-label': `Delete adapter ${label}` }, 'Delete');
      del.addEventListener('click', () => deleteAdapter(a, del));
      actions.push(del);
    }
    return h('tr', { dataset: { adapter: String(a.create_time) } },
      td('Adapter', [a.name ? h('strong', {}, a.name) : h('span', { class: 'muted' }, 'unnamed'),
        a.source === 'config' ? h('span', { class: 'tag' }, 'config file') : null]),
      td('Provider', a.provider_id ? String(a.provider_id) : h('span', { class: 'muted' }, 'any (routing)')),
      td('Model', a.model_id ? h('span', { class: 'mono' }, a.model_id) : h('span', { class: 'muted' }, "the tool's model"), 'break'),
      td('Key', a.key_hint ? h('code', {}, String(a.key_hint)) : '—'),
      td('Created', fmtDate(a.create_time), 'nowrap'),
      td('', h('div', { class: 'row-actions' }, actions), 'actions'),
    );
  }));
}

/**
 * @param {Adapter} a
 * @param {HTMLButtonElement} btn
 */
function deleteAdapter(a, btn) {
  return runAction(btn, {
    ask: {
      title: 'Delete this adapter?',
      text: `Tools using the key ${a.key_hint || ''} (${adapterLabel(a)}) will get 401 errors. This cannot be undone.`,
      ok: 'Delete adapter',
      danger: true,
    },
    busy: 'Deleting…',
    call: () => api('DELETE', '/api/adapters', { create_time: a.create_time }),
    msg: $('adapters-msg'),
    done: 'Adapter deleted.',
    failed: 'Could not delete the adapter',
    reload: () => Promise.allSettled([loadAdapters(), loadStatus()]),
    after: () => {
      const heading = $('adapter-list-h');
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Tool settings dialog

/**
 * The tool settings dialog: its adapter, the key when just created (else null: only its hash is
 * kept), the tools, the one shown, and what each one's last Write or Undo did.
 * @type {{ adapter: Adapter | null, key: string | null, list: Tool[], selected: string | null, results: Map<string, ToolResult> }}
 */
const tools = { adapter: null, key: null, list: [], selected: null, results: new Map() };

/**
 * Built-in settings for a gateway without /api/tools: the protocols' environment variables.
 * @param {Adapter} a
 * @returns {Tool[]}
 */
function fallbackTools(a) {
  const base = gatewayBase();
  const model = a.model_id || 'any-model';
  return [
    { id: 'openai-sdk', name: 'OpenAI SDKs and tools', writable: false, snippet: { language: 'sh', text: `export OPENAI_BASE_URL=${base}/v1\nexport OPENAI_API_KEY={{KEY}}\n` } },
    { id: 'claude-code', name: 'Claude Code / Anthropic SDKs', writable: false, snippet: { language: 'sh', text: `export ANTHROPIC_BASE_URL=${base}\nexport ANTHROPIC_AUTH_TOKEN={{KEY}}\n` } },
    { id: 'gemini-cli', name: 'Gemini CLI', writable: false, snippet: { language: 'sh', text: `export GOOGLE_GEMINI_BASE_URL=${base}\nexport GEMINI_API_KEY={{KEY}}\n` } },
    { id: 'curl', name: 'curl', writable: false, snippet: { language: 'sh', text: `curl ${base}/v1/chat/completions \\\n  -H "Authorization: Bearer {{KEY}}" \\\n  -H "Content-Type: application/json" \\\n  -d '{"model":"${model}","messages":[{"role":"user","content":"Hello"}]}'\n` } },
  ];
}

/** @param {string | undefined} text */
function withKey(text) {
  return String(text ?? '').replaceAll('{{KEY}}', tools.key || KEY_PLACEHOLDER);
}

/** @param {Tool} t */
function statusLine(t) {
  /** @type {Partial<ToolStatus>} */
  const s = t.status || {};
  if (!t.writable) return h('p', { class: 'small muted' }, 'Copy these settings into the tool; FlexiProxy does not edit its configuration.');
  if (s.applied && s.points_here) {
    return h('p', { class: 'small ok-text' }, `✓ Set up${s.applied_at_ms ? ` on ${fmtWhen(s.applied_at_ms)}` : ''}: ${t.config_path} points at this gateway.`);
  }
  if (s.points_elsewhere) {
    return h('p', { class: 'small warn-text' }, `${t.config_path} points at ${s.points_elsewhere} now; writing replaces that (a backup is kept).`);
  }
  return h('p', { class: 'small muted' }, `Not set up yet. Writing changes only FlexiProxy's keys in ${t.config_path}, keeps a backup, and makes the file readable by you alone (0600), since it will hold the adapter key.`);
}

/** @param {Tool} t */
function resultLine(t) {
  const r = tools.results.get(t.id);
  if (!r) return null;
  if ('busy' in r) return spinnerText(r.busy);
  if ('error' in r) return h('p', { class: 'msg' }, r.error);
  if ('undone' in r) {
    const more = r.undone.remaining || 0;
    return h('p', { class: 'msg', dataset: { kind: 'ok' } },
      `Restored ${r.undone.path || t.config_path} as it was before the last set-up.`,
      more ? ` That is the earlier set-up's state; Undo again to take that one back too (${more} more).` : '');
  }
  const a = r.applied;
  const files = Array.isArray(a.files) ? a.files : [];
  const privateFiles = files.filter((f) => f.private).map((f) => f.path);
  return h('p', { class: 'msg', dataset: { kind: 'ok' } },
    `Written to ${a.path}.`,
    a.backup_path ? ` Backup of the previous file: ${a.backup_path}.` : ' (The file did not exist; no backup needed.)',
    Array.isArray(a.changed) && a.changed.length ? ` Changed: ${a.changed.join(', ')}.` : '',
    privateFiles.length ? ` ${privateFiles.join(' and ')} ${privateFiles.length === 1 ? 'holds' : 'hold'} the adapter key, so ${privateFiles.length === 1 ? 'it is' : 'they are'} readable by you alone (0600).` : '');
}

/** @param {Tool} t */
function toolPanel(t) {
  const actions = [];
  if (t.writable && t.config_path) {
    const write = h('button', { type: 'button', class: 'btn btn-primary btn-small', id: `apply-${t.id}` }, `Write to ${t.config_path}`);
    write.addEventListener('click', () => applyTool(t));
    actions.push(write);
    if (t.status?.can_undo) {
      const steps = t.status.undo_steps || 1;
      const undo = h('button', {
        type: 'button', class: 'btn btn-small', id: `undo-${t.id}`,
        title: steps > 1 ? `Takes back the last of ${steps} set-ups; press again for the one before.` : 'Takes back the set-up.',
      }, steps > 1 ? `Undo (${steps} set-ups)` : 'Undo');
      undo.addEventListener('click', () => undoTool(t));
      actions.push(undo);
    }
  }
  return h('div', { class: 'tool-panel' },
    statusLine(t),
    snippet(t.config_path ? `${t.name}: ${t.config_path}` : t.name, withKey(t.snippet?.text), { language: t.snippet?.language }),
    actions.length ? h('div', { class: 'form-actions' }, actions) : null,
    h('div', { role: 'status', 'aria-live': 'polite' }, resultLine(t)),
  );
}

function renderTools(focusTab = false) {
  const box = $maybe('tools-list');
  if (!box) return;
  if (tools.list.length === 0) {
    box.replaceChildren(h('p', { class: 'muted' }, 'No tool settings.'));
    return;
  }
  const selected = tools.list.find((t) => t.id === tools.selected) || tools.list[0];
  tools.selected = selected.id;
  const tabs = tools.list.map((t) => h('button', {
    type: 'button', role: 'tab', id: `tooltab-${t.id}`, 'aria-controls': 'tool-panel', 'aria-selected': String(t === selected),
    tabindex: t === selected ? '0' : '-1', dataset: { tool: t.id },
  }, t.name, t.status?.applied && t.status?.points_here
    ? [h('span', { class: 'dot', title: 'set up', 'aria-hidden': 'true' }), h('span', { class: 'visually-hidden' }, '(set up)')]
    : null));
  const list = h('div', { class: 'tabs tool-tabs', role: 'tablist', 'aria-label': 'Tools' }, tabs);
  /** @param {HTMLElement} tab */
  const choose = (tab) => {
    selectTab(tab);
    tools.selected = tab.dataset.tool ?? null;
    renderTools(true);
  };
  list.addEventListener('click', (ev) => {
    const tab = ev.target instanceof Element ? ev.target.closest('[role="tab"]') : null;
    if (tab instanceof HTMLElement) choose(tab);
  });
  tabKeys(list, choose);
  box.replaceChildren(list, h('div', { id: 'tool-panel', role: 'tabpanel', 'aria-labelledby': `tooltab-${selected.id}` }, toolPanel(selected)));
  if (focusTab) $maybe(`tooltab-${selected.id}`)?.focus();
}

async function loadTools() {
  const a = tools.adapter;
  if (!a) return;
  try {
    const list = /** @type {Tool[] | null} */ (await apiOptional('GET', `/api/tools?adapter=${encodeURIComponent(a.create_time)}`));
    tools.list = Array.isArray(list) ? list : fallbackTools(a);
  } catch (e) {
    tools.list = fallbackTools(a);
    $maybe('tools-list')?.before(h('p', { class: 'msg' }, `Could not load the tool list (${errorText(e)}); showing the basic settings.`));
  }
  renderTools();
}

function currentKey() {
  return tools.key || $maybe('tools-key-input', HTMLInputElement)?.value.trim() || '';
}

/** @param {Tool} t */
async function applyTool(t) {
  const key = currentKey();
  if (!key) {
    tools.results.set(t.id, { error: "Paste the adapter's key above first: writing a config file needs it, and FlexiProxy keeps only its hash." });
    renderTools();
    $maybe('tools-key-input', HTMLInputElement)?.focus();
    return;
  }
  const adapter = tools.adapter;
  if (!adapter) return;
  tools.results.set(t.id, { busy: `Writing ${t.config_path}…` });
  renderTools();
  try {
    const applied = /** @type {Applied} */ (await api('POST', `/api/tools/${encodeURIComponent(t.id)}/apply`, { adapter: adapter.create_time, key }));
    tools.results.set(t.id, { applied });
  } catch (e) {
    tools.results.set(t.id, { error: `Could not write ${t.config_path}: ${errorText(e)}` });
  }
  await refreshTools(t.id);
}

/** @param {Tool} t */
async function undoTool(t) {
  tools.results.set(t.id, { busy: `Restoring ${t.config_path}…` });
  renderTools();
  try {
    const undone = /** @type {Undone | null} */ (await api('POST', `/api/tools/${encodeURIComponent(t.id)}/undo`));
    tools.results.set(t.id, { undone: undone || {} });
  } catch (e) {
    tools.results.set(t.id, { error: `Could not undo: ${errorText(e)}` });
  }
  await refreshTools(t.id);
}

/**
 * Reads the tools' status again after a Write or Undo of tool `id`, and shows it.
 * @param {string} id
 */
async function refreshTools(id) {
  try {
    const adapter = tools.adapter;
    const list = adapter
      ? /** @type {Tool[] | null} */ (await apiOptional('GET', `/api/tools?adapter=${encodeURIComponent(adapter.create_time)}`))
      : null;
    if (Array.isArray(list)) tools.list = list;
  } catch {
    // The result line already says what happened; the status refreshes next time.
  }
  tools.selected = id;
  renderTools();
  const again = $maybe(`apply-${id}`) || $maybe(`tooltab-${id}`);
  again?.focus();
}

/**
 * Opens the tool settings of `adapter`; `key` when it was just created (shown this once).
 * @param {Adapter} adapter
 * @param {string | null} key
 */
export function openToolsDialog(adapter, key) {
  tools.adapter = adapter;
  tools.key = key || null;
  tools.list = [];
  tools.selected = null;
  tools.results = new Map();
  const base = gatewayBase();
  const content = [];
  $('tools-dialog-h').textContent = key ? 'Adapter created' : `Tool settings: ${adapterLabel(adapter)}`;
  if (key) {
    const keyInput = h('input', { class: 'mono key-field', readonly: true, id: 'new-key', 'aria-label': 'Adapter key' });
    keyInput.value = key;
    keyInput.addEventListener('focus', () => keyInput.select());
    content.push(
      h('p', { class: 'banner banner-warn' }, h('strong', {}, 'Copy the key now. '), 'It is stored hashed and is not shown again.'),
      h('div', { class: 'field' },
        h('label', { for: 'new-key' }, 'Adapter key'),
        h('div', { class: 'inline' }, keyInput, copyButton(() => key, 'Copy key', { selectOnFail: () => keyInput.select() }))),
    );
  } else {
    content.push(
      h('p', { class: 'small muted' }, `The key appears as ${KEY_PLACEHOLDER}: put the adapter's key (${adapter.key_hint || 'fp-…'}) there.`),
      // Shown once the tool list says some config file can be written.
      h('div', { class: 'field', id: 'tools-key-field', hidden: true },
        h('label', { for: 'tools-key-input' }, 'Adapter key ', h('span', { class: 'muted' }, '(only to write config files; FlexiProxy keeps just its hash)')),
        h('input', { id: 'tools-key-input', type: 'password', class: 'mono', autocomplete: 'off', spellcheck: 'false', placeholder: adapter.key_hint || 'fp-…' })),
    );
  }
  content.push(
    h('p', { class: 'small' }, 'Provider ', h('strong', {}, adapter.provider_id || 'any (routing)'), ', model ',
      h('strong', {}, adapter.model_id || "the tool's model"), '. Base URL ', h('code', {}, base), '.'),
    h('div', { id: 'tools-list', class: 'tools-list' }, spinnerText('Loading tool settings…')),
  );
  $('tools-dialog-content').replaceChildren(...content);
  const dlg = $('tools-dialog', HTMLDialogElement);
  // Drop the key from the page once the dialog closes, so it is really shown only once.
  dlg.addEventListener('close', () => {
    $('tools-dialog-content').replaceChildren();
    tools.key = null;
  }, { once: true });
  dlg.showModal();
  if (key) $('new-key', HTMLInputElement).focus();
  else $('tools-done').focus();
  loadTools().then(() => {
    const keyField = $maybe('tools-key-field');
    if (keyField) keyField.hidden = !tools.list.some((t) => t.writable);
    if (!key && dlg.open) $maybe(`tooltab-${tools.selected}`)?.focus();
  });
}

// ---------------------------------------------------------------------------------------------

export function clear() {
  routeNames = null;
  $('adapters-body').replaceChildren(emptyRow(6, 'Loading…'));
  showMsg($('adapters-msg'), '');
  showMsg($('adapter-form-msg'), '');
}

export function init() {
  $('adapter-form').addEventListener('submit', submitAdapter);
  $('af-provider', HTMLSelectElement).addEventListener('change', syncForm);
  $('af-model', HTMLInputElement).addEventListener('input', syncForm);
  $('tools-done').addEventListener('click', () => $('tools-dialog', HTMLDialogElement).close());
  on('providers', renderProviderSelect);
  on('adapters', renderAdapters);
}
