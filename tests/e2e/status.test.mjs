// The call's live status on the page (docs/PAGE.md): after "Call initiated" the page reads
// GET /api/calls/{call_id} with its status token, and the providers' signed webhooks, posted
// here, move the call on. Every wait is for a text, a request or a response; the page's own
// clock is only jumped (Playwright's clock) where minutes would otherwise pass.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, phonePage, screenshot, startServer } from './harness.mjs';
import {
  ELEVENLABS, LIVEKIT, elevenlabsTranscription, livekitEvent, postElevenlabs, postLivekit,
} from './providers.mjs';

const TEST_TIMEOUT_MS = 90_000;

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const isStartCall = (response) =>
  response.url().endsWith('/api/start_call') && response.request().method() === 'POST';
const isStatusRead = (request) => new URL(request.url()).pathname.startsWith('/api/calls/');

/** Fills the form, presses Call me, and returns start_call's JSON answer. */
async function startCall(page, number) {
  await page.getByLabel('Phone number').fill(number);
  await page.getByLabel(/Your name/).fill('Maria');
  const [response] = await Promise.all([
    page.waitForResponse(isStartCall),
    page.getByRole('button', { name: 'Call me' }).click(),
  ]);
  assert.equal(response.status(), 200);
  const body = await response.json();
  assert.match(body.status_token, /^[A-Za-z0-9_-]{43}$/);
  await page.locator('#outcome').filter({ hasText: body.call_id }).waitFor();
  return body;
}

/** Waits until the status region shows `text`, and returns its whole text. */
async function status(page, text) {
  const region = page.locator('#call-status');
  await region.filter({ hasText: text }).waitFor();
  return region.innerText();
}

/** Waits until the page has dealt with its last status read (the region is no longer busy). */
const settled = (page) => page.locator('#call-status[aria-busy="false"]').waitFor({ state: 'attached' });

/**
 * Jumps the page's clock by `ms` once the page has dealt with its last read, and returns the
 * read that follows.
 */
async function readAfter(page, ms) {
  await settled(page);
  const [request] = await Promise.all([page.waitForRequest(isStatusRead), page.clock.fastForward(ms)]);
  return request;
}

/**
 * Jumps the page's clock by `ms` and proves no status read followed: a request the page sends
 * after the jump (a health check) comes back, and the reads counted are still `reads()`.
 */
async function noReadWithin(page, ms, reads) {
  await settled(page);
  const before = reads();
  await page.clock.fastForward(ms);
  assert.equal(await page.evaluate(() => fetch('/api/health').then((r) => r.status)), 200);
  assert.equal(reads(), before, `no status read within ${ms} ms`);
}

test('the page follows a call: initiated, ringing, in call, ended (signed LiveKit events)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const server = await startServer(LIVEKIT);
  t.after(() => server.stop());
  const page = await phonePage(browser);
  t.after(() => page.context().close());
  const reads = [];
  page.on('request', (request) => { if (isStatusRead(request)) reads.push(request); });
  await page.goto(`${server.base}/`);

  const region = page.locator('#call-status');
  assert.equal(await region.getAttribute('role'), 'status');
  assert.equal(await region.getAttribute('aria-live'), 'polite');
  assert.equal(await region.getAttribute('aria-atomic'), 'true');

  const call = await startCall(page, '+351 912 345 678');
  assert.match(await status(page, 'Placing your call'), /call status/i);
  const first = await page.waitForResponse((response) => isStatusRead(response.request()));
  assert.equal(first.status(), 200);
  assert.equal((await first.json()).status, 'initiated');
  await screenshot(page, '12-status-initiated');

  const steps = [
    [livekitEvent('participant_joined', call.call_id, (e) => { e.participant.attributes['sip.callStatus'] = 'ringing'; }), 'Ringing…', 'ringing', '13-status-ringing'],
    [livekitEvent('participant_joined_active', call.call_id), 'In call', 'in_progress', '14-status-in-call'],
    [livekitEvent('participant_left', call.call_id), 'Call ended', 'completed', '15-status-ended'],
  ];
  for (const [body, text, state, shot] of steps) {
    await postLivekit(server, body);
    await status(page, text);
    assert.equal(await region.getAttribute('data-status'), state);
    await screenshot(page, shot);
  }
  const ended = await region.innerText();
  assert.match(ended, /Thank you/);
  assert.doesNotMatch(ended, /lasted/, 'LiveKit reports no duration: none is made up');
  assert.equal(await region.getAttribute('data-tone'), 'ok');
  assert.match(await page.locator('#outcome').innerText(), /Call initiated/, '"Call initiated" stays above');

  // Every read: GET of the call's own path, the token only in X-Status-Token.
  assert.ok(reads.length >= 4, `${reads.length} reads`);
  for (const request of reads) {
    assert.equal(request.method(), 'GET');
    assert.equal(request.url(), `${server.base}/api/calls/${call.call_id}`);
    assert.ok(!request.url().includes(call.status_token), 'never the token in the URL');
    assert.equal(request.headers()['x-status-token'], call.status_token);
  }
  const changes = server.logged('Call status changed').map((l) => l.status);
  assert.deepEqual(changes, ['ringing', 'in_progress', 'completed']);
  assert.deepEqual(page.problems, []);
});

test('a busy line and a failed call say so, an ElevenLabs report gives the duration, and polling stops at the end', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const server = await startServer({ ...LIVEKIT, ...ELEVENLABS });
  t.after(() => server.stop());
  const page = await phonePage(browser, { colorScheme: 'dark' });
  t.after(() => page.context().close());
  await page.clock.install();
  let reads = 0;
  page.on('request', (request) => { if (isStatusRead(request)) reads += 1; });
  await page.goto(`${server.base}/`);
  const region = page.locator('#call-status');

  // Busy: LiveKit's participant leaves rejected (SIP 486).
  const busy = await startCall(page, '+351 912 345 678');
  await status(page, 'Placing your call');
  await postLivekit(server, livekitEvent('participant_left_busy', busy.call_id));
  const busyText = await status(page, 'Your line was busy');
  assert.match(busyText, /did not go through/);
  assert.equal(await region.getAttribute('data-tone'), 'bad');
  await screenshot(page, '16-status-busy');
  // A final status: no read follows, however long the page stays open.
  await noReadWithin(page, 10 * 60_000, () => reads);

  // Failed: the participant leaves while still dialing, with no reason (a trunk failure). A new
  // submission replaces the old call's status.
  const failed = await startCall(page, '+351 912 345 001');
  await status(page, 'Placing your call');
  assert.doesNotMatch(await region.innerText(), /busy/);
  await postLivekit(server, livekitEvent('participant_left_busy', failed.call_id, (e) => { delete e.participant.disconnectReason; }));
  assert.match(await status(page, 'The call could not be completed'), /another call later/);
  await screenshot(page, '17-status-failed');

  // Completed with a duration: ElevenLabs' post-call transcription says 83 s.
  const done = await startCall(page, '+351 912 345 002');
  await status(page, 'Placing your call');
  await postElevenlabs(server, elevenlabsTranscription(done.call_id, 83));
  const ended = await status(page, 'Call ended');
  assert.match(ended, /The call lasted 1:23/);
  assert.equal(await region.locator('time').getAttribute('datetime'), 'PT1M23S');
  assert.equal(await region.locator('.visually-hidden').innerText(), '1 minute 23 seconds', 'read out in words');
  await screenshot(page, '18-status-ended-duration');

  assert.deepEqual(server.logged('Call status changed').map((l) => l.status), ['busy', 'failed', 'completed']);
  assert.deepEqual(page.problems, []);
});

test('status polling waits out a 429, rides out network errors, and stops calmly on a 404, repeated failures or after 10 minutes', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const server = await startServer(LIVEKIT);
  t.after(() => server.stop());
  const page = await phonePage(browser);
  t.after(() => page.context().close());
  await page.clock.install();
  await page.goto(`${server.base}/`);
  const region = page.locator('#call-status');

  // What the next status reads meet, in order; then the real server answers.
  const plan = [];
  let reads = 0;
  await page.route('**/api/calls/**', async (route) => {
    reads += 1;
    const next = plan.shift();
    if (next === undefined) return route.continue();
    if (next === 'abort') return route.abort('internetdisconnected');
    return route.fulfill({
      status: next.status,
      headers: { 'Content-Type': 'application/json', ...next.headers },
      body: JSON.stringify({ error: { code: next.code, message: 'x' }, request_id: '00000000-0000-4000-8000-00000000000f' }),
    });
  });

  // 1. A 429 with Retry-After: 30: nothing for 28 s (not every 2 s), then the page reads again.
  plan.push({ status: 429, code: 'rate_limited', headers: { 'Retry-After': '30' } });
  const call = await startCall(page, '+351 912 345 678');
  await status(page, 'Placing your call');
  await page.waitForResponse((response) => isStatusRead(response.request()) && response.status() === 429);
  await noReadWithin(page, 28_000, () => reads);
  await readAfter(page, 2_500);
  await status(page, 'Placing your call');

  // 2. Two reads fail (the network drops): the page keeps its status, reads again, and the
  // ringing LiveKit reports is shown.
  plan.push('abort', 'abort');
  await readAfter(page, 2_000); // fails; the next read comes after 2 s
  await readAfter(page, 2_000); // fails; the next after 4 s
  assert.match(await region.innerText(), /Placing your call/, 'no alarm for a dropped read');
  await postLivekit(server, livekitEvent('participant_joined', call.call_id, (e) => { e.participant.attributes['sip.callStatus'] = 'ringing'; }));
  await readAfter(page, 4_000);
  await status(page, 'Ringing…');

  // 3. A 404 (the status cannot be read any more): the page says so and stops reading.
  plan.push({ status: 404, code: 'not_found' });
  await readAfter(page, 2_000);
  const gone = await status(page, 'Call status unavailable');
  assert.match(gone, /If your phone rings, just answer it/);
  assert.equal(await region.getAttribute('data-tone'), 'quiet');
  await screenshot(page, '19-status-unavailable');
  await noReadWithin(page, 10 * 60_000, () => reads);

  // 4. Every read fails: after five tries (2, 4, 8 and 16 s apart) the page stops, calmly.
  await startCall(page, '+351 912 345 001');
  await status(page, 'Placing your call');
  plan.push('abort', 'abort', 'abort', 'abort', 'abort');
  for (const wait of [2_000, 2_000, 4_000, 8_000, 16_000]) await readAfter(page, wait);
  const lost = await status(page, 'Call status unavailable for now');
  assert.match(lost, /The call itself is not affected/);
  assert.equal(plan.length, 0);
  await noReadWithin(page, 10 * 60_000, () => reads);

  // 5. A call that stays "initiated" (dry run): after 10 minutes the page stops following it.
  await startCall(page, '+351 912 345 002');
  await status(page, 'Placing your call');
  await page.waitForResponse((response) => isStatusRead(response.request()) && response.status() === 200);
  await settled(page);
  await page.clock.fastForward(10 * 60_000);
  const bounded = await status(page, 'No more status updates');
  assert.match(bounded, /after 10 minutes\. The call itself is not affected/);
  await screenshot(page, '20-status-bounded');
  await noReadWithin(page, 10 * 60_000, () => reads);
  assert.deepEqual(page.problems, []);
});
