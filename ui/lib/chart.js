// @ts-check
// The dashboard's "tokens over time" chart: stacked bars (input below, output above) drawn as
// inline SVG at the container's pixel width, so text stays crisp at any window size. For
// screen readers the SVG is one labelled image and the numbers are in a hidden table beside it.

import { h, svg, fmtInt, fmtCompact } from './dom.js';

/** The chart's span: today by hour, or the last 7 days by day. @typedef {'today' | 'week'} Period */

/**
 * One bar: its start, its tokens, and whether it is still to come (later hours of today).
 * @typedef {{ start_ms: number, input_tokens: number, output_tokens: number, future?: boolean }} ChartBucket
 */

const HEIGHT = 200;
const PAD = { top: 10, right: 8, bottom: 24, left: 44 };

/**
 * A round axis maximum at or above `max` (1, 2, 2.5, 5 × 10^n).
 * @param {number} max
 */
function niceMax(max) {
  if (max <= 0) return 4;
  const pow = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * pow >= max) return step * pow;
  }
  return 10 * pow;
}

/**
 * @param {number} startMs
 * @param {Period} period
 */
function bucketLabel(startMs, period) {
  const d = new Date(startMs);
  return period === 'today'
    ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric' });
}

/**
 * @param {number} startMs
 * @param {Period} period
 */
function tickLabel(startMs, period) {
  const d = new Date(startMs);
  return period === 'today'
    ? d.toLocaleTimeString(undefined, { hour: 'numeric' })
    : d.toLocaleDateString(undefined, { weekday: 'short' });
}

/**
 * Draws `buckets` (already padded to the period) into `container`.
 * @param {HTMLElement} container
 * @param {ChartBucket[]} buckets
 * @param {Period} period
 */
export function renderChart(container, buckets, period) {
  const width = Math.max(280, Math.floor(container.clientWidth || 600));
  const innerW = width - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const totals = buckets.map((b) => (b.input_tokens || 0) + (b.output_tokens || 0));
  const max = niceMax(Math.max(0, ...totals));
  const y = (/** @type {number} */ v) => PAD.top + innerH - (v / max) * innerH;
  const slot = innerW / Math.max(1, buckets.length);
  const barW = Math.max(2, Math.min(slot * 0.7, 48));

  const sumIn = buckets.reduce((s, b) => s + (b.input_tokens || 0), 0);
  const sumOut = buckets.reduce((s, b) => s + (b.output_tokens || 0), 0);
  const busiest = totals.indexOf(Math.max(...totals));
  const what = period === 'today' ? 'Tokens per hour today' : 'Tokens per day, last 7 days';
  const summary = sumIn + sumOut === 0
    ? `${what}: none yet.`
    : `${what}: ${fmtInt(sumIn)} input and ${fmtInt(sumOut)} output tokens; most in ${bucketLabel(buckets[busiest].start_ms, period)} (${fmtInt(totals[busiest])}).`;

  const grid = [];
  // An empty chart gets only its baseline: a scale of nothing would be noise.
  for (let i = 0; i <= (sumIn + sumOut === 0 ? 0 : 4); i += 1) {
    const v = (max / 4) * i;
    grid.push(
      svg('line', { x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v), class: i === 0 ? 'axis' : 'grid' }),
      svg('text', { x: PAD.left - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, fmtCompact(v)),
    );
  }

  const every = period === 'today' ? (width < 520 ? 6 : 3) : 1;
  const bars = buckets.map((b, i) => {
    const x = PAD.left + slot * i + (slot - barW) / 2;
    const vin = b.input_tokens || 0;
    const vout = b.output_tokens || 0;
    const parts = [
      svg('title', {}, `${bucketLabel(b.start_ms, period)}: ${fmtInt(vin)} input, ${fmtInt(vout)} output tokens`),
      // A full-height hit area so hovering anywhere over the slot shows the numbers.
      svg('rect', { x: PAD.left + slot * i, y: PAD.top, width: slot, height: innerH, class: 'hit' }),
    ];
    if (vin > 0) parts.push(svg('rect', { x, y: y(vin), width: barW, height: Math.max(1, y(0) - y(vin)), class: 'bar-in', rx: 1.5 }));
    if (vout > 0) parts.push(svg('rect', { x, y: y(vin + vout), width: barW, height: Math.max(1, y(vin) - y(vin + vout)), class: 'bar-out', rx: 1.5 }));
    if (i % every === 0) {
      parts.push(svg('text', { x: PAD.left + slot * i + slot / 2, y: HEIGHT - 6, class: 'tick', 'text-anchor': 'middle' }, tickLabel(b.start_ms, period)));
    }
    return svg('g', { class: b.future ? 'bucket future' : 'bucket' }, parts);
  });

  const empty = sumIn + sumOut === 0
    ? svg('text', { x: PAD.left + innerW / 2, y: PAD.top + innerH / 2, class: 'chart-empty', 'text-anchor': 'middle' },
      period === 'today' ? 'No tokens yet today' : 'No tokens in the last 7 days')
    : null;

  const titleId = `chart-title-${period}`;
  const image = svg('svg', {
    width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img', 'aria-labelledby': titleId, class: 'chart-svg',
  }, svg('title', { id: titleId }, summary), grid, bars, empty);

  const legend = h('div', { class: 'legend small', 'aria-hidden': 'true' },
    h('span', {}, h('i', { class: 'swatch swatch-in' }), 'Input'),
    h('span', {}, h('i', { class: 'swatch swatch-out' }), 'Output'),
    h('span', { class: 'muted' }, `${fmtInt(sumIn)} in · ${fmtInt(sumOut)} out`));

  const table = h('table', { class: 'visually-hidden' },
    h('caption', {}, what),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, period === 'today' ? 'Hour' : 'Day'),
      h('th', { scope: 'col' }, 'Input tokens'), h('th', { scope: 'col' }, 'Output tokens'))),
    h('tbody', {}, buckets.filter((b) => !b.future).map((b) => h('tr', {},
      h('th', { scope: 'row' }, bucketLabel(b.start_ms, period)), h('td', {}, fmtInt(b.input_tokens || 0)), h('td', {}, fmtInt(b.output_tokens || 0))))));

  container.replaceChildren(legend, image, table);
  container.dataset.total = String(sumIn + sumOut);
}
