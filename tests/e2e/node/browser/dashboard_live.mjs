// Drives the web UI in headless Chromium (Debian's, through playwright-core) for
// tests/e2e/test_ui_live.py: signs in with the management token, waits until the dashboard
// follows the gateway's live event stream, then tells the test it is ready. The test sends a
// request through the gateway with an SDK and answers on stdin; this script then waits for the
// request counter and the list of recent requests to change *without a reload*, saves a
// screenshot, and prints one JSON line with what it saw.
//
// Argument: one JSON object {url, token, chromium, screenshot, model}.

import { open } from './session.mjs';

const { args, browser, nextLine, close } = await open();

try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${args.url}/`);
  await page.fill('#login-token', args.token);
  await page.click('#login-submit');
  await page.waitForSelector('#main:not([hidden])');
  await page.waitForFunction(() => document.querySelector('#usage-live')?.textContent === 'Live');
  // Marks this page load: a reload would lose it.
  await page.evaluate(() => { window.__sameLoad = true; });
  const before = (await page.textContent('#u-requests')).trim();
  console.log(JSON.stringify({ ready: true, before }));

  await nextLine();
  const grew = await page
    .waitForFunction(
      (b) => {
        const now = document.querySelector('#u-requests')?.textContent.trim();
        return now !== b && now !== '—' ? now : false;
      },
      before,
      { timeout: 10000 },
    )
    .then((h) => h.jsonValue())
    .catch(() => null);
  // The counter moves with the event itself; the list follows once the summaries are refetched.
  await page
    .waitForFunction((m) => document.querySelector('#recent-body')?.textContent.includes(m), args.model, { timeout: 10000 })
    .catch(() => {});
  const recent = await page.textContent('#recent-body');
  const sameLoad = await page.evaluate(() => window.__sameLoad === true);
  await page.screenshot({ path: args.screenshot, fullPage: true });
  console.log(JSON.stringify({ after: grew, recentHasModel: recent.includes(args.model), sameLoad, errors }));
} finally {
  await close();
}
