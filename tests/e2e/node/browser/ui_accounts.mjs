// Drives the Accounts page in headless Chromium (Debian's, through playwright-core) for
// tests/e2e/test_ui_accounts.py, the way a user would:
//
//   1. signs in with the management token, opens Accounts: the empty state, one "Log in" button
//      per kind, the terms note; screenshots at 1100 px and 420 px, light and dark;
//   2. "Log in: Qwen" (a device login, pointed by the test at a local oidc-provider): the dialog
//      shows the user code large, a copy button and the sign-in link (a plain link: the gateway
//      is headless, so it cannot open a browser itself); prints {phase: "code", userCode} and
//      waits for "approved" on stdin (the test approves the code on the provider meanwhile);
//   3. the dialog finishes by itself ("Logged in"), the account shows in the list with its
//      email, without a reload; the keyboard reaches its buttons with a visible focus;
//   4. Log out asks first (Cancel keeps it), then removes the account: the empty state again.
//
// Argument: one JSON object {url, token, chromium, artifacts}. Prints one JSON line per phase;
// the last one is {phase: "done", ...what it saw}.

import { join } from 'node:path';
import { open } from './session.mjs';

const { args, browser, nextLine, close } = await open();
const say = (obj) => console.log(JSON.stringify(obj));
const shot = (page, name, fullPage = true) => page.screenshot({ path: join(args.artifacts, `${name}.png`), fullPage });

const seen = { errors: [], steps: [] };
const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
const page = await context.newPage();
page.setDefaultTimeout(15000);
page.on('pageerror', (e) => seen.errors.push(String(e)));
page.on('console', (m) => {
  // A 409 from POST /api/desktop/open is how a headless gateway says it cannot open a browser.
  if (m.type() === 'error' && !/status of (404|409)/.test(m.text())) seen.errors.push(m.text());
});

const text = async (sel) => (await page.textContent(sel))?.trim() ?? '';
const noSideScroll = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);

/** Screenshots of the page as it is now, at both sizes and in both color schemes. */
async function shots(name) {
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [size, w, hgt] of [['default', 1100, 760], ['narrow', 420, 860]]) {
      await page.setViewportSize({ width: w, height: hgt });
      await page.waitForTimeout(100);
      if (!(await noSideScroll())) seen.overflow.push(`${name} ${size} ${scheme}`);
      await shot(page, `ui-accounts-${name}-${size}-${scheme}`);
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1100, height: 760 });
}

try {
  seen.overflow = [];
  // -- 1. sign in, empty state ------------------------------------------------------------
  await page.goto(`${args.url}/`);
  await page.fill('#login-token', args.token);
  await page.click('#login-submit');
  await page.waitForSelector('#main:not([hidden])');
  await page.waitForFunction(() => document.querySelector('#usage-live')?.textContent === 'Live');
  await page.evaluate(() => { window.__sameLoad = true; });
  await page.click('#nav a[data-page="accounts"]');
  await page.waitForSelector('#page-accounts:not([hidden])');
  await page.waitForSelector('#login-kind-qwen');
  seen.hash = await page.evaluate(() => location.hash);
  seen.emptyState = await text('#account-list');
  seen.kinds = await page.$$eval('#login-kinds .kind', (els) => els.map((e) => e.textContent.trim()));
  seen.terms = await text('#accounts-terms');
  await shots('empty');
  seen.steps.push('empty state');

  // -- 2. a device login ------------------------------------------------------------------
  await page.click('#login-kind-qwen');
  await page.waitForSelector('#login-dialog[open]');
  seen.dialogTitle = await text('#login-dialog-h');
  await page.waitForSelector('#ld-user-code');
  const userCode = await text('#ld-user-code');
  seen.userCode = userCode;
  seen.codeFontPx = await page.$eval('#ld-user-code', (el) => parseFloat(getComputedStyle(el).fontSize));
  seen.progress = await text('#ld-status');
  seen.openLink = await page.$eval('#ld-content .open-link', (el) => ({ tag: el.tagName, href: el.getAttribute('href') }));
  seen.copyCode = await page.$$eval('#ld-content button', (els) => els.map((e) => e.textContent.trim()));
  await shot(page, 'ui-accounts-dialog-code', false);
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize({ width: 420, height: 860 });
  await shot(page, 'ui-accounts-dialog-code-narrow-dark', false);
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1100, height: 760 });
  say({ phase: 'code', userCode });
  const go = await nextLine();
  if (go !== 'approved') throw new Error(`the test said ${go}`);

  // -- 3. done, the account in the list ---------------------------------------------------
  await page.waitForSelector('#login-dialog[data-status="done"]', { timeout: 30000 });
  seen.result = await text('#ld-content');
  await shot(page, 'ui-accounts-dialog-done', false);
  seen.doneFocus = await page.evaluate(() => document.activeElement?.id);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#login-dialog:not([open])', { state: 'attached' });
  await page.waitForSelector('#account-list article.account');
  seen.accountCard = await text('#account-list article.account');
  seen.sameLoad = await page.evaluate(() => window.__sameLoad === true);
  await shots('list');
  seen.steps.push('logged in');

  // Keyboard: Tab from the card's heading reaches its buttons, each with a visible focus ring.
  await page.focus('#account-list article.account h3');
  const tabbed = [];
  for (let i = 0; i < 3; i += 1) {
    await page.keyboard.press('Tab');
    tabbed.push(await page.evaluate(() => ({
      text: document.activeElement?.textContent?.trim(),
      outline: getComputedStyle(document.activeElement).outlineStyle,
    })));
  }
  seen.tabbed = tabbed;

  // -- 4. log out -------------------------------------------------------------------------
  const logOut = '#account-list article.account button[data-fkey^="logout:"]';
  await page.click(logOut);
  await page.waitForSelector('#confirm-dialog[open]');
  seen.logoutQuestion = await text('#confirm-h');
  seen.logoutFocus = await page.evaluate(() => document.activeElement?.textContent?.trim());
  await page.click('#confirm-actions button[value="cancel"]');
  await page.waitForSelector('#confirm-dialog:not([open])', { state: 'attached' });
  seen.keptAfterCancel = (await page.$$('#account-list article.account')).length;
  await page.click(logOut);
  await page.waitForSelector('#confirm-dialog[open]');
  await page.click('#confirm-actions button[value="ok"]');
  await page.waitForFunction(() => document.querySelectorAll('#account-list article.account').length === 0);
  seen.afterLogout = await text('#account-list');
  seen.logoutMsg = await text('#accounts-msg');
  seen.steps.push('logged out');
} catch (e) {
  seen.failure = String(e?.stack || e);
  await shot(page, 'ui-accounts-failure').catch(() => {});
} finally {
  say({ phase: 'done', ...seen });
  await close();
}
