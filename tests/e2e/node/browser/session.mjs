// What every browser script shares with its Python test (tests/e2e/browser.py): the scenario
// from argv, Debian's Chromium launched headless the way CI can run it, and a line-at-a-time
// channel on stdin for the test's go-aheads. `close()` ends both, so the script can exit.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

/** Parses the scenario, launches Chromium, and opens the stdin channel. */
export async function open() {
  const args = JSON.parse(process.argv[2]);
  const lines = createInterface({ input: process.stdin });
  const browser = await chromium.launch({
    executablePath: args.chromium,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  return {
    args,
    browser,
    nextLine: () => new Promise((resolve) => lines.once('line', resolve)),
    close: async () => {
      await browser.close();
      lines.close();
    },
  };
}
