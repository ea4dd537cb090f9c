// Provider events as LiveKit and ElevenLabs send them (docs/API.md §15.3, §15.4), signed here
// with visibly fake credentials: the bodies are the fixtures of tests/fixtures/providers, for
// the call the page started.

import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'providers');
/** The call id the LiveKit fixtures belong to (participant `phone-<call_id>`, room `call-<call_id>`). */
const LIVEKIT_FIXTURE_CALL = '00000000-0000-4000-8000-000000000002';

/** A dry-run server with LiveKit configured, so that LiveKit webhooks verify. */
export const LIVEKIT = {
  CALL_PROVIDER: 'dry-run',
  LIVEKIT_URL: 'http://127.0.0.1:9',
  LIVEKIT_API_KEY: 'APItestFAKEkey',
  LIVEKIT_API_SECRET: 'test-livekit-secret-FAKE-0123456789abcdef',
  SIP_TRUNK_ID: 'ST_test_trunk',
  CALLER_ID: '+351211234567',
};
/** The ElevenLabs webhook secret, for post-call webhooks. */
export const ELEVENLABS = { ELEVENLABS_WEBHOOK_SECRET: 'wsec_test-elevenlabs-FAKE-0123456789abcdef' };

/**
 * A LiveKit fixture (`participant_joined`, `participant_left_busy`, ...) rewritten for `callId`;
 * `edit` may change the parsed event (the SIP participant's attributes, its disconnect reason).
 */
export function livekitEvent(fixture, callId, edit = () => {}) {
  const text = readFileSync(path.join(FIXTURES, 'livekit', `${fixture}.json`), 'utf8');
  const event = JSON.parse(text.replaceAll(LIVEKIT_FIXTURE_CALL, callId));
  edit(event);
  return JSON.stringify(event);
}

/** LiveKit's `Authorization`: an HS256 JWT by the API key, with the body's SHA-256 as `sha256`. */
function livekitToken(body) {
  const b64url = (value) => Buffer.from(value).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({
    iss: LIVEKIT.LIVEKIT_API_KEY,
    nbf: now - 10,
    exp: now + 300,
    sha256: createHash('sha256').update(body).digest('base64'),
    video: {},
  }));
  const signature = createHmac('sha256', LIVEKIT.LIVEKIT_API_SECRET).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}

/** Posts a signed LiveKit webhook to the server and checks it was accepted. */
export async function postLivekit(server, body) {
  const response = await fetch(`${server.base}/api/webhooks/livekit`, {
    method: 'POST',
    headers: { Authorization: livekitToken(body), 'Content-Type': 'application/webhook+json' },
    body,
  });
  assert.equal(response.status, 200, await response.clone().text());
  assert.deepEqual(await response.json(), { received: true });
}

/** The ElevenLabs post-call transcription fixture for `callId`, lasting `durationSecs`. */
export function elevenlabsTranscription(callId, durationSecs) {
  const event = JSON.parse(readFileSync(path.join(FIXTURES, 'elevenlabs', 'post_call_transcription.json'), 'utf8'));
  event.data.conversation_initiation_client_data.dynamic_variables.call_id = callId;
  event.data.metadata.call_duration_secs = durationSecs;
  return JSON.stringify(event);
}

/** Posts an ElevenLabs webhook signed `t=<unix>,v0=<hex HMAC-SHA256 of "t.body">`. */
export async function postElevenlabs(server, body) {
  const t = Math.floor(Date.now() / 1000);
  const v0 = createHmac('sha256', ELEVENLABS.ELEVENLABS_WEBHOOK_SECRET).update(`${t}.${body}`).digest('hex');
  const response = await fetch(`${server.base}/api/webhooks/elevenlabs`, {
    method: 'POST',
    headers: { 'ElevenLabs-Signature': `t=${t},v0=${v0}`, 'Content-Type': 'application/json' },
    body,
  });
  assert.equal(response.status, 200, await response.clone().text());
}
