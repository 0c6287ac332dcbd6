// Drives the whole window in headless Chromium (Debian's, through playwright-core) for
// tests/e2e/test_ui_flow.py, the way a user would:
//
//   1. signs in with the management token; checks the empty states;
//   2. Providers → "Add provider" → the OpenAI preset, pointed at the local mock upstream, with a
//      key pasted in; the key is never shown again (only its hint); the discovered models show;
//      "Test" makes a real call and shows the answer;
//   3. Adapters → creates one for that provider with a model picked from its list; the dialog
//      shows the key once and the tools' settings with the key filled in; writes Claude Code's
//      settings file and undoes it;
//   4. prints {phase: "adapter", key, before} and waits for "sent" on stdin (the Python test
//      sends requests through the adapter with the official openai SDK meanwhile);
//   5. without reloading, waits for the live tiles, requests per minute, the chart, the
//      per-provider / per-model tables and the request list to show those requests;
//   6. keyboard only: the skip link and the navigation reach every page, focus is visible;
//   7. Settings: turning usage statistics off asks first (Cancel keeps them on); CSV export;
//   8. screenshots of every page at the window's default size (1100×760) and at 420 px, in the
//      light and dark color schemes, and of the dialogs; the page must not scroll sideways.
//
// Argument: one JSON object {url, token, chromium, artifacts, upstream, upstreamKey, requests}.
// Prints one JSON line per phase; the last one is {phase: "done", ...what it saw}.

import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { open } from './session.mjs';

const { args, browser, nextLine, close } = await open();
const say = (obj) => console.log(JSON.stringify(obj));
const shot = (page, name, fullPage = true) => page.screenshot({ path: join(args.artifacts, `${name}.png`), fullPage });

const PAGES = ['dashboard', 'providers', 'adapters', 'settings'];
const seen = { errors: [], steps: [] };

const context = await browser.newContext({ viewport: { width: 1100, height: 760 }, acceptDownloads: true });
const page = await context.newPage();
page.setDefaultTimeout(15000);
page.on('pageerror', (e) => seen.errors.push(String(e)));
page.on('console', (m) => {
  // A 404 from an optional endpoint is expected where a feature is absent (e.g. /api/desktop headless).
  if (m.type() === 'error' && !/status of 404/.test(m.text())) seen.errors.push(m.text());
});

const text = async (sel) => (await page.textContent(sel))?.trim() ?? '';
/** The text of `sel` if it is there now, else null (for what the assertions check later). */
const textNow = (sel) => page.$eval(sel, (el) => el.textContent.trim()).catch(() => null);
const num = async (sel) => Number((await text(sel)).replace(/[^\d]/g, '') || 0);
const goto = async (name) => {
  await page.click(`#nav a[data-page="${name}"]`);
  await page.waitForSelector(`#page-${name}:not([hidden])`);
};
const noSideScroll = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);

try {
  // -- 1. sign in ------------------------------------------------------------------------
  await page.goto(`${args.url}/`);
  await page.fill('#login-token', args.token);
  await page.click('#login-submit');
  await page.waitForSelector('#main:not([hidden])');
  await page.waitForFunction(() => document.querySelector('#usage-live')?.textContent === 'Live');
  await page.evaluate(() => { window.__sameLoad = true; });
  await shot(page, 'ui-empty-dashboard');
  await goto('providers');
  seen.emptyProviders = await text('#provider-list');
  await goto('adapters');
  seen.emptyAdapters = await text('#adapters-body');
  seen.steps.push('signed in');

  // -- 2. add a provider from a preset ------------------------------------------------------
  await goto('providers');
  await page.click('#add-provider');
  await page.waitForSelector('#preset-openai');
  seen.presets = await page.$$eval('#preset-grid .preset-name', (els) => els.map((e) => e.textContent));
  await page.check('#preset-openai');
  seen.presetUrl = await page.inputValue('#pf-url');
  seen.presetProtocol = await page.inputValue('#pf-protocol');
  await page.fill('#pf-id', 'mockai');
  await page.fill('#pf-url', args.upstream);
  await page.fill('#pf-key', args.upstreamKey);
  await shot(page, 'ui-dialog-add-provider', false);
  await page.click('#pf-submit');
  await page.waitForSelector('#provider-mockai');
  seen.dialogClosed = await page.evaluate(() => !document.querySelector('#provider-dialog').open);
  await page.waitForSelector('#provider-mockai .chips li', { timeout: 15000 });
  seen.models = await page.$$eval('#provider-mockai .chips li', (els) => els.map((e) => e.textContent));
  seen.keyHint = await text('#provider-mockai .keys-table code');
  seen.keyShown = (await page.content()).includes(args.upstreamKey);
  seen.steps.push('provider added');

  // A local upstream answers in milliseconds: watch for the progress line rather than poll for it.
  await page.evaluate(() => {
    window.__sawProgress = false;
    const box = document.querySelector('#provider-list');
    new MutationObserver(() => {
      if (box.querySelector('#provider-mockai .test-result .progress')) window.__sawProgress = true;
    }).observe(box, { childList: true, subtree: true });
  });
  await page.click('#provider-mockai button[aria-label="Test provider mockai"]');
  await page.waitForSelector('#provider-mockai .test-result .test-ok, #provider-mockai .test-result .test-bad');
  seen.testResult = await text('#provider-mockai .test-result');
  seen.testProgress = await page.evaluate(() => window.__sawProgress);
  await shot(page, 'ui-providers-tested');
  seen.steps.push('provider tested');

  // Editing the URL to another host warns, before saving, that the key will be cleared.
  await page.click('#provider-mockai button[aria-label="Edit provider mockai"]');
  await page.waitForSelector('#provider-dialog[open]');
  seen.sameHostNote = await page.isVisible('#pf-url-note');
  await page.fill('#pf-url', args.upstream.replace(/:(\d+)/, (_, port) => `:${Number(port) + 1}`));
  seen.moveNote = (await page.isVisible('#pf-url-note')) ? await text('#pf-url-note') : '';
  await page.click('#pf-cancel');

  // -- 3. create an adapter; tool settings with the key ---------------------------------------
  await goto('adapters');
  await page.selectOption('#af-provider', 'mockai');
  seen.modelChoices = await page.$$eval('#af-models option', (els) => els.map((e) => e.value));
  await page.fill('#af-model', seen.modelChoices[0] || 'mock-chat');
  await page.fill('#af-name', 'e2e tool');
  await page.click('#af-submit');
  await page.waitForSelector('#tools-dialog[open] #new-key');
  const key = await page.inputValue('#new-key');
  await page.waitForSelector('#tools-dialog [role="tab"]');
  seen.toolTabs = await page.$$eval('#tools-dialog [role="tab"]', (els) => els.map((e) => e.textContent.trim()));
  seen.snippetHasKey = (await text('#tools-dialog .snippet')).includes(key);
  await shot(page, 'ui-dialog-adapter-created', false);
  const claude = await page.$('#tooltab-claude-code');
  if (claude) {
    await claude.click();
    seen.claudeSnippet = await text('#tool-panel .snippet');
    const write = await page.$('#apply-claude-code');
    seen.claudeWritable = !!write;
    if (write) {
      seen.beforeApply = await text('#tool-panel');
      await write.click();
      await page.waitForSelector('#tool-panel .msg');
      seen.applyResult = await text('#tool-panel .msg');
      await shot(page, 'ui-dialog-tool-written', false);
      const undo = await page.$('#undo-claude-code');
      if (undo) {
        await undo.click();
        await page.waitForFunction(() => /Restored|Could not undo/.test(document.querySelector('#tool-panel .msg')?.textContent || ''));
        seen.undoResult = await text('#tool-panel .msg');
      }
    }
  }
  await page.click('#tools-done');
  // The dialog empties itself on its close event; nothing on the page may still hold the key.
  seen.keyGoneAfterClose = await page.waitForFunction((k) => !document.body.innerHTML.includes(k)
    && [...document.querySelectorAll('input')].every((i) => i.value !== k), key, { timeout: 3000 })
    .then(() => true).catch(() => false);
  seen.adapterRow = await text('#adapters-body');
  // The same settings later: key as a placeholder.
  await page.click('#adapters-body button:has-text("Tool settings")');
  await page.waitForSelector('#tools-dialog[open] .snippet');
  seen.laterSnippet = await text('#tools-dialog .snippet');
  await page.keyboard.press('Escape');
  seen.steps.push('adapter created');

  // -- 4. the test sends requests ---------------------------------------------------------
  await goto('dashboard');
  const before = {
    requests: await num('#u-requests'),
    input: await num('#u-input'),
    output: await num('#u-output'),
    chart: Number(await page.getAttribute('#chart', 'data-total') || 0),
  };
  say({ phase: 'adapter', key, before });
  await nextLine();

  // -- 5. live updates without a reload -----------------------------------------------------
  const want = before.requests + args.requests;
  seen.requestsAfter = await page
    .waitForFunction((w) => {
      const n = Number(document.querySelector('#u-requests').textContent.replace(/[^\d]/g, ''));
      return n >= w ? n : false;
    }, want, { timeout: 15000 })
    .then((h) => h.jsonValue())
    .catch(() => null);
  // The tiles move at once; the summaries follow after a short debounce.
  await page.waitForFunction((b) => Number(document.querySelector('#chart').dataset.total || 0) > b, before.chart, { timeout: 10000 }).catch(() => {});
  await page.waitForFunction(() => document.querySelector('#recent-body').textContent.includes('mockai'), null, { timeout: 10000 }).catch(() => {});
  seen.after = {
    input: await num('#u-input'),
    output: await num('#u-output'),
    rpm: await num('#u-rpm'),
    chart: Number(await page.getAttribute('#chart', 'data-total') || 0),
    chartLabel: await textNow('#chart svg title'),
  };
  seen.byProvider = await text('#breakdown-body');
  await page.click('#tab-model');
  seen.byModel = await text('#breakdown-body');
  await page.click('#tab-adapter');
  seen.byAdapter = await text('#breakdown-body');
  await page.click('#tab-provider');
  seen.recent = await text('#recent-body');
  seen.recentHeaders = await page.$$eval('.recent-table th', (els) => els.map((e) => e.textContent));
  await page.check('input[name="period"][value="week"]');
  await page.waitForFunction(() => document.querySelector('#chart svg title')?.textContent.includes('7 days'), null, { timeout: 10000 })
    .catch(() => {});
  seen.weekChart = Number(await page.getAttribute('#chart', 'data-total') || 0);
  await page.check('input[name="period"][value="today"]');
  seen.sameLoad = await page.evaluate(() => window.__sameLoad === true);
  seen.steps.push('live updates seen');

  // -- 6. keyboard only -------------------------------------------------------------------
  // Start from the top of the document, as after opening the window.
  await page.evaluate(() => {
    document.body.tabIndex = -1;
    document.body.focus();
    document.body.removeAttribute('tabindex');
    window.scrollTo(0, 0);
  });
  await page.keyboard.press('Tab');
  seen.firstTab = await page.evaluate(() => document.activeElement?.textContent?.trim());
  await page.keyboard.press('Enter');
  seen.skipTarget = await page.evaluate(() => document.activeElement?.id);
  const visited = [];
  const outlines = [];
  for (const name of ['providers', 'adapters', 'settings', 'dashboard']) {
    // From wherever the focus is, Shift+Tab back up to the navigation, then Enter.
    let found = false;
    for (let i = 0; i < 40 && !found; i += 1) {
      await page.keyboard.press('Shift+Tab');
      found = await page.evaluate((n) => document.activeElement?.dataset?.page === n && document.activeElement.closest('#nav') != null, name);
    }
    if (!found) break;
    outlines.push(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle));
    await page.keyboard.press('Enter');
    await page.waitForSelector(`#page-${name}:not([hidden])`);
    visited.push({
      page: name,
      hash: await page.evaluate(() => location.hash),
      focus: await page.evaluate(() => document.activeElement?.tagName + '#' + document.activeElement?.id),
      current: await page.getAttribute(`#nav a[data-page="${name}"]`, 'aria-current'),
    });
  }
  seen.keyboard = { visited, outlines };
  seen.steps.push('keyboard');

  // -- 7. settings ------------------------------------------------------------------------
  await goto('settings');
  await page.click('label[for="usage-toggle"]');
  await page.waitForSelector('#confirm-dialog[open]');
  seen.usageChoices = await page.$$eval('#confirm-actions button', (els) => els.map((e) => e.textContent));
  await shot(page, 'ui-dialog-usage-off', false);
  await page.click('#confirm-actions button[value="cancel"]');
  await page.waitForSelector('#confirm-dialog:not([open])', { state: 'attached' });
  seen.usageStillOn = await page.isChecked('#usage-toggle');
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 10000 }).catch(() => null),
    page.click('#export-csv'),
  ]);
  if (download) {
    seen.csvName = download.suggestedFilename();
    const path = await download.path();
    seen.csvHead = path ? (await readFile(path, 'utf8')).split('\n').slice(0, 2) : null;
  }
  await page.waitForSelector('#usage-setting-msg:not([hidden])');
  seen.exportMsg = await text('#usage-setting-msg');
  seen.dataFacts = await text('#data-facts');
  seen.steps.push('settings');

  // -- 8. screenshots ---------------------------------------------------------------------
  seen.overflow = [];
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [size, w, hgt] of [['default', 1100, 760], ['narrow', 420, 860]]) {
      await page.setViewportSize({ width: w, height: hgt });
      for (const name of PAGES) {
        await goto(name);
        await page.waitForTimeout(150);
        if (!(await noSideScroll())) seen.overflow.push(`${name} ${size} ${scheme}`);
        await shot(page, `ui-${name}-${size}-${scheme}`);
      }
      if (size === 'narrow') {
        await goto('providers');
        await page.click('#add-provider');
        await page.check('#preset-anthropic');
        await shot(page, `ui-dialog-add-provider-narrow-${scheme}`, false);
        await page.keyboard.press('Escape');
      }
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1100, height: 760 });
  seen.steps.push('screenshots');
} catch (e) {
  seen.failure = String(e?.stack || e);
  await shot(page, 'ui-flow-failure').catch(() => {});
} finally {
  say({ phase: 'done', ...seen });
  await close();
}
