// CORS in a real browser: another site's script cannot start a call unless its origin is in
// ALLOWED_ORIGINS. The proof that nothing was dispatched is the server's own log.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, screenshot, startOtherSite, startServer } from './harness.mjs';

const NUMBER = '+351912345678';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('a disallowed origin\'s fetch fails and places no call; an allowed origin\'s succeeds', async (t) => {
  const allowed = await startOtherSite(NUMBER);
  t.after(() => allowed.close());
  const foreign = await startOtherSite(NUMBER);
  t.after(() => foreign.close());
  const server = await startServer({ ALLOWED_ORIGINS: allowed.origin });
  t.after(() => server.stop());
  allowed.api = server.base;
  foreign.api = server.base;
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();

  // Disallowed: the preflight is refused (403), so the browser never sends the POST.
  const apiRequests = [];
  page.on('request', (request) => {
    if (request.url().startsWith(`${server.base}/api/`)) apiRequests.push(request.method());
  });
  await page.goto(`${foreign.origin}/`);
  await page.getByRole('button', { name: 'Ask Chamada for a call' }).click();
  const result = page.locator('#result');
  await result.filter({ hasText: 'fetch failed' }).waitFor();
  assert.match(await result.innerText(), /TypeError/);
  const violation = await server.waitForLog(
    (l) => l.message === 'CORS violation' && l.origin === foreign.origin,
    'CORS violation for the foreign origin',
  );
  assert.equal(violation.path, '/api/start_call');
  // The server answered the foreign origin only with 403s (the preflight), never a POST.
  await server.waitForLog((l) => l.message === 'request' && l.status === 403, 'the 403 access line');
  const answered = server.logs.filter((l) => l.message === 'request');
  assert.ok(answered.length > 0 && answered.every((l) => l.method === 'OPTIONS' && l.status === 403),
    JSON.stringify(answered));
  assert.deepEqual(apiRequests, ['POST'], 'the page asked once; the browser stopped it at the preflight');
  assert.equal(server.logged('Call initiated').length, 0, 'no call dispatched');
  await screenshot(page, '10-disallowed-origin');

  // Allowed: the same page from the allowed origin gets its call.
  await page.goto(`${allowed.origin}/`);
  await page.getByRole('button', { name: 'Ask Chamada for a call' }).click();
  await result.filter({ hasText: 'answered' }).waitFor();
  assert.match(await result.innerText(), /^answered 200 initiated [0-9a-f-]{36}$/);
  await server.waitForLog((l) => l.message === 'Call initiated', 'Call initiated');
  assert.equal(server.logged('Call initiated').length, 1);
  await screenshot(page, '11-allowed-origin');
});
