// The bot check on the page (docs/API.md §16, docs/PAGE.md): the page learns from
// /api/health that the check is on, loads the widget (a stand-in served only by these tests,
// from the local Siteverify fake's origin, which the local server's CSP then allows), waits for
// its token, sends it, and shows what a refused or failed check means. Every wait is for a
// text, a request or a response.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, phonePage, screenshot, startServer, startTurnstileFake } from './harness.mjs';

const TEST_TIMEOUT_MS = 90_000;
const NUMBER = '+351 912 345 678';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const isStartCall = (request) =>
  request.url().endsWith('/api/start_call') && request.method() === 'POST';

/** The local server with the bot check against the fake, and a page on it with the widget shown. */
async function setUp(t) {
  const fake = await startTurnstileFake();
  t.after(() => fake.close());
  const server = await startServer(fake.vars);
  t.after(() => server.stop());
  const page = await phonePage(browser);
  t.after(() => page.context().close());
  const sent = [];
  page.on('request', (request) => { if (isStartCall(request)) sent.push(request); });
  await page.goto(`${server.base}/`);
  await page.getByRole('group', { name: 'Quick check' }).waitFor();
  await page.getByRole('button', { name: 'Pass the stand-in check' }).waitFor();
  await page.getByLabel('Phone number').fill(NUMBER);
  return { fake, server, page, sent };
}

/** Presses Call me and returns start_call's answer. */
async function callMe(page) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => isStartCall(r.request())),
    page.getByRole('button', { name: 'Call me' }).click(),
  ]);
  return response;
}

test('the page sends the widget token, and Siteverify gets it with the secret and the address', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { fake, server, page, sent } = await setUp(t);
  assert.equal(fake.scriptLoads, 1, 'the widget script was loaded once');

  // No token yet: the page says what to do and sends nothing.
  await page.getByRole('button', { name: 'Call me' }).click();
  await page.locator('#bot-check-error').filter({ hasText: 'Complete the quick check above' }).waitFor();
  assert.equal(sent.length, 0, 'a request without a token was sent');

  await page.getByRole('button', { name: 'Pass the stand-in check' }).click();
  const response = await callMe(page);
  assert.equal(response.status(), 200);
  const body = await response.json();
  await page.locator('#outcome').filter({ hasText: 'Call initiated' }).waitFor();

  const token = JSON.parse(sent[0].postData())['cf-turnstile-response'];
  assert.match(token, /^pass~localhost~start_call~/, 'the widget rendered with the action start_call');
  assert.equal(fake.requests.length, 1);
  const verify = fake.requests[0];
  assert.equal(verify.contentType, 'application/json');
  assert.deepEqual(Object.keys(verify.body).sort(), ['idempotency_key', 'remoteip', 'response', 'secret']);
  assert.equal(verify.body.response, token, 'the token reached Siteverify');
  assert.equal(verify.body.secret, fake.vars.TURNSTILE_SECRET_KEY);
  assert.equal(verify.body.remoteip, '127.0.0.1');
  assert.match(verify.body.idempotency_key, UUID);
  assert.ok(body.call_id);
  await screenshot(page, 'bot-check-passed');

  // Spent: the widget was reset, and the next press waits for a new token.
  await page.locator('#bot-check-widget[data-resets="1"]').waitFor({ state: 'attached' });
  await page.getByRole('button', { name: 'Call me' }).click();
  await page.locator('#bot-check-error').filter({ hasText: 'Complete the quick check above' }).waitFor();
  assert.equal(sent.length, 1);

  // The CSP let the stand-in's script run, and nothing was refused.
  assert.deepEqual(page.problems, []);
  // Neither the token nor the secret is ever logged.
  const logs = JSON.stringify(server.logs);
  assert.ok(!logs.includes(token), 'the token was logged');
  assert.ok(!logs.includes(fake.vars.TURNSTILE_SECRET_KEY), 'the secret was logged');
});

test('a token Siteverify refuses shows its message, and a new check follows', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { fake, server, page } = await setUp(t);
  await page.getByRole('button', { name: 'Get a token Siteverify refuses' }).click();
  const response = await callMe(page);
  assert.equal(response.status(), 403);
  assert.equal((await response.json()).error.code, 'captcha_invalid');
  const outcome = page.locator('#outcome');
  await outcome.filter({ hasText: 'Please complete the quick check again' }).waitFor();
  assert.match(await outcome.innerText(), /failed or expired/);
  assert.equal(fake.requests.length, 1, 'the refused token reached Siteverify');
  assert.match(fake.requests[0].body.response, /^refused~/);
  await page.locator('#bot-check-widget[data-resets="1"]').waitFor({ state: 'attached' });
  await screenshot(page, 'bot-check-refused');
  const refused = await server.waitForLog((l) => l.message === 'Bot check failed', 'Bot check failed');
  assert.equal(refused.reason, 'rejected');

  // The new check passes, and the call goes through.
  await page.getByRole('button', { name: 'Pass the stand-in check' }).click();
  assert.equal((await callMe(page)).status(), 200);
  assert.deepEqual(page.problems, []);
});

test('a failed challenge says so and can be tried again; an expired token is not sent', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { fake, page, sent } = await setUp(t);
  const error = page.locator('#bot-check-error');
  const retry = page.getByRole('button', { name: 'Try the check again' });

  await page.getByRole('button', { name: 'Fail the stand-in check' }).click();
  await error.filter({ hasText: 'The check could not be completed.' }).waitFor();
  await retry.waitFor();
  await screenshot(page, 'bot-check-failed');
  await retry.click();
  await page.locator('#bot-check-widget[data-resets="1"]').waitFor({ state: 'attached' });
  assert.equal(await error.isHidden(), true);
  assert.equal(await retry.isHidden(), true);

  await page.getByRole('button', { name: 'Pass the stand-in check' }).click();
  await page.getByRole('button', { name: 'Expire the stand-in token' }).click();
  await error.filter({ hasText: 'The check expired and is being renewed' }).waitFor();
  await page.getByRole('button', { name: 'Call me' }).click();
  await error.filter({ hasText: 'Complete the quick check above' }).waitFor();
  assert.equal(sent.length, 0, 'an expired token was sent');
  assert.equal(fake.requests.length, 0);
  assert.deepEqual(page.problems, []);
});
