// @ts-check
// Live updates: the gateway's server-sent event stream (`GET /api/events`) announces each
// request's usage record once it is written, and says when the subscription accounts changed
// (`accounts`: a login, a log-out, a refresh). The dashboard counts a record at once and
// refetches its summaries once per burst; the Accounts page refetches its list. Nothing runs on a timer while no requests happen, so an idle window
// costs the database nothing. The stream needs the token in a header, so it is read with
// fetch() rather than EventSource.

import { auth } from './api.js';

/**
 * What the pages do with the stream's events. `connected` fires on every (re)connection:
 * whatever happened while away is in the summaries. `state` gets `Live`, `Reconnecting in …`,
 * or an empty text once stopped.
 * @typedef {object} Handlers
 * @property {(record: import('./dashboard.js').UsageRecord | null) => void} usage a record (null: unreadable)
 * @property {() => void} lagged some records were missed
 * @property {() => void} connected
 * @property {() => void} [accounts] the subscription accounts changed
 * @property {(text: string) => void} state
 */

/** @type {{ active: boolean, controller: AbortController | null, retry: number, handlers: Handlers | null }} */
const live = { active: false, controller: null, retry: 0, handlers: null };

/**
 * Follows the stream until stop().
 * @param {Handlers} handlers
 */
export function start(handlers) {
  if (live.active) return;
  live.active = true;
  live.handlers = handlers;
  follow();
}

export function stop() {
  live.active = false;
  live.controller?.abort();
  live.handlers?.state('');
}

/**
 * Hands one event (the lines of an SSE block) to its handler.
 * @param {string} block
 */
function dispatch(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (event === 'usage') {
    let record = null;
    try {
      record = JSON.parse(data.join('\n'));
    } catch {
      record = null;
    }
    live.handlers?.usage(record);
  } else if (event === 'lagged') {
    live.handlers?.lagged();
  } else if (event === 'accounts') {
    live.handlers?.accounts?.();
  }
}

async function follow() {
  while (live.active) {
    const controller = new AbortController();
    live.controller = controller;
    try {
      const res = await fetch('/api/events', {
        headers: { Authorization: `Bearer ${auth.token}`, Accept: 'text/event-stream' },
        cache: 'no-store',
        signal: controller.signal,
      });
      if (res.status === 401) {
        auth.onUnauthorized('The gateway did not accept the management token.');
        return;
      }
      if (!res.ok || !res.body) throw new Error(`${res.status} ${res.statusText}`);
      live.retry = 0;
      live.handlers?.state('Live');
      live.handlers?.connected();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatch(block);
        }
      }
    } catch (e) {
      if (!live.active) return;
      console.debug('event stream dropped', e);
    }
    if (!live.active) return;
    live.retry = Math.min(live.retry + 1, 6);
    const pause = 500 * 2 ** live.retry;
    live.handlers?.state(`Reconnecting in ${Math.round(pause / 1000)} s…`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}
