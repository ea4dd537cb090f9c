// The call-me page in headless Chromium against the real local server binary (dry-run provider,
// in-memory limits: 3 calls per address per 24 h).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, phonePage, screenshot, startServer } from './harness.mjs';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const isStartCall = (response) =>
  response.url().endsWith('/api/start_call') && response.request().method() === 'POST';

/** Waits until the aria-live outcome holds `text`, and returns its whole text. */
async function outcome(page, text) {
  const region = page.locator('#outcome');
  await region.filter({ hasText: text }).waitFor();
  return region.innerText();
}

/** Submits the form (with the button) and returns the API's answer and its JSON. */
async function submit(page) {
  const [response] = await Promise.all([
    page.waitForResponse(isStartCall),
    page.getByRole('button', { name: 'Call me' }).click(),
  ]);
  return { response, body: await response.json() };
}

async function fill(page, number, name = '') {
  await page.getByLabel('Phone number').fill(number);
  await page.getByLabel(/Your name/).fill(name);
}

test('the page calls, refuses a premium-rate and an invalid number, and limits the fourth call', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const page = await phonePage(browser);
  t.after(() => page.context().close());

  await page.goto(`${server.base}/`);
  await screenshot(page, '01-empty');
  assert.equal(await page.title(), 'Chamada.AI: get a call from our voice agent');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.equal(overflow, 0, 'no horizontal scrolling on a phone-sized screen');

  // 1. A valid number, by keyboard alone: type, Tab to the name, Enter submits.
  await page.getByLabel('Phone number').focus();
  await page.keyboard.type('+351 912 345 678');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'name');
  await page.keyboard.type('Maria');
  const [first] = await Promise.all([page.waitForResponse(isStartCall), page.keyboard.press('Enter')]);
  assert.equal(first.status(), 200);
  const firstBody = await first.json();
  assert.match(firstBody.call_id, UUID);
  const shown = await outcome(page, firstBody.call_id);
  assert.match(shown, /Call initiated/);
  assert.match(shown, /dry run/i);
  assert.ok(first.request().headers()['idempotency-key'].match(UUID), 'a UUID Idempotency-Key');
  await server.waitForLog((l) => l.message === 'Call initiated', 'Call initiated');
  await screenshot(page, '02-initiated');

  // 2. A premium-rate number: refused, nothing counted or dialled, focus back on the number.
  await fill(page, '+351760123456');
  const premium = await submit(page);
  assert.equal(premium.response.status(), 422);
  assert.equal(premium.body.error.code, 'destination_not_allowed');
  const refusal = await outcome(page, 'We cannot call this number');
  assert.match(refusal, /premium rate/);
  assert.equal(await page.locator('#phone-error').innerText(), 'We cannot call this number', 'said beside the field');
  assert.equal(await page.getByLabel('Phone number').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'phone');
  await screenshot(page, '03-destination-not-allowed');

  // 3. An invalid number.
  await fill(page, '+351 123');
  const invalid = await submit(page);
  assert.equal(invalid.body.error.code, 'invalid_phone_number');
  await outcome(page, 'That number does not look right');
  assert.equal(await page.getByLabel('Phone number').getAttribute('aria-invalid'), 'true');
  await screenshot(page, '04-invalid-number');

  // 4. Two more calls (3 in all from this browser's address), then the fourth is limited.
  for (const number of ['+351 912 345 001', '+351 912 345 002']) {
    await fill(page, number, 'Maria');
    const { response, body } = await submit(page);
    assert.equal(response.status(), 200);
    assert.match(await outcome(page, body.call_id), /Call initiated/);
  }
  await fill(page, '+351 912 345 003', 'Maria');
  const limited = await submit(page);
  assert.equal(limited.response.status(), 429);
  const retryAfter = Number(limited.response.headers()['retry-after']);
  assert.ok(retryAfter > 86_000 && retryAfter <= 86_400, `Retry-After ${retryAfter}`);
  const wait = await outcome(page, 'Too many call requests');
  assert.match(wait, /try again in (24 h|23 h \d+ min) \(around /, wait);
  await screenshot(page, '05-rate-limited');

  assert.equal(server.logged('Call initiated').length, 3, 'three calls placed');
  await server.waitForLog((l) => l.message?.includes('Rate limit exceeded'), 'Rate limit exceeded');
  assert.deepEqual(page.problems, []);
});

test('busy state, then a network failure whose retry reuses the Idempotency-Key and rings once', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const page = await phonePage(browser);
  t.after(() => page.context().close());
  await page.goto(`${server.base}/`);

  // The first request really reaches the server (the call is placed), but the browser is
  // told the connection failed, as when a mobile network drops the answer.
  const keys = [];
  let held;
  const release = new Promise((resolve) => { held = resolve; });
  let reached;
  const requestHeld = new Promise((resolve) => { reached = resolve; });
  let placed;
  await page.route('**/api/start_call', async (route) => {
    keys.push(route.request().headers()['idempotency-key']);
    if (keys.length === 1) {
      reached();
      await release;
      placed = await (await route.fetch()).json();
      await route.abort('internetdisconnected');
    } else {
      await route.continue();
    }
  });

  await fill(page, '+351 912 345 678', 'Maria');
  await page.getByRole('button', { name: 'Call me' }).click();
  await requestHeld;
  const button = page.locator('#submit');
  assert.equal(await button.isDisabled(), true, 'disabled while busy');
  assert.equal(await button.getAttribute('aria-busy'), 'true');
  await outcome(page, 'Requesting your call');
  await screenshot(page, '06-busy');
  held();

  const failure = await outcome(page, 'Could not reach the service');
  assert.match(failure, /will not be called twice/);
  assert.equal(await button.isDisabled(), false);
  assert.equal(await button.getAttribute('aria-busy'), 'false');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'submit', 'focus back on the button');
  await screenshot(page, '07-network-failure');
  assert.equal(placed.status, 'initiated');

  // Retry: the same key, so the server replays the first answer instead of calling again.
  const retry = await submit(page);
  assert.equal(keys.length, 2);
  assert.equal(keys[1], keys[0], 'the retry resends the same Idempotency-Key');
  assert.equal(retry.response.headers()['idempotent-replayed'], 'true');
  assert.equal(retry.body.call_id, placed.call_id);
  await outcome(page, placed.call_id);
  assert.equal(server.logged('Call initiated').length, 1, 'one call, not two');

  // A new submission (another number) gets a new key.
  await fill(page, '+351 912 345 001');
  const next = await submit(page);
  assert.equal(next.response.status(), 200);
  assert.notEqual(keys[2], keys[0], 'a new submission, a new key');
  assert.deepEqual(page.problems, []);
});

test('a service that cannot place calls says so (503), in dark mode', async (t) => {
  // An unknown region makes the configuration incomplete: start_call answers 503 misconfigured.
  const server = await startServer({ ALLOWED_COUNTRIES: 'PT,ZZ' });
  t.after(() => server.stop());
  const page = await phonePage(browser, { colorScheme: 'dark' });
  t.after(() => page.context().close());
  await page.goto(`${server.base}/`);

  await fill(page, '+351 912 345 678');
  const { response, body } = await submit(page);
  assert.equal(response.status(), 503);
  assert.equal(body.error.code, 'misconfigured');
  const text = await outcome(page, 'Service unavailable');
  assert.match(text, /not fully configured/);
  assert.match(text, new RegExp(`Reference: ${body.request_id}`));
  await screenshot(page, '08-service-unavailable');
  assert.equal(server.logged('Call initiated').length, 0);
  assert.deepEqual(page.problems, []);
});

test('an empty or national-format number is caught before any request', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const page = await phonePage(browser);
  t.after(() => page.context().close());
  await page.goto(`${server.base}/`);
  let requests = 0;
  page.on('request', (request) => { if (request.url().endsWith('/api/start_call')) requests += 1; });

  await page.getByRole('button', { name: 'Call me' }).click();
  await page.locator('#phone-error', { hasText: 'Enter your phone number' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'phone');

  await fill(page, '912 345 678');
  await page.keyboard.press('Enter');
  await page.locator('#phone-error', { hasText: 'Start with + and your country code' }).waitFor();
  assert.equal(await page.getByLabel('Phone number').getAttribute('aria-invalid'), 'true');
  await screenshot(page, '09-missing-country-code');
  assert.equal(requests, 0);
  assert.deepEqual(page.problems, []);
});
