// What the end-to-end tests share: the real local server binary, a browser, tiny origin servers.
//
// Nothing here sleeps to synchronise: every wait is for an event (a line on the server's
// stdout, a response, a text in the page), with a deadline that only turns a hang into a
// failure.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SCREENSHOTS = path.join(HERE, 'screenshots');
const PUBLIC = path.join(HERE, '..', '..', 'public');
const PAGE_FILES = ['index.html', 'app.js', 'style.css'];
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** A phone-sized screen (CSS pixels of a common mid-size phone). */
export const PHONE = { width: 390, height: 844 };
const DEADLINE_MS = 30_000;

/** The `chamada` binary that `cargo build` made. */
export function binary() {
  if (process.env.CHAMADA_BIN) return process.env.CHAMADA_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/chamada/target');
  return path.join(target, 'debug', 'chamada');
}

/**
 * Starts the real local server on a free port (PORT=0) with exactly these variables, in an
 * empty temporary directory (so no developer's .env.local is read), and reads its address
 * from its start-up line. Every other stdout line is a JSON log line, kept in `logs`.
 */
export async function startServer(vars = {}) {
  const bin = binary();
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run cargo build first (scripts/e2e does)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chamada-e2e-'));
  const child = spawn(bin, [], {
    cwd: dir,
    env: { PATH: process.env.PATH, PORT: '0', ...vars },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr += chunk; });

  const logs = [];
  const waiters = new Set();
  const record = (text) => {
    let entry;
    try {
      entry = JSON.parse(text);
    } catch {
      entry = { message: text, unparsed: true };
    }
    logs.push(entry);
    for (const waiter of waiters) waiter();
  };
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stdout });
  // The start-up line comes once the app is built; problems found while building it (an
  // incomplete configuration) are logged before it.
  let base;
  try {
    base = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start-up line within ${DEADLINE_MS} ms\n${stderr}`)), DEADLINE_MS);
      child.once('error', (error) => { clearTimeout(timer); reject(error); });
      exited.then((code) => { clearTimeout(timer); reject(new Error(`chamada exited (${code}) before listening\n${stderr}`)); });
      lines.on('line', (text) => {
        if (base !== undefined) return record(text);
        const match = /^Chamada listening on (http:\/\/\S+) /.exec(text);
        if (!match) return record(text);
        clearTimeout(timer);
        resolve(match[1]);
      });
    });
    // A binary built from another tree (a shared target directory) has no page, or another
    // version of it (the page is embedded in the binary): say so plainly.
    const index = await fetch(`${base}/`);
    if (!(index.headers.get('content-type') || '').startsWith('text/html')) {
      throw new Error(`${bin} does not serve the page at / (${index.status}): is it built from this tree?`);
    }
    for (const file of PAGE_FILES) {
      const served = await (await fetch(`${base}/${file}`)).text();
      if (served !== readFileSync(path.join(PUBLIC, file), 'utf8')) {
        throw new Error(`${bin} serves another version of public/${file}: rebuild it from this tree (the page is embedded in the binary)`);
      }
    }
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  return {
    base,
    logs,
    /** The log lines whose message contains `words`. */
    logged(words) {
      return logs.filter((entry) => typeof entry.message === 'string' && entry.message.includes(words));
    },
    /** Waits until a log line satisfies `predicate`, and returns it. */
    waitForLog(predicate, what = 'a log line') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(predicate);
          if (!found) return false;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${what} not logged within ${DEADLINE_MS} ms; logs:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`));
        }, DEADLINE_MS);
        if (!check()) waiters.add(check);
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, headless, with a fresh profile (Playwright makes a new user-data-dir). */
export function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: scripts/e2e installs Debian's chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A new page on a phone-sized screen; records page errors and CSP violations. */
export async function phonePage(browser, options = {}) {
  const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, hasTouch: true, isMobile: true, ...options });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (/Content.Security.Policy|Refused to/i.test(message.text())) page.problems.push(`console: ${message.text()}`);
  });
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * A tiny site on another origin (127.0.0.1, a port of its own) whose page asks the Chamada
 * API at `site.api` (set once the server runs; its origin must be known first, for
 * ALLOWED_ORIGINS) for a call with `fetch`, as another site's script would, and writes what
 * happened into #result.
 */
export async function startOtherSite(number) {
  const site = { api: null, origin: null, close: null };
  const page = (api) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another site</title></head>
<body>
<h1>Another site</h1>
<p>This page is served from another origin and asks the Chamada API for a call.</p>
<button id="go" type="button">Ask Chamada for a call</button>
<pre id="result" aria-live="polite"></pre>
<script>
const API = ${JSON.stringify(api)};
document.getElementById('go').addEventListener('click', async () => {
  const out = document.getElementById('result');
  try {
    const response = await fetch(API + '/api/start_call', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ phone_number: ${JSON.stringify(number)} }),
    });
    const data = await response.json();
    out.textContent = 'answered ' + response.status + ' ' + data.status + ' ' + data.call_id;
  } catch (error) {
    out.textContent = 'fetch failed: ' + error.name + ': ' + error.message;
  }
});
</script>
</body></html>`;
  const server = http.createServer((request, response) => {
    const found = request.url === '/' && site.api !== null;
    response.writeHead(found ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8' });
    response.end(found ? page(site.api) : 'not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  site.origin = `http://127.0.0.1:${server.address().port}`;
  site.close = () => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  });
  return site;
}

/**
 * Cloudflare's side of the bot check, on a port of its own (docs/API.md §16): the stand-in
 * widget (`stand-in/turnstile.js`) at the script path, and a Siteverify that answers the
 * stand-in's tokens as Cloudflare would — `pass~<host>~<action>~<n>` passes for that host and
 * action, solved now; `refused~…` is `invalid-input-response`; a token verified before (with
 * another idempotency key) is `timeout-or-duplicate`. Every Siteverify body is kept.
 */
export async function startTurnstileFake() {
  const script = readFileSync(path.join(HERE, 'stand-in', 'turnstile.js'), 'utf8');
  const fake = { requests: [], scriptLoads: 0, origin: null, close: null };
  const spent = new Map();
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, 'http://stand-in');
    if (request.method === 'GET' && url.pathname === '/turnstile/v0/api.js') {
      fake.scriptLoads += 1;
      response.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      response.end(script);
      return;
    }
    if (request.method !== 'POST' || url.pathname !== '/turnstile/v0/siteverify') {
      response.writeHead(404);
      response.end();
      return;
    }
    let raw = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => { raw += chunk; });
    request.on('end', () => {
      let body = null;
      try { body = JSON.parse(raw); } catch { body = null; }
      fake.requests.push({ contentType: request.headers['content-type'], body });
      const token = body && typeof body.response === 'string' ? body.response : '';
      let answer;
      if (spent.has(token) && spent.get(token).key !== body.idempotency_key) {
        answer = { success: false, 'error-codes': ['timeout-or-duplicate'] };
      } else if (spent.has(token)) {
        answer = spent.get(token).answer;
      } else {
        const [kind, host, action] = token.split('~');
        answer = kind === 'pass'
          ? { success: true, 'error-codes': [], challenge_ts: new Date().toISOString(), hostname: host, action, cdata: '' }
          : { success: false, 'error-codes': ['invalid-input-response'] };
        spent.set(token, { key: body && body.idempotency_key, answer });
      }
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.origin = `http://127.0.0.1:${server.address().port}`;
  fake.vars = {
    TURNSTILE_SECRET_KEY: 'test-turnstile-secret-FAKE-e2e',
    TURNSTILE_SITE_KEY: 'e2e-stand-in-site-key',
    TURNSTILE_VERIFY_URL: `${fake.origin}/turnstile/v0/siteverify`,
    TURNSTILE_SCRIPT_URL: `${fake.origin}/turnstile/v0/api.js`,
  };
  fake.close = () => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  });
  return fake;
}
