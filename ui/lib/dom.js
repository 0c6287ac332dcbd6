// @ts-check
// DOM building, formatting, progress, clipboard and dialogs shared by every page of the UI.
//
// Every server-provided string is rendered with textContent / DOM nodes, never innerHTML:
// provider URLs, model names and upstream error texts are untrusted.

/**
 * The page's element with this id, which must be there: index.html's own elements, and those a
 * page made just before. `type` (an element class such as HTMLInputElement) says which kind it
 * is. Throws when it is missing or of another kind: that is a bug, not a state of the page.
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {new () => T} [type]
 * @returns {T}
 */
export function $(id, type) {
  const el = $maybe(id, type);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}

/**
 * Like $(), but null when the page has no such element now (parts a page renders later, or
 * only in some states).
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {new () => T} [type]
 * @returns {T | null}
 */
export function $maybe(id, type) {
  const el = document.getElementById(id);
  if (el && type && !(el instanceof type)) throw new Error(`#${id} is a <${el.localName}>, not a ${type.name}`);
  return /** @type {T | null} */ (el);
}

/**
 * What h() and svg() put in an element: a node as it is, anything else as text (so it cannot
 * inject markup); null, undefined and false are left out.
 * @typedef {Node | string | number | false | null | undefined} Child
 */

/**
 * The properties h() sets: `class`, `text` (the text content), `dataset`, `onclick`, and any
 * attribute (true is an empty attribute; null, undefined and false leave it out).
 * @template {Element} E
 * @typedef {{
 *   [attribute: string]: unknown,
 *   class?: string | null,
 *   dataset?: Record<string, string>,
 *   onclick?: (ev: MouseEvent & { currentTarget: E }) => unknown,
 * }} Props
 */

/**
 * Creates an element. Children that are not Nodes become text nodes, so they cannot inject markup.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props<HTMLElementTagNameMap[K]>} [props]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/**
 * An SVG element (the chart).
 * @param {string} tag
 * @param {Record<string, string | number | null | undefined>} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}, ...children) {
  const el = /** @type {SVGElement} */ (document.createElementNS('http://www.w3.org/2000/svg', tag));
  for (const [k, v] of Object.entries(attrs)) {
    if (v != null) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/**
 * A table cell carrying its column name, which narrow layouts show as a label.
 * @param {string} label
 * @param {Child | Child[]} content
 * @param {string} [cls]
 */
export function td(label, content, cls) {
  return h('td', { 'data-label': label, class: cls }, content);
}

/**
 * A row of one cell across the table, saying why there are no rows (or that they are loading).
 * @param {number} colspan
 * @param {string} text
 */
export function emptyRow(colspan, text) {
  return h('tr', {}, h('td', { colspan, class: 'empty' }, text));
}

/**
 * Shows (or with an empty text hides) a message box.
 * @param {HTMLElement} el
 * @param {string | null | undefined} text
 * @param {'error' | 'ok' | 'warn'} [kind]
 */
export function showMsg(el, text, kind = 'error') {
  el.textContent = text || '';
  el.dataset.kind = kind;
  el.hidden = !text;
}

/**
 * A button; `onClick` gets the button itself.
 * @param {Child | Child[]} label
 * @param {{ cls?: string, aria?: string, onClick?: (btn: HTMLButtonElement) => unknown, id?: string }} [options]
 */
export function button(label, { cls = 'btn btn-small', aria, onClick, id } = {}) {
  const b = h('button', { type: 'button', class: cls, 'aria-label': aria, id }, label);
  if (onClick) b.addEventListener('click', () => onClick(b));
  return b;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const intFmt = new Intl.NumberFormat();
const compactFmt = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

/** @param {unknown} n a count; anything else shows as a dash */
export function fmtInt(n) {
  return typeof n === 'number' && Number.isFinite(n) ? intFmt.format(n) : '—';
}

/** @param {unknown} n */
export function fmtCompact(n) {
  return typeof n === 'number' && Number.isFinite(n) ? compactFmt.format(n) : '—';
}

/** @param {unknown} ms */
export function fmtMs(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/**
 * @param {Date} a
 * @param {Date} b
 */
export function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/**
 * Time of day; rows from an earlier day get their date on a second line to keep the column narrow.
 * @param {unknown} tsMs
 */
export function timeCell(tsMs) {
  if (typeof tsMs !== 'number') return '—';
  const d = new Date(tsMs);
  const el = h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, d.toLocaleTimeString());
  if (!sameDay(d, new Date())) {
    el.append(h('span', { class: 'sub block' }, d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })));
  }
  return el;
}

/** @param {unknown} tsMs */
export function fmtDate(tsMs) {
  if (typeof tsMs !== 'number') return '—';
  return new Date(tsMs).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/**
 * "14:05:09", or with the date when not today.
 * @param {number} tsMs
 */
export function fmtWhen(tsMs) {
  const d = new Date(tsMs);
  return sameDay(d, new Date())
    ? d.toLocaleTimeString()
    : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** The start of today (or of `daysBack` days before) in this computer's time zone. */
export function localMidnightMs(daysBack = 0) {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  d.setDate(d.getDate() - daysBack);
  return d.getTime();
}

/** The wire protocols a provider can speak: [id, label]. @type {[string, string][]} */
export const PROTOCOLS = [
  ['openai_chat', 'OpenAI Chat Completions'],
  ['openai_responses', 'OpenAI Responses'],
  ['anthropic_messages', 'Anthropic Messages'],
  ['gemini', 'Google Gemini'],
];

/** @param {unknown} p */
export function protocolLabel(p) {
  const found = PROTOCOLS.find(([id]) => id === p);
  return found ? found[1] : String(p ?? '—');
}

// ---------------------------------------------------------------------------------------------
// Progress and clipboard

/**
 * Runs fn with the button disabled and a spinner + label; always restores the button.
 * @template T
 * @param {HTMLButtonElement} btn
 * @param {string} label
 * @param {() => Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function withBusy(btn, label, fn) {
  const original = Array.from(btn.childNodes, (n) => n.cloneNode(true));
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  btn.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
  try {
    return await fn();
  } finally {
    btn.replaceChildren(...original);
    btn.removeAttribute('aria-busy');
    btn.disabled = false;
  }
}

/** @param {string} text */
export function spinnerText(text) {
  return h('span', { class: 'progress' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

/**
 * Puts text on the clipboard; resolves with whether that worked.
 * @param {string} text
 */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Some webviews expose the API but deny it; fall through to the legacy path.
    }
  }
  const ta = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
  ta.value = text;
  // Outside an open modal dialog everything is inert, so the helper must live inside it.
  (document.querySelector('dialog[open]') || document.body).append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/**
 * A Copy button with visible feedback; on failure it tells the user to copy by hand.
 * @param {() => string} getText
 * @param {string} [label]
 * @param {{ selectOnFail?: () => void, aria?: string }} [options]
 */
export function copyButton(getText, label = 'Copy', { selectOnFail, aria } = {}) {
  const btn = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': aria }, label);
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  btn.addEventListener('click', async () => {
    const ok = await copyText(getText());
    btn.textContent = ok ? 'Copied' : 'Copy failed — select and press Ctrl+C';
    btn.classList.toggle('copied', ok);
    if (!ok && selectOnFail) selectOnFail();
    clearTimeout(timer);
    timer = setTimeout(() => {
      btn.textContent = label;
      btn.classList.remove('copied');
    }, ok ? 1500 : 4000);
  });
  return btn;
}

/**
 * A titled block of copy-ready text with its Copy button.
 * @param {string} title
 * @param {string} text
 * @param {{ language?: string }} [options]
 */
export function snippet(title, text, { language } = {}) {
  const pre = h('pre', { class: 'snippet', tabindex: '0', 'aria-label': title, dataset: { language: language || '' } },
    h('code', {}, text));
  const selectPre = () => {
    const range = document.createRange();
    range.selectNodeContents(pre);
    const sel = window.getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
  };
  return h('div', { class: 'snippet-block' },
    h('div', { class: 'snippet-head' }, h('span', { class: 'snippet-title' }, title),
      copyButton(() => text, 'Copy', { selectOnFail: selectPre, aria: `Copy ${title}` })),
    pre);
}

// ---------------------------------------------------------------------------------------------
// Dialogs

/**
 * One answer of choiceDialog(): `kind` styles it, `focus` starts the keyboard on it.
 * @typedef {{ value: string, label: string, kind?: 'primary' | 'danger', focus?: boolean }} Choice
 */

/**
 * Asks a question with any number of answers; resolves with the chosen value, or null when
 * dismissed (Escape).
 * @param {{ title: string, text: string, choices: Choice[] }} question
 * @returns {Promise<string | null>}
 */
export function choiceDialog({ title, text, choices }) {
  const dlg = $('confirm-dialog', HTMLDialogElement);
  $('confirm-h').textContent = title;
  $('confirm-text').textContent = text;
  const buttons = choices.map((c) => h('button', {
    type: 'submit',
    value: c.value,
    class: `btn ${c.kind === 'primary' ? 'btn-primary' : c.kind === 'danger' ? 'btn-danger' : ''}`,
  }, c.label));
  $('confirm-actions').replaceChildren(...buttons);
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue || null), { once: true });
    dlg.showModal();
    const focusIndex = Math.max(0, choices.findIndex((c) => c.focus));
    buttons[focusIndex].focus();
  });
}

/**
 * A yes/no question: `ok` labels the yes, `danger` marks it destructive.
 * @typedef {{ title: string, text: string, ok?: string, danger?: boolean }} Question
 */

/**
 * A yes/no question. Destructive ones start on Cancel so an accidental Enter does nothing harmful.
 * @param {Question} question
 * @returns {Promise<boolean>} whether the answer was yes
 */
export async function confirmDialog({ title, text, ok = 'OK', danger = false }) {
  const answer = await choiceDialog({
    title,
    text,
    choices: [
      { value: 'cancel', label: 'Cancel', focus: danger },
      { value: 'ok', label: ok, kind: danger ? 'danger' : 'primary', focus: !danger },
    ],
  });
  return answer === 'ok';
}

/**
 * Keyboard behaviour of a tab list (arrows, Home, End), per the WAI-ARIA tabs pattern.
 * @param {HTMLElement} list
 * @param {(tab: HTMLElement) => void} onSelect
 */
export function tabKeys(list, onSelect) {
  list.addEventListener('keydown', (ev) => {
    const tabs = [...list.querySelectorAll('[role="tab"]')].filter((t) => t instanceof HTMLElement);
    const i = tabs.findIndex((t) => t === document.activeElement);
    if (i < 0) return;
    let next = null;
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowDown') next = tabs[(i + 1) % tabs.length];
    else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowUp') next = tabs[(i - 1 + tabs.length) % tabs.length];
    else if (ev.key === 'Home') next = tabs[0];
    else if (ev.key === 'End') next = tabs[tabs.length - 1];
    if (!next) return;
    ev.preventDefault();
    next.focus();
    onSelect(next);
  });
}

/**
 * Marks `tab` selected among its siblings (roving tabindex).
 * @param {HTMLElement} tab
 */
export function selectTab(tab) {
  for (const t of tab.parentElement?.querySelectorAll('[role="tab"]') ?? []) {
    if (!(t instanceof HTMLElement)) continue;
    const on = t === tab;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
  }
}
