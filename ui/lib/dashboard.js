// @ts-check
// The Dashboard page: the desktop app's first-run welcome (until dismissed), today's live tiles,
// the tokens-over-time chart, usage per provider / adapter / model (today or the last 7 days),
// and the last requests with their errors.
//
// Tiles move the moment a usage event arrives (counted from the event itself); the summaries
// (`/api/usage/stats`, `/api/usage/recent`) are then refetched once per burst of events, which
// also corrects the tiles. Requests per minute is counted here from the events of the last 60 s.

import { api, apiOptional, errorText, statusOf } from './api.js';
import { renderChart } from './chart.js';
import {
  $, $maybe, h, td, emptyRow, showMsg, fmtInt, fmtMs, timeCell, fmtWhen, localMidnightMs, selectTab, tabKeys,
  copyButton, withBusy,
} from './dom.js';
import { state, on } from './state.js';

/** @typedef {import('./chart.js').Period} Period */
/** What the breakdown groups by. @typedef {'provider' | 'adapter' | 'model'} By */

/**
 * Requests and tokens since a point in time (usage.rs).
 * @typedef {{ requests: number, input_tokens: number, output_tokens: number, cached_tokens: number, errors: number }} Totals
 */

/**
 * One row of a breakdown: a provider id, an adapter id (`none` without one) or a model name.
 * The older summary (legacyToday) gives no cached tokens, errors or latency.
 * @typedef {object} Group
 * @property {string} key
 * @property {string} [label] adapters: what the adapter serves, for people
 * @property {number} requests
 * @property {number} input_tokens
 * @property {number} output_tokens
 * @property {number} [cached_tokens]
 * @property {number} [errors]
 * @property {number} [avg_latency_ms]
 */

/**
 * What the tiles, the chart and the breakdown show for a period: `GET /api/usage/stats`
 * (which also says its since_ms, until_ms and bucket_ms), or the older summary.
 * @typedef {object} Stats
 * @property {Totals} totals
 * @property {Group[]} by_provider
 * @property {Group[]} by_adapter
 * @property {Group[]} by_model
 * @property {({ start_ms: number } & Totals)[]} series every bucket, empty ones included
 */

/**
 * `GET /api/usage/recent` (each): a recorded request, newest first.
 * @typedef {object} RecentRow
 * @property {number} ts_ms
 * @property {number | null} adapter
 * @property {string} adapter_label
 * @property {string} provider_id
 * @property {string | null} credential `<provider>/<credential>`
 * @property {string} model
 * @property {string} endpoint
 * @property {boolean} stream
 * @property {number} status 0 when no answer came
 * @property {number | null} input_tokens
 * @property {number | null} output_tokens
 * @property {number | null} cached_tokens
 * @property {number} latency_ms
 * @property {number | null} ttfb_ms
 * @property {string} outcome `completed`, `upstream_error`, `failed`, `client_closed`, `interrupted`, `shutdown`
 * @property {string | null} error
 */

/**
 * The `usage` event of `GET /api/events` (live.js): the record as written.
 * @typedef {object} UsageRecord
 * @property {number} ts_ms
 * @property {number | null} adapter
 * @property {string} adapter_label
 * @property {string} provider_id
 * @property {string | null} credential
 * @property {string} model
 * @property {string} endpoint
 * @property {boolean} stream
 * @property {number} status
 * @property {{ input: number | null, output: number | null, cached: number | null, reasoning: number | null }} tokens
 * @property {number} latency_ms
 * @property {number | null} ttfb_ms
 * @property {string} outcome
 * @property {string | null} error
 */

/** The shortest gap between two refetches while requests stream in. */
const REFRESH_GAP_MS = 300;
const RECENT_LIMIT = 20;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const ERROR_OUTCOMES = new Set(['failed', 'upstream_error', 'interrupted']);

/**
 * @type {{
 *   period: Period, by: By, stats: Record<Period, Stats | null>, statsMissing: boolean, recent: RecentRow[],
 *   finished: number[], rpmTimer: ReturnType<typeof setInterval> | undefined,
 *   refreshTimer: ReturnType<typeof setTimeout> | undefined, running: boolean, again: boolean,
 * }}
 */
const view = {
  period: 'today',
  by: 'provider',
  stats: { today: null, week: null },
  statsMissing: false,
  recent: [],
  /** When requests of the last minute finished (ms, this clock). */
  finished: [],
  rpmTimer: undefined,
  refreshTimer: undefined,
  running: false,
  again: false,
};

// ---------------------------------------------------------------------------------------------
// Welcome (first run of the desktop app)

/** @param {import('./state.js').Status | null} s */
function renderWelcome(s) {
  $('welcome-card').hidden = !s?.welcome;
  $('welcome-base-url').textContent = s?.base_url || '';
}

async function dismissWelcome() {
  showMsg($('welcome-msg'), '');
  await withBusy($('welcome-dismiss', HTMLButtonElement), 'Closing…', async () => {
    try {
      await api('POST', '/api/welcome/dismiss');
      $('welcome-card').hidden = true;
      if (state.status) state.status.welcome = false;
      $maybe('dashboard-h')?.focus({ preventScroll: true });
    } catch (e) {
      showMsg($('welcome-msg'), `Could not hide the welcome: ${errorText(e)}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Tiles

/** @param {Totals | null} t */
function setTiles(t) {
  $('u-requests').textContent = fmtInt(t?.requests);
  $('u-input').textContent = fmtInt(t?.input_tokens);
  $('u-output').textContent = fmtInt(t?.output_tokens);
  $('u-cached').textContent = fmtInt(t?.cached_tokens);
  $('u-errors').textContent = fmtInt(t?.errors);
  $('u-errors').closest('.tile')?.classList.toggle('tile-bad', (t?.errors || 0) > 0);
}

function renderRpm() {
  const cutoff = Date.now() - 60_000;
  view.finished = view.finished.filter((t) => t > cutoff);
  $('u-rpm').textContent = fmtInt(view.finished.length);
  // A local clock (no server calls) ages the count while there is anything to age.
  if (view.finished.length > 0 && !view.rpmTimer) {
    view.rpmTimer = setInterval(renderRpm, 2000);
  } else if (view.finished.length === 0 && view.rpmTimer) {
    clearInterval(view.rpmTimer);
    view.rpmTimer = undefined;
  }
}

/**
 * Counts one request on the tiles at once, before the refetch confirms it.
 * @param {UsageRecord} r
 */
function countRecord(r) {
  view.finished.push(Date.now());
  renderRpm();
  const today = view.stats.today?.totals;
  if (!today || typeof r?.ts_ms !== 'number' || r.ts_ms < localMidnightMs()) return;
  today.requests += 1;
  today.input_tokens += r.tokens?.input || 0;
  today.output_tokens += r.tokens?.output || 0;
  today.cached_tokens += r.tokens?.cached || 0;
  if (ERROR_OUTCOMES.has(r.outcome)) today.errors += 1;
  setTiles(today);
}

// ---------------------------------------------------------------------------------------------
// Chart and breakdown

/**
 * The period's buckets, every one present (zeros included, later hours of today marked future).
 * @param {Stats} stats
 * @param {Period} period
 * @returns {import('./chart.js').ChartBucket[]}
 */
function padded(stats, period) {
  const since = period === 'today' ? localMidnightMs() : localMidnightMs(6);
  const bucket = period === 'today' ? HOUR_MS : DAY_MS;
  const count = period === 'today' ? 24 : 7;
  const now = Date.now();
  const out = Array.from({ length: count }, (_, i) => ({
    start_ms: since + i * bucket, input_tokens: 0, output_tokens: 0, future: since + i * bucket > now,
  }));
  for (const b of stats?.series || []) {
    const i = Math.round((b.start_ms - since) / bucket);
    if (i >= 0 && i < count) Object.assign(out[i], { input_tokens: b.input_tokens || 0, output_tokens: b.output_tokens || 0 });
  }
  return out;
}

function renderChartNow() {
  const box = $('chart');
  if (view.statsMissing) {
    box.replaceChildren(h('p', { class: 'note' }, 'This gateway has no usage statistics endpoint yet; update FlexiProxy to see the chart.'));
    return;
  }
  const stats = view.stats[view.period];
  if (!stats) return;
  renderChart(box, padded(stats, view.period), view.period);
}

/**
 * An adapter of the breakdown, for people: its name, else what it serves.
 * @param {string} key its id, or `none`
 * @param {string | undefined} label
 */
function adapterName(key, label) {
  if (key === 'none') return h('span', { class: 'muted' }, 'no adapter (tests, management)');
  const a = state.adapters.find((x) => String(x.create_time) === String(key));
  if (a?.name) return h('span', {}, a.name, label ? h('span', { class: 'sub block' }, label) : null);
  return label || (a ? `${a.provider_id ?? 'routing'} · ${a.model_id ?? 'any model'}` : `adapter ${key}`);
}

function renderBreakdown() {
  /** @type {Record<By, string>} */
  const labels = { provider: 'Provider', adapter: 'Adapter', model: 'Model' };
  $('breakdown-key').textContent = labels[view.by];
  $('panel-breakdown').setAttribute('aria-labelledby', `tab-${view.by}`);
  $('breakdown-caption').textContent = `Usage by ${view.by}, ${view.period === 'today' ? 'today' : 'last 7 days'}`;
  const body = $('breakdown-body');
  const stats = view.stats[view.period];
  if (view.statsMissing) {
    body.replaceChildren(emptyRow(7, 'Needs a newer gateway (no /api/usage/stats).'));
    return;
  }
  if (!stats) {
    body.replaceChildren(emptyRow(7, 'Loading…'));
    return;
  }
  const rows = stats[/** @type {const} */ (`by_${view.by}`)] || [];
  if (rows.length === 0) {
    body.replaceChildren(emptyRow(7, view.period === 'today' ? 'No requests today yet.' : 'No requests in the last 7 days.'));
    return;
  }
  body.replaceChildren(...rows.map((r) => {
    const name = view.by === 'adapter' ? adapterName(r.key, r.label) : String(r.key ?? '—');
    return h('tr', {},
      td(labels[view.by], name, view.by === 'model' ? 'mono break' : 'break'),
      td('Requests', fmtInt(r.requests), 'num'),
      td('Input', fmtInt(r.input_tokens), 'num'),
      td('Output', fmtInt(r.output_tokens), 'num'),
      td('Cached', fmtInt(r.cached_tokens), 'num opt'),
      td('Errors', r.errors ? h('span', { class: 'bad-text' }, fmtInt(r.errors)) : '0', 'num'),
      td('Avg latency', fmtMs(r.avg_latency_ms), 'num opt'),
    );
  }));
}

// ---------------------------------------------------------------------------------------------
// Last requests

/** @param {unknown} status */
function statusKind(status) {
  if (typeof status !== 'number' || status === 0) return 'bad';
  if (status < 300) return 'ok';
  if (status < 500) return 'warn';
  return 'bad';
}

/** @param {RecentRow} r */
function adapterCell(r) {
  if (r.adapter == null) return h('span', { class: 'muted' }, '—');
  const a = state.adapters.find((x) => x.create_time === r.adapter);
  const text = a?.name || r.adapter_label || (a ? `${a.provider_id ?? 'routing'} · ${a.model_id ?? 'any'}` : `#${r.adapter}`);
  return h('span', { class: 'ellipsis block', title: r.adapter_label || text }, text);
}

/** @param {RecentRow} r */
function outcomeText(r) {
  const o = String(r.outcome ?? '');
  if (o === 'client_closed') return 'the client hung up';
  if (o === 'interrupted') return 'the stream broke off';
  if (o === 'shutdown') return 'cut when FlexiProxy shut down';
  if (o === 'failed') return 'no answer from the provider';
  if (o === 'upstream_error') return 'the provider answered with an error';
  return o;
}

/** @param {RecentRow[]} rows */
function renderRecentErrors(rows) {
  const box = $('recent-errors');
  const errs = rows.filter((r) => r.error || ERROR_OUTCOMES.has(r.outcome)).slice(0, 3);
  box.hidden = errs.length === 0;
  box.replaceChildren(
    h('h3', {}, 'Recent errors'),
    h('ul', {}, errs.map((r) => h('li', {},
      h('span', { class: 'muted' }, fmtWhen(r.ts_ms), ' · '),
      'Provider ', h('strong', {}, String(r.provider_id || '?')),
      r.credential ? h('span', { class: 'muted' }, ` (key ${r.credential})`) : null,
      ` failed${r.status ? ` with HTTP ${r.status}` : ''}: `,
      h('span', { class: 'bad-text' }, String(r.error || outcomeText(r))),
    ))),
  );
}

/** What renderRecent drew last, to skip drawing the same again. @type {string | null} */
let lastRecentJson = null;

/** @param {RecentRow[]} rows */
function renderRecent(rows) {
  // Re-rendering identical rows would only steal keyboard focus and hover.
  const json = JSON.stringify(rows) + String(state.status?.usage_enabled) + state.adapters.length;
  if (json === lastRecentJson) return;
  lastRecentJson = json;
  renderRecentErrors(rows);
  const body = $('recent-body');
  if (rows.length === 0) {
    body.replaceChildren(emptyRow(9, state.status && !state.status.usage_enabled
      ? 'No requests recorded (usage statistics are off).'
      : 'No requests yet. Create an adapter and point a tool at the base URL with its key.'));
    return;
  }
  body.replaceChildren(...rows.map((r) => {
    const tokens = h('span', {}, `${fmtInt(r.input_tokens)} / ${fmtInt(r.output_tokens)}`);
    if (r.cached_tokens) tokens.append(h('span', { class: 'muted' }, ` (${fmtInt(r.cached_tokens)})`));
    const err = r.error ? String(r.error) : ERROR_OUTCOMES.has(r.outcome) || r.outcome === 'client_closed' ? outcomeText(r) : '';
    const model = String(r.model ?? '—');
    return h('tr', {},
      td('Time', timeCell(r.ts_ms), 'nowrap'),
      td('Provider', h('span', { title: r.credential ? `key ${r.credential}` : null }, String(r.provider_id || '—')), 'clip'),
      td('Adapter', adapterCell(r), 'clip'),
      td('Model', [
        h('span', { class: 'mono block ellipsis', title: model }, model),
        h('span', { class: 'sub block' }, h('span', { class: 'mono' }, String(r.endpoint ?? '')), r.stream ? h('span', { class: 'tag' }, 'stream') : null),
      ], 'clip model-cell'),
      td('Status', h('span', { class: 'badge', dataset: { kind: statusKind(r.status) } }, String(r.status || '—'))),
      td('Tokens', tokens, 'num nowrap'),
      td('Latency', fmtMs(r.latency_ms), 'num nowrap'),
      td('TTFT', fmtMs(r.ttfb_ms), 'num nowrap'),
      // Long errors are clamped; hovering or focusing one (Tab) shows it whole.
      td('Error', err ? h('span', { class: 'err-text', title: err, tabindex: '0' }, err) : h('span', { class: 'muted' }, '—')),
    );
  }));
}

// ---------------------------------------------------------------------------------------------
// Loading

/** @param {Period} period */
function statsPath(period) {
  const since = period === 'today' ? localMidnightMs() : localMidnightMs(6);
  const bucket = period === 'today' ? HOUR_MS : DAY_MS;
  return `/api/usage/stats?since_ms=${since}&bucket_ms=${bucket}`;
}

/**
 * Today's totals from the older summary endpoint, for a gateway without /api/usage/stats.
 * @returns {Promise<Stats>}
 */
async function legacyToday() {
  const sum = /** @type {{ today: Totals, by_provider: ({ provider_id: string } & Totals)[] } | null} */ (
    await api('GET', `/api/usage/summary?since_ms=${localMidnightMs()}`));
  /** @type {Partial<Totals>} */
  const t = sum?.today || {};
  return {
    totals: { requests: t.requests || 0, input_tokens: t.input_tokens || 0, output_tokens: t.output_tokens || 0, cached_tokens: t.cached_tokens || 0, errors: t.errors || 0 },
    by_provider: (sum?.by_provider || []).map((p) => ({ key: p.provider_id, requests: p.requests, input_tokens: p.input_tokens, output_tokens: p.output_tokens })),
    by_adapter: [],
    by_model: [],
    series: [],
  };
}

/**
 * @param {Period} period
 * @returns {Promise<Stats | null>}
 */
async function loadStats(period) {
  if (!view.statsMissing) {
    const stats = /** @type {Stats | null} */ (await apiOptional('GET', statsPath(period)));
    if (stats) return stats;
    view.statsMissing = true;
  }
  return period === 'today' ? legacyToday() : null;
}

/** Fetches the summaries and the last requests again and shows them. */
export async function refresh() {
  /** @type {Period[]} */
  const periods = view.period === 'today' ? ['today'] : ['today', 'week'];
  const [recent, ...stats] = await Promise.allSettled([
    api('GET', `/api/usage/recent?limit=${RECENT_LIMIT}`),
    ...periods.map(loadStats),
  ]);
  periods.forEach((p, i) => {
    if (stats[i].status === 'fulfilled') view.stats[p] = stats[i].value;
  });
  if (view.stats.today) setTiles(view.stats.today.totals);
  renderChartNow();
  renderBreakdown();
  if (recent.status === 'fulfilled') {
    view.recent = Array.isArray(recent.value) ? recent.value : [];
    renderRecent(view.recent);
  }
  const failed = [recent, ...stats].find((r) => r.status === 'rejected');
  if (failed && statusOf(failed.reason) !== 401) {
    showMsg($('usage-msg'), `Could not refresh usage: ${errorText(failed.reason)}`);
  } else if (!failed) {
    showMsg($('usage-msg'), '');
    $('usage-updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }
}

/** Seeds requests per minute from the last requests (before any event arrived). */
export async function seedRpm() {
  const cutoff = Date.now() - 60_000;
  const rows = view.recent.filter((r) => (r.ts_ms || 0) + (r.latency_ms || 0) > cutoff);
  view.finished = rows.map((r) => (r.ts_ms || 0) + (r.latency_ms || 0));
  renderRpm();
}

/** Refetches the summaries at most once per REFRESH_GAP_MS, however many events arrive. */
export function refreshSoon() {
  if (view.refreshTimer) return;
  view.refreshTimer = setTimeout(async () => {
    view.refreshTimer = undefined;
    if (view.running) {
      view.again = true;
      return;
    }
    view.running = true;
    try {
      await refresh();
    } finally {
      view.running = false;
      if (view.again) {
        view.again = false;
        refreshSoon();
      }
    }
  }, REFRESH_GAP_MS);
}

/**
 * A usage event from the live stream (null when its data could not be read).
 * @param {UsageRecord | null} record
 */
export function onUsage(record) {
  if (record) countRecord(record);
  refreshSoon();
}

/** @param {string} text `Live`, `Reconnecting in …`, or empty when stopped */
export function setLiveState(text) {
  const el = $('usage-live');
  el.textContent = text;
  el.dataset.kind = text === 'Live' ? 'ok' : text ? 'warn' : '';
}

export function clear() {
  view.stats = { today: null, week: null };
  view.statsMissing = false;
  view.recent = [];
  view.finished = [];
  clearInterval(view.rpmTimer);
  view.rpmTimer = undefined;
  clearTimeout(view.refreshTimer);
  view.refreshTimer = undefined;
  lastRecentJson = null;
  setTiles(null);
  $('u-rpm').textContent = '—';
  $('recent-body').replaceChildren(emptyRow(9, 'Loading…'));
  $('breakdown-body').replaceChildren(emptyRow(7, 'Loading…'));
  $('chart').replaceChildren();
  $('recent-errors').hidden = true;
  $('usage-updated').textContent = '';
  showMsg($('usage-msg'), '');
}

export function init() {
  for (const radio of document.querySelectorAll('input[name="period"]')) {
    if (!(radio instanceof HTMLInputElement)) continue;
    radio.addEventListener('change', () => {
      if (!radio.checked) return;
      view.period = /** @type {Period} */ (radio.value);
      renderChartNow();
      renderBreakdown();
      refresh();
    });
  }
  const tabs = $('breakdown-tabs');
  /** @param {HTMLElement} tab */
  const choose = (tab) => {
    selectTab(tab);
    view.by = /** @type {By} */ (tab.dataset.by);
    renderBreakdown();
  };
  tabs.addEventListener('click', (ev) => {
    const tab = ev.target instanceof Element ? ev.target.closest('[role="tab"]') : null;
    if (tab instanceof HTMLElement) choose(tab);
  });
  tabKeys(tabs, choose);
  // Redraw the chart at the new width (pixel units keep its text crisp).
  let width = 0;
  new ResizeObserver((entries) => {
    const w = Math.round(entries[0].contentRect.width);
    if (w > 0 && Math.abs(w - width) > 4) {
      width = w;
      renderChartNow();
    }
  }).observe($('chart'));
  on('status', (s) => {
    $('usage-off-note').hidden = !s || !!s.usage_enabled;
    renderWelcome(s);
  });
  const baseUrl = $('welcome-base-url');
  const copy = copyButton(() => baseUrl.textContent, 'Copy', {
    aria: 'Copy the base URL',
    selectOnFail: () => window.getSelection()?.selectAllChildren(baseUrl),
  });
  copy.id = 'welcome-copy';
  $('welcome-copy').replaceWith(copy);
  $('welcome-dismiss', HTMLButtonElement).addEventListener('click', dismissWelcome);
  on('adapters', () => {
    renderBreakdown();
    renderRecent(view.recent);
  });
}
