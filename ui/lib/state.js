// What the pages share: the gateway's status, providers, adapters and settings as last loaded,
// and a small change notification so a page re-renders when another one changed something
// (a provider added on the Providers page shows up in the Adapters page's picker).

import { api } from './api.js';

export const state = {
  status: null,
  providers: [],
  adapters: [],
  settings: null,
  presets: [],
};

const listeners = new Map();

/** Calls fn(value) whenever `key` of the state is reloaded. */
export function on(key, fn) {
  if (!listeners.has(key)) listeners.set(key, new Set());
  listeners.get(key).add(fn);
}

function set(key, value) {
  state[key] = value;
  for (const fn of listeners.get(key) || []) {
    try {
      fn(value);
    } catch (e) {
      console.error(`render of ${key} failed`, e);
    }
  }
}

export function reset() {
  for (const key of ['status', 'settings']) set(key, null);
  for (const key of ['providers', 'adapters']) set(key, []);
}

export async function loadStatus() {
  set('status', await api('GET', '/api/status'));
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
  set('settings', await api('GET', '/api/settings'));
}

/** Replaces one provider in the list (after a save) without refetching them all. */
export function putProvider(view) {
  const list = state.providers.filter((p) => p.id !== view.id);
  const i = state.providers.findIndex((p) => p.id === view.id);
  list.splice(i < 0 ? list.length : i, 0, view);
  set('providers', list);
}

export function setSettings(value) {
  set('settings', value);
}
