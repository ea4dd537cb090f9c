// Chamada.AI call-me page: sends the form to POST /api/start_call (same origin, no key) and
// tells the visitor what happened in the aria-live region #outcome; then follows the call it
// started (GET /api/calls/{call_id} with the answer's status token) in the live region
// #call-status.
//
// Idempotency-Key: every new submission gets a fresh UUID. When a submission's outcome is
// unknown (the network failed or timed out, or the server says the same request is still in
// progress), pressing "Call me" again with the same number and name resends the same key, so a
// request that did reach the server is replayed instead of ringing the visitor twice. Any
// answer that settles the outcome (success or refusal) or a change in the form starts over
// with a new key.
//
// Call status: every ~2 s, GET /api/calls/{call_id} with the token in the X-Status-Token
// header (never in the URL, which ends up in logs). A 429 waits as long as Retry-After says;
// network errors and 5xx answers are retried with a growing delay, a few times; a 404 (the
// status cannot be read) stops. Polling stops at a final status, at a new submission, or
// after POLL_LIMIT_MS, and each stop says so calmly: the call itself is never affected.
//
// Bot check (docs/API.md §16): at load the page reads GET /api/health; when `bot_check` is
// there it loads the Turnstile script from `script_url` (explicit rendering), renders the
// widget with the site key and the action "start_call", and sends its token as
// `cf-turnstile-response`. "Call me" waits for a token; an expired token is renewed by the
// widget and the visitor told; a failed challenge says so and offers to try again. A token is
// single use: after every answer that spent it the widget is reset. An answer whose outcome is
// unknown keeps it, so the retry (same Idempotency-Key, same token) is verified again for free.
'use strict';

(() => {
  const ENDPOINT = '/api/start_call';
  // Longer than the server's own provider timeout plus the webhook delivery that follows.
  const TIMEOUT_MS = 60000;
  const STATUS_ENDPOINT = '/api/calls/';
  const POLL_MS = 2000;
  const POLL_LIMIT_MS = 10 * 60 * 1000;
  const POLL_TIMEOUT_MS = 10000;
  // Consecutive failed reads (no answer, 5xx, an answer that is not a status) before giving up:
  // retried after 2, 4, 8 and 16 s, so about half a minute of trouble is ridden out.
  const MAX_FAILURES = 5;
  // What the visitor reads for each status (docs/API.md §15). `final`: nothing follows.
  const STATUSES = {
    initiated: { tone: 'live', title: 'Placing your call…', text: 'This updates by itself as the call goes on.' },
    ringing: { tone: 'live', title: 'Ringing…', text: 'Your phone is ringing: answer it to talk to our agent.' },
    in_progress: { tone: 'live', title: 'In call', text: 'You are talking to our agent.' },
    completed: { tone: 'ok', final: true, title: 'Call ended', text: 'Thank you for talking to our agent.' },
    busy: { tone: 'bad', final: true, title: 'Your line was busy', text: 'The call did not go through. You can ask for another call later.' },
    no_answer: { tone: 'bad', final: true, title: 'No answer', text: 'The call was not answered. You can ask for another call later.' },
    failed: { tone: 'bad', final: true, title: 'The call could not be completed', text: 'Something went wrong on the phone line. You can ask for another call later.' },
    canceled: { tone: 'bad', final: true, title: 'Call canceled', text: 'The call was canceled. You can ask for another call later.' },
  };

  const form = document.getElementById('call-form');
  const phone = document.getElementById('phone');
  const name = document.getElementById('name');
  const phoneError = document.getElementById('phone-error');
  const button = document.getElementById('submit');
  const buttonLabel = button.querySelector('.label');
  const outcome = document.getElementById('outcome');
  const callStatus = document.getElementById('call-status');
  const idleLabel = buttonLabel.textContent;
  const HEALTH_ENDPOINT = '/api/health';
  const BOT_ACTION = 'start_call';
  const botBox = document.getElementById('bot-check');
  const botWidget = document.getElementById('bot-check-widget');
  const botError = document.getElementById('bot-check-error');
  const botRetry = document.getElementById('bot-check-retry');
  // The answers that come before the bot check on the server: the token is not spent.
  const BEFORE_BOT_CHECK = ['invalid_phone_number', 'destination_not_allowed', 'invalid_request'];

  // The last submission whose outcome is unknown: { fields, key } (fields: the body without
  // the bot check's token, which may be renewed between the two presses).
  let unsettled = null;
  // The bot check: 'unknown' (health not read), 'off', 'loading', 'ready' or 'broken'.
  const bot = { state: 'unknown', config: null, widget: null, token: null };
  let busy = false;
  // The call being followed: { callId, token, started, failures, timer, controller, shown }.
  let following = null;

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!busy) submit();
  });
  phone.addEventListener('input', clearFieldError);
  botRetry.addEventListener('click', () => resetBotCheck());
  setUpBotCheck();

  async function submit() {
    stopFollowing();
    clearFieldError();
    const number = normalise(phone.value);
    if (number === '') {
      return fieldError('Enter your phone number, with the country code (e.g. +351).');
    }
    if (!number.startsWith('+')) {
      return fieldError('Start with + and your country code, e.g. +351 912 345 678.');
    }
    const payload = { phone_number: number };
    const given = name.value.trim();
    if (given !== '') payload.name = given;
    if (bot.state !== 'off' && bot.state !== 'unknown' && !bot.token) {
      return botNeeded();
    }
    const fields = JSON.stringify(payload);
    const token = bot.token;
    if (token) payload['cf-turnstile-response'] = token;
    const body = JSON.stringify(payload);
    const key = unsettled && unsettled.fields === fields ? unsettled.key : newKey();

    setBusy(true);
    let result;
    try {
      result = await send(body, key);
    } finally {
      setBusy(false);
    }
    unsettled = result.unsettled ? { fields, key } : null;
    if (token && !result.unsettled && !BEFORE_BOT_CHECK.includes(result.code)) {
      resetBotCheck(); // Single use: this token was spent.
    }
    if (result.code === 'captcha_required' && (bot.state === 'off' || bot.state === 'unknown')) {
      setUpBotCheck(); // The server asks for the check the page did not know about.
    }
    show(result);
    if (result.follow) follow(result.follow.callId, result.follow.token);
  }

  // Sends the request; never throws. Returns what to show.
  async function send(body, key) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    let response;
    try {
      response = await fetch(ENDPOINT, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key },
        body,
        credentials: 'omit',
        cache: 'no-store',
        signal: controller.signal,
      });
    } catch (error) {
      return networkFailure();
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null; // Not JSON (a proxy's error page, say): never shown raw.
    }
    return interpret(response, data);
  }

  function interpret(response, data) {
    const status = response.status;
    if (status === 200 && data && data.status === 'initiated') {
      const lines = [text('Your phone should ring in a few seconds.')];
      if (data.dry_run) {
        lines.push(text('Test mode (dry run): the request was accepted, but no phone will ring.'));
      }
      lines.push(meta('Call id: ', code(String(data.call_id))));
      const remaining = headerNumber(response, 'RateLimit-Remaining');
      if (remaining !== null) {
        lines.push(meta(`Calls you can still request for now: ${remaining}`));
      }
      const follow = typeof data.call_id === 'string' && typeof data.status_token === 'string'
        && data.status_token !== ''
        ? { callId: data.call_id, token: data.status_token }
        : null;
      return { kind: 'ok', title: 'Call initiated', lines, follow };
    }

    const error = data && data.error && typeof data.error === 'object' ? data.error : {};
    const errorCode = typeof error.code === 'string' ? error.code : '';
    const message = typeof error.message === 'string' ? sentence(error.message) : '';
    const reference = data && typeof data.request_id === 'string' ? data.request_id : '';
    const withMessage = (...lines) => (message ? [text(message), ...lines] : lines);
    const ref = reference ? [meta(`Reference: ${reference}`)] : [];
    const result = describe(errorCode, status, response, withMessage, ref);
    result.code = errorCode;
    return result;
  }

  function describe(errorCode, status, response, withMessage, ref) {
    switch (errorCode) {
      case 'captcha_required':
      case 'captcha_invalid':
        return {
          kind: 'error', title: 'Please complete the quick check again',
          lines: withMessage(text('It shows that a person, not a program, asks for the call.')),
        };
      case 'captcha_unavailable':
        return {
          kind: 'error', title: 'The check is unavailable right now',
          lines: [...withMessage(), ...ref],
        };
      case 'invalid_phone_number':
        return {
          kind: 'error', field: true, title: 'That number does not look right',
          lines: withMessage(text('Check the number and include the country code, e.g. +351 912 345 678.')),
        };
      case 'destination_not_allowed':
        return {
          kind: 'error', field: true, title: 'We cannot call this number',
          lines: withMessage(text('Only mobile and landline numbers in the countries we serve can be called.')),
        };
      case 'rate_limited': {
        const seconds = waitSeconds(response);
        return {
          kind: 'wait', title: 'Too many call requests',
          lines: [text(seconds === null
            ? 'You have reached the limit of calls for now. Please try again later.'
            : `You have reached the limit of calls for now. You can try again ${formatWait(seconds)}${formatClock(seconds)}.`)],
        };
      }
      case 'request_in_progress':
        return {
          kind: 'wait', unsettled: true, title: 'Your request is still being processed',
          lines: [text('Wait a moment, then press "Call me" again: you will not be called twice.')],
        };
      case 'provider_timeout':
        return {
          kind: 'error', title: 'The call service did not answer in time',
          lines: [text('The call may still come through. Please wait a few minutes before asking again.'), ...ref],
        };
      case 'provider_error':
        return { kind: 'error', title: 'The call could not be placed', lines: [...withMessage(), ...ref] };
      case 'invalid_request':
        return { kind: 'error', title: 'Please check the form', lines: withMessage() };
      default:
        break;
    }
    if (status === 503) {
      return {
        kind: 'error', title: 'Service unavailable',
        lines: [...withMessage(text('Please try again later.')), ...ref],
      };
    }
    if (status >= 500) {
      return {
        kind: 'error', title: 'Something went wrong on our side',
        lines: [text('No call was placed. Please try again later.'), ...ref],
      };
    }
    return {
      kind: 'error', title: 'The call could not be requested',
      lines: [...withMessage(), ...ref],
    };
  }

  // --- The bot check (docs/API.md §16) -------------------------------------------------------

  // Reads whether the server asks for the check; if so, loads the widget's script once.
  async function setUpBotCheck() {
    if (bot.state === 'loading' || bot.state === 'ready') return;
    let config = null;
    try {
      const response = await fetch(HEALTH_ENDPOINT, { credentials: 'omit', cache: 'no-store' });
      const data = await response.json();
      const found = data && data.bot_check;
      if (found && typeof found.site_key === 'string' && typeof found.script_url === 'string') {
        config = found;
      }
    } catch (error) {
      bot.state = 'unknown'; // Asked again if the server answers captcha_required.
      return;
    }
    if (config === null) {
      bot.state = 'off';
      return;
    }
    bot.config = config;
    bot.state = 'loading';
    botBox.hidden = false;
    const script = document.createElement('script');
    const url = new URL(config.script_url, window.location.href);
    url.searchParams.set('render', 'explicit');
    script.src = url.href;
    script.async = true;
    script.addEventListener('load', renderBotCheck);
    script.addEventListener('error', () => {
      bot.state = 'broken';
      showBotError('The check could not be loaded. Check your connection, then reload the page.', false);
    });
    document.head.append(script);
  }

  function renderBotCheck() {
    const turnstile = window.turnstile;
    if (!turnstile || typeof turnstile.render !== 'function') {
      bot.state = 'broken';
      showBotError('The check could not be loaded. Reload the page to try again.', false);
      return;
    }
    bot.widget = turnstile.render(botWidget, {
      sitekey: bot.config.site_key,
      action: BOT_ACTION,
      'refresh-expired': 'auto',
      callback: (token) => {
        bot.token = typeof token === 'string' && token !== '' ? token : null;
        clearBotError();
      },
      'expired-callback': () => {
        bot.token = null;
        showBotError('The check expired and is being renewed. Wait a moment, then press "Call me".', false);
      },
      'error-callback': () => {
        bot.token = null;
        showBotError('The check could not be completed.', true);
        return true;
      },
    });
    bot.state = 'ready';
  }

  // A new challenge (after a spent token, or the visitor's "Try the check again").
  function resetBotCheck() {
    bot.token = null;
    clearBotError();
    if (bot.state === 'ready' && window.turnstile && bot.widget !== null) {
      window.turnstile.reset(bot.widget);
    }
  }

  function botNeeded() {
    const message = bot.state === 'broken'
      ? 'The check could not be loaded, so the call cannot be requested. Reload the page to try again.'
      : 'Complete the quick check above (or wait for it to finish), then press "Call me".';
    showBotError(message, bot.state === 'ready');
    outcome.replaceChildren();
    delete outcome.dataset.kind;
    botBox.focus();
  }

  function showBotError(message, retry) {
    botError.textContent = message;
    botError.hidden = false;
    botRetry.hidden = !retry;
  }

  function clearBotError() {
    botError.hidden = true;
    botError.textContent = '';
    botRetry.hidden = true;
  }

  function networkFailure() {
    return {
      kind: 'error', unsettled: true, title: 'Could not reach the service',
      lines: [text('Check your connection and press "Call me" again. If the first attempt did get through, you will not be called twice.')],
    };
  }

  function show(result) {
    outcome.dataset.kind = result.kind;
    const title = document.createElement('p');
    title.className = 'title';
    title.textContent = result.title;
    outcome.replaceChildren(title, ...result.lines);
    if (result.field) {
      // The number is what to fix: say so beside it (read with the field), and go there.
      phoneError.textContent = result.title;
      phoneError.hidden = false;
      phone.setAttribute('aria-invalid', 'true');
      phone.focus();
    } else if (!form.contains(document.activeElement)) {
      // The busy button lost focus when it was disabled: give it back, so Enter retries.
      button.focus();
    }
  }

  // --- The call's status, after "Call initiated" -------------------------------------------

  function follow(callId, token) {
    stopFollowing();
    const watch = { callId, token, started: Date.now(), failures: 0, timer: null, controller: null, shown: '' };
    following = watch;
    callStatus.setAttribute('aria-busy', 'false');
    showStatus(watch, 'initiated', null);
    schedule(watch, POLL_MS);
  }

  // Stops following the current call (if any) and clears its status: a new submission.
  function stopFollowing() {
    if (following !== null) {
      clearTimeout(following.timer);
      if (following.controller) following.controller.abort();
      following = null;
    }
    callStatus.replaceChildren();
    delete callStatus.dataset.tone;
    delete callStatus.dataset.status;
    callStatus.setAttribute('aria-busy', 'false');
  }

  function schedule(watch, delay) {
    const left = watch.started + POLL_LIMIT_MS - Date.now();
    if (left <= 0) return stop(watch, limitReached());
    watch.timer = setTimeout(() => poll(watch), Math.min(delay, left));
    return undefined;
  }

  async function poll(watch) {
    if (following !== watch) return;
    if (Date.now() - watch.started >= POLL_LIMIT_MS) {
      stop(watch, limitReached());
      return;
    }
    // Busy while a read is on its way: assistive technologies wait for the settled text.
    callStatus.setAttribute('aria-busy', 'true');
    const controller = new AbortController();
    watch.controller = controller;
    const timer = setTimeout(() => controller.abort(), POLL_TIMEOUT_MS);
    let response = null;
    let data = null;
    try {
      response = await fetch(STATUS_ENDPOINT + encodeURIComponent(watch.callId), {
        method: 'GET',
        headers: { 'X-Status-Token': watch.token, Accept: 'application/json' },
        credentials: 'omit',
        cache: 'no-store',
        signal: controller.signal,
      });
      data = await response.json().catch(() => null);
    } catch (error) {
      response = null;
    } finally {
      clearTimeout(timer);
      watch.controller = null;
    }
    if (following !== watch) return; // A new submission took over while this one waited.
    react(watch, response, data);
    callStatus.setAttribute('aria-busy', 'false');
  }

  function react(watch, response, data) {
    if (response !== null && response.status === 200 && data && data.call_id === watch.callId
        && typeof data.status === 'string') {
      watch.failures = 0;
      const duration = Number.isInteger(data.duration_secs) && data.duration_secs >= 0 ? data.duration_secs : null;
      showStatus(watch, data.status, duration);
      const known = STATUSES[data.status];
      if (known && known.final) {
        stop(watch, null);
      } else {
        schedule(watch, POLL_MS);
      }
      return;
    }
    if (response !== null && response.status === 404) {
      stop(watch, {
        title: 'Call status unavailable',
        text: 'We cannot show how this call is going. If your phone rings, just answer it.',
      });
      return;
    }
    if (response !== null && response.status === 429) {
      // Asked too often: wait as long as the server says (at least the usual pace).
      const seconds = waitSeconds(response);
      schedule(watch, Math.max(POLL_MS, (seconds === null ? 30 : seconds) * 1000));
      return;
    }
    // No answer, a 5xx, a proxy's page: try again a few times, each time waiting longer.
    watch.failures += 1;
    if (watch.failures >= MAX_FAILURES) {
      stop(watch, {
        title: 'Call status unavailable for now',
        text: 'We could not reach the service to follow your call. The call itself is not affected.',
      });
      return;
    }
    schedule(watch, POLL_MS * 2 ** (watch.failures - 1));
  }

  function limitReached() {
    return {
      title: 'No more status updates',
      text: `We stopped following this call after ${POLL_LIMIT_MS / 60000} minutes. The call itself is not affected.`,
    };
  }

  // Stops following; `notice` (when given) replaces the status with why it is no longer shown.
  function stop(watch, notice) {
    clearTimeout(watch.timer);
    if (following === watch) following = null;
    if (notice) {
      callStatus.dataset.tone = 'quiet';
      render(notice.title, [text(notice.text)]);
    }
    return undefined;
  }

  // Shows `status` when it differs from what is shown (re-writing the same text every 2 s
  // would make screen readers repeat it).
  function showStatus(watch, status, duration) {
    const key = `${status}/${duration}`;
    if (watch.shown === key) return;
    watch.shown = key;
    const known = STATUSES[status] || { tone: 'live', title: 'Following your call…', text: '' };
    callStatus.dataset.tone = known.tone;
    callStatus.dataset.status = status;
    const lines = [];
    if (status === 'completed' && duration !== null) {
      const p = document.createElement('p');
      p.append('The call lasted ', formatDuration(duration), '. ', known.text);
      lines.push(p);
    } else if (known.text) {
      lines.push(text(known.text));
    }
    render(known.title, lines);
  }

  function render(title, lines) {
    const label = document.createElement('p');
    label.className = 'label';
    label.textContent = 'Call status';
    const heading = document.createElement('p');
    heading.className = 'title';
    heading.textContent = title;
    callStatus.replaceChildren(label, heading, ...lines);
  }

  // m:ss (h:mm:ss from an hour), shown as digits and read out in words.
  function formatDuration(total) {
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = total % 60;
    const ss = String(seconds).padStart(2, '0');
    const digits = hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${ss}` : `${minutes}:${ss}`;
    const words = [];
    if (hours > 0) words.push(`${hours} ${hours === 1 ? 'hour' : 'hours'}`);
    if (minutes > 0) words.push(`${minutes} ${minutes === 1 ? 'minute' : 'minutes'}`);
    if (seconds > 0 || words.length === 0) words.push(`${seconds} ${seconds === 1 ? 'second' : 'seconds'}`);
    const wrapper = document.createElement('span');
    const shown = document.createElement('time');
    shown.dateTime = `PT${hours ? `${hours}H` : ''}${minutes ? `${minutes}M` : ''}${seconds}S`;
    shown.textContent = digits;
    shown.setAttribute('aria-hidden', 'true');
    const spoken = document.createElement('span');
    spoken.className = 'visually-hidden';
    spoken.textContent = words.join(' ');
    wrapper.append(shown, spoken);
    return wrapper;
  }

  function setBusy(on) {
    busy = on;
    button.disabled = on;
    button.setAttribute('aria-busy', String(on));
    form.setAttribute('aria-busy', String(on));
    buttonLabel.textContent = on ? 'Requesting your call…' : idleLabel;
    if (on) {
      outcome.dataset.kind = 'busy';
      outcome.replaceChildren(text('Requesting your call…'));
    }
  }

  function fieldError(message) {
    phoneError.textContent = message;
    phoneError.hidden = false;
    phone.setAttribute('aria-invalid', 'true');
    outcome.replaceChildren();
    delete outcome.dataset.kind;
    phone.focus();
  }

  function clearFieldError() {
    phoneError.hidden = true;
    phoneError.textContent = '';
    phone.removeAttribute('aria-invalid');
  }

  // What the server also tolerates (spaces, hyphens), plus the usual writing aids: dots,
  // brackets, and the international prefix 00.
  function normalise(value) {
    const compact = value.trim().replace(/[\s\-.()]/g, '');
    return compact.startsWith('00') ? `+${compact.slice(2)}` : compact;
  }

  function waitSeconds(response) {
    const retryAfter = response.headers.get('Retry-After');
    if (retryAfter !== null) {
      const value = retryAfter.trim();
      if (/^\d+$/.test(value)) return Number(value);
      const date = Date.parse(value);
      if (!Number.isNaN(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
    }
    return headerNumber(response, 'RateLimit-Reset');
  }

  function headerNumber(response, header) {
    const value = response.headers.get(header);
    return value !== null && /^\s*\d+\s*$/.test(value) ? Number(value) : null;
  }

  // "in 42 s", "in 5 min", "in 23 h 59 min", "in 3 d 4 h". Minutes round up, so the visitor
  // is never told to come back before a slot is free.
  function formatWait(seconds) {
    if (seconds <= 0) return 'now';
    if (seconds < 60) return `in ${seconds} s`;
    const minutes = Math.ceil(seconds / 60);
    if (minutes < 60) return `in ${minutes} min`;
    const hours = Math.floor(minutes / 60);
    const rest = minutes % 60;
    if (hours < 48) return rest ? `in ${hours} h ${rest} min` : `in ${hours} h`;
    const days = Math.floor(hours / 24);
    return hours % 24 ? `in ${days} d ${hours % 24} h` : `in ${days} d`;
  }

  function formatClock(seconds) {
    if (seconds < 60) return '';
    try {
      const at = new Date(Date.now() + seconds * 1000);
      const options = { hour: '2-digit', minute: '2-digit' };
      if (seconds >= 12 * 3600) options.weekday = 'short';
      return ` (around ${new Intl.DateTimeFormat(undefined, options).format(at)})`;
    } catch (error) {
      return '';
    }
  }

  // The API's message as a sentence: capitalised, with its full stop.
  function sentence(message) {
    const trimmed = message.trim().slice(0, 300);
    if (trimmed === '') return '';
    const capitalised = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
  }

  function newKey() {
    if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    // Outside a secure context randomUUID is missing; getRandomValues is always there.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function text(content) {
    const p = document.createElement('p');
    p.textContent = content;
    return p;
  }

  function meta(...parts) {
    const p = document.createElement('p');
    p.className = 'meta';
    p.append(...parts);
    return p;
  }

  function code(content) {
    const element = document.createElement('code');
    element.textContent = content;
    return element;
  }
})();
