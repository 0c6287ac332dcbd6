// @ts-check
// What the pages share: the gateway's status, providers, adapters and settings as last loaded,
// and a small change notification so a page re-renders when another one changed something
// (a provider added on the Providers page shows up in the Adapters page's picker).

import { api } from './api.js';

// ---------------------------------------------------------------------------------------------
// What the management API answers (server/management.rs), as these pages read it

/** Where an entry comes from: `config` ones are read-only here. @typedef {'database' | 'config'} Source */

/**
 * `GET /api/status`.
 * @typedef {object} Status
 * @property {string} version
 * @property {string} base_url the address tools use, e.g. http://127.0.0.1:8317
 * @property {string} listen the socket address the gateway listens on
 * @property {string} data_dir
 * @property {SecretsStatus} secrets
 * @property {boolean} usage_enabled
 * @property {ConfigStatus | null} config the config file, when one is in use
 * @property {number} providers
 * @property {number} adapters
 * @property {boolean} welcome whether the desktop app's first-run welcome is still to be shown
 */

/**
 * Which secret store is in use (lifecycle.rs).
 * @typedef {object} SecretsStatus
 * @property {string} kind e.g. `OS keychain`
 * @property {boolean} writable
 * @property {string | null} warning what to do when secrets cannot be stored
 * @property {'unavailable' | 'locked' | 'failed' | null} keychain_problem
 */

/**
 * The config file's state (state.rs).
 * @typedef {object} ConfigStatus
 * @property {string} path
 * @property {number} loaded_at_ms
 * @property {string | null} error why the last edit was rejected
 * @property {string[]} warnings
 */

/**
 * `GET /api/providers` (each), `GET`/`POST /api/providers/{id}`.
 * @typedef {object} Provider
 * @property {string} id
 * @property {string} url
 * @property {string} protocol one of dom.js's PROTOCOLS
 * @property {string} discovery `off` when its models are not read
 * @property {string[]} models declared and discovered
 * @property {string[]} declared_models
 * @property {number | null} discovered_at_ms
 * @property {string | null} discovery_error
 * @property {{ id: string, models: string[] }[]} peers OCF only
 * @property {Credential[]} credentials
 * @property {boolean} has_api_key whether credential `default` has a key
 * @property {string | null} key_source of credential `default`: `keychain`, `env:NAME`, or null
 * @property {string | null} key_hint
 * @property {string | null} key_error
 * @property {Source} source
 * @property {number} created_at
 * @property {number} updated_at
 * @property {string[]} [keys_cleared] only after a save that moved it to another host
 * @property {string} [notice] what the user should know about that save
 */

/**
 * One key of a provider's pool.
 * @typedef {object} Credential
 * @property {string} id
 * @property {string} key_id `<provider>/<id>`
 * @property {string} provider_id
 * @property {string} label
 * @property {boolean} enabled
 * @property {number} priority
 * @property {string | null} key_hint
 * @property {string | null} key_source `keychain`, `env:NAME`, `account`, or null for keyless
 * @property {Limits} limits
 * @property {Health} health
 * @property {Windows} windows what the limits count now
 * @property {Source} source
 */

/**
 * A key's limits; absent is unlimited (routing/policy.rs).
 * @typedef {{ max_request_min?: number, max_request_day?: number, max_token_min?: number }} Limits
 */

/**
 * How a key is doing (routing/mod.rs).
 * @typedef {object} Health
 * @property {'ready' | 'cooling_down' | 'auth_failed' | 'at_limit' | 'disabled' | 'key_unavailable'} state
 * @property {number | null} available_at_ms when a held key comes back by itself
 * @property {string | null} reason
 */

/** The current counts of a key's limit windows. @typedef {{ req_min: number, req_day: number, tok_min: number }} Windows */

/**
 * `GET /api/presets` (presets.rs).
 * @typedef {object} Preset
 * @property {string} id suggested provider id
 * @property {string} name
 * @property {string} url empty for `custom`
 * @property {string} protocol
 * @property {boolean} needs_key
 * @property {string | null} key_url where the user creates a key
 * @property {string | null} example_model
 * @property {string | null} note
 */

/**
 * `GET /api/adapters` (each).
 * @typedef {object} Adapter
 * @property {number} create_time its id
 * @property {string | null} name
 * @property {string | null} provider_id null: the model picks the provider
 * @property {string | null} model_id null: the tool's model
 * @property {string | null} base_url
 * @property {'round-robin' | 'fill-first' | 'least-used' | null} strategy
 * @property {string} key_hint
 * @property {Source} source
 */

/**
 * `GET`/`PUT /api/settings`.
 * @typedef {object} Settings
 * @property {boolean} usage_enabled
 * @property {Record<string, unknown>} routing
 * @property {boolean} routing_from_config
 * @property {ListenStatus} listen
 * @property {string} data_dir
 * @property {string} database the SQLite file
 * @property {string[]} warnings e.g. an exposed listen address
 */

/**
 * Where the gateway listens now and after a restart (config.rs).
 * @typedef {object} ListenStatus
 * @property {string} bind
 * @property {number} port
 * @property {string | null} saved_bind
 * @property {number | null} saved_port
 * @property {boolean} from_command_line the address was given at start, so the saved one waits
 * @property {boolean} restart_required
 */

// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} State
 * @property {Status | null} status
 * @property {Provider[]} providers
 * @property {Adapter[]} adapters
 * @property {Settings | null} settings
 * @property {Preset[]} presets read when the Add provider dialog first needs them
 */

/** @type {State} */
export const state = {
  status: null,
  providers: [],
  adapters: [],
  settings: null,
  presets: [],
};

/** Per key, the listeners of on(); each takes that key's value. @type {Map<keyof State, Set<(value: never) => void>>} */
const listeners = new Map();

/**
 * Calls fn(value) whenever `key` of the state is reloaded.
 * @template {keyof State} K
 * @param {K} key
 * @param {(value: State[K]) => void} fn
 */
export function on(key, fn) {
  let fns = listeners.get(key);
  if (!fns) {
    fns = new Set();
    listeners.set(key, fns);
  }
  fns.add(fn);
}

/**
 * Stores `value` as `key` and tells the listeners; one failing does not stop the others.
 * @template {keyof State} K
 * @param {K} key
 * @param {State[K]} value
 */
function set(key, value) {
  state[key] = value;
  for (const fn of listeners.get(key) || []) {
    try {
      /** @type {(value: State[K]) => void} */ (fn)(value);
    } catch (e) {
      console.error(`render of ${key} failed`, e);
    }
  }
}

export function reset() {
  set('status', null);
  set('settings', null);
  set('providers', []);
  set('adapters', []);
}

export async function loadStatus() {
  set('status', /** @type {Status} */ (await api('GET', '/api/status')));
}

export async function loadProviders() {
  const list = await api('GET', '/api/providers');
  set('providers', Array.isArray(list) ? list : []);
}

export async function loadAdapters() {
  const list = await api('GET', '/api/adapters');
  set('adapters', Array.isArray(list) ? list : []);
}

export async function loadSettings() {
  set('settings', /** @type {Settings} */ (await api('GET', '/api/settings')));
}

/**
 * Replaces one provider in the list (after a save) without refetching them all.
 * @param {Provider} view
 */
export function putProvider(view) {
  const list = state.providers.filter((p) => p.id !== view.id);
  const i = state.providers.findIndex((p) => p.id === view.id);
  list.splice(i < 0 ? list.length : i, 0, view);
  set('providers', list);
}

/** @param {Settings | null} value */
export function setSettings(value) {
  set('settings', value);
}
