#!/usr/bin/env node
// Headless Chromium for validation/runners/chromium_session.py: Debian's /usr/bin/chromium driven by
// playwright-core (no browser download). Reads one JSON command per line on stdin, answers one JSON line each on
// stdout:
//   {"op": "open", "page": P, "url": U}            a new page (its own browser context) at U, until window.nanodetBench
//   {"op": "call", "page": P, "fn": F, "args": [...]}   window.nanodetBench[F](...args) in page P -> {"value": ...}
//   {"op": "close", "page": P}
// Every answer: {"ok": true, ...} or {"ok": false, "error": "...", "logs": [the page's console lines]}.
// Offline: a request to any host but the local server is aborted and listed in the answers' "blocked".
// Flags: SwiftShader for WebGL (headless Chromium has no GPU here: a software renderer, not GPU timings), no
// throttling of pages that are not in front.
//
// Usage: node js/browser/chromium.mjs [--chromium /usr/bin/chromium]
import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const argv = process.argv.slice(2);
const chromiumPath = argv[0] === '--chromium' && argv[1] ? argv[1] : (process.env.NANODET_CHROMIUM || '/usr/bin/chromium');
const FLAGS = ['--headless', '--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
  '--ignore-gpu-blocklist', '--disable-background-networking', '--disable-component-update',
  '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows'];

const { chromium } = require('playwright-core');
const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: FLAGS });
const pages = {};
const blocked = [];

function send(answer) {
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}

async function open(name, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logs = [];
  page.on('console', (msg) => logs.push(`${msg.type()}: ${msg.text()}`.slice(0, 500)));
  page.on('pageerror', (err) => logs.push(`pageerror: ${err.message}`.slice(0, 500)));
  const local = new URL(url).host;
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.host === local || u.protocol === 'blob:' || u.protocol === 'data:') return route.continue();
    blocked.push(u.href);
    return route.abort();
  });
  pages[name] = { context, page, logs };
  await page.goto(url);
  await page.waitForFunction(() => window.nanodetBench && window.nanodetBench.ready, null, { timeout: 60000 });
  return { version: browser.version() };
}

async function handle(cmd) {
  if (cmd.op === 'open') return open(cmd.page, cmd.url);
  const entry = pages[cmd.page];
  if (!entry) throw new Error(`no page '${cmd.page}'`);
  if (cmd.op === 'close') {
    await entry.context.close();
    delete pages[cmd.page];
    return {};
  }
  if (cmd.op === 'call') {
    const value = await entry.page.evaluate(({ fn, args }) => window.nanodetBench[fn](...args),
      { fn: cmd.fn, args: cmd.args || [] });
    return { value };
  }
  throw new Error(`unknown op '${cmd.op}'`);
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
    send({ ok: true, blocked, ...(await handle(cmd)) });
  } catch (err) {
    const logs = cmd && pages[cmd.page] ? pages[cmd.page].logs.slice(-20) : [];
    send({ ok: false, error: String(err && err.message ? err.message : err).split('\n')[0], logs, blocked });
  }
}
await browser.close();
