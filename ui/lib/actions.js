// @ts-check
// A page's actions on the gateway behind a button (delete, log out, enable, reset, refresh):
// ask first when the action cannot be taken back, make the API call with the button busy, say
// in the page's message box what happened, then fetch again what the call changed and put the
// keyboard where the user goes on. The Providers, Accounts and Adapters pages use it; dom.js
// draws the question and the busy button, api.js words the failures.

import { errorText } from './api.js';
import { confirmDialog, showMsg, withBusy } from './dom.js';

/**
 * @typedef {object} Action
 * @property {import('./dom.js').Question} [ask] asked first; a No puts the keyboard back on the
 *   button and does nothing else
 * @property {string} busy the button's label while the call runs, e.g. `Deleting…`
 * @property {() => Promise<unknown>} call the API call (and what the page forgets with it)
 * @property {HTMLElement} msg the page's message box
 * @property {string} done said when the call succeeded
 * @property {string} failed said, with the gateway's reason, when it failed: `Could not …`
 * @property {(error: unknown) => string} [hint] added after that reason, e.g. what to do next
 * @property {() => Promise<unknown>} [reload] fetches what the call changed, success or not
 * @property {() => void} [after] then: where the keyboard goes
 */

/**
 * Runs `action` for its button `btn`.
 * @param {HTMLButtonElement} btn
 * @param {Action} action
 */
export async function runAction(btn, { ask, busy, call, msg, done, failed, hint, reload, after }) {
  if (ask && !(await confirmDialog(ask))) {
    btn.focus();
    return;
  }
  await withBusy(btn, busy, async () => {
    try {
      await call();
      showMsg(msg, done, 'ok');
    } catch (e) {
      showMsg(msg, `${failed}: ${errorText(e)}${hint ? hint(e) : ''}`);
    }
  });
  await reload?.();
  after?.();
}
