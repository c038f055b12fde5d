#!/usr/bin/env node
// Open the demo page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core; no browser
// download), wait until it has detected, save a screenshot and print the page's state as JSON on stdout.
//
// Usage: node js/demo/run_in_chromium.mjs --url URL --screenshot out.png [--timeout-ms 120000]
//        [--chromium /usr/bin/chromium] [--until done|ready]   (ready: the model loaded, no image needed)
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

const args = { chromium: process.env.NANODET_CHROMIUM || '/usr/bin/chromium', 'timeout-ms': '120000', until: 'done' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  if (!argv[i].startsWith('--') || argv[i + 1] === undefined) fail(`bad argument '${argv[i]}'`);
  args[argv[i].slice(2)] = argv[i + 1];
}
if (!args.url || !args.screenshot) fail('--url and --screenshot are required');

const { chromium } = require('playwright-core');
const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update'],
});
const logs = [];
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1000 } });
  page.on('console', (msg) => logs.push(`${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`pageerror: ${err.message}`));
  await page.goto(args.url);
  const timeout = Number.parseInt(args['timeout-ms'], 10);
  await page.waitForFunction((until) => window.nanodetDemo && [until, 'error'].includes(window.nanodetDemo.state),
    args.until, { timeout });
  const state = await page.evaluate(() => ({
    ...window.nanodetDemo,
    status: document.getElementById('status').textContent,
    runtime: document.getElementById('runtime').textContent,
    canvas: [document.getElementById('canvas').width, document.getElementById('canvas').height],
  }));
  await page.screenshot({ path: args.screenshot, fullPage: true });
  process.stdout.write(`${JSON.stringify({ ...state, logs })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ state: 'error', error: String(err.message || err), logs })}\n`);
} finally {
  await browser.close();
}
