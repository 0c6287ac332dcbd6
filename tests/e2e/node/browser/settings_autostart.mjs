// Drives the Settings page's "Start FlexiProxy when I log in" switch in headless Chromium for
// tests/e2e/test_desktop.py, against the gateway of a running desktop app (whose /api/desktop
// is available): signs in with the management token, turns the switch on, reports what the page
// says, waits for the test's go-ahead on stdin (it checks the autostart entry and the tray's
// check item), turns it off and reports again. One JSON line per step.
//
// Argument: one JSON object {url, token, chromium, screenshot}.

import { open } from './session.mjs';

const { args, browser, nextLine, close } = await open();

try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${args.url}/#settings`);
  await page.fill('#login-token', args.token);
  await page.click('#login-submit');
  await page.waitForSelector('#desktop-card:not([hidden])', { timeout: 10000 });
  await page.waitForSelector('#autostart-toggle:not([disabled])');

  const flip = async (want) => {
    await page.click('label[for="autostart-toggle"]');
    await page.waitForFunction(
      (w) => document.querySelector('#autostart-state')?.textContent === w,
      want ? 'On' : 'Off',
      { timeout: 10000 },
    );
    return {
      checked: await page.isChecked('#autostart-toggle'),
      state: (await page.textContent('#autostart-state')).trim(),
      message: (await page.textContent('#desktop-msg')).trim(),
      errors,
    };
  };

  const before = await page.isChecked('#autostart-toggle');
  const on = await flip(true);
  // Let the switch's slide finish, so the screenshot shows where it ends.
  await page.waitForTimeout(400);
  await page.screenshot({ path: args.screenshot });
  console.log(JSON.stringify({ before, ...on }));
  await nextLine();
  console.log(JSON.stringify(await flip(false)));
} finally {
  await close();
}
