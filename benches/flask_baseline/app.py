"""The Flask + gunicorn stack Chamada replaces, reduced to the work the cold-start comparison
needs (docs/PERFORMANCE.md): the same two endpoints doing comparable work on the same path
to the first admitted dry-run call. Not a product; nothing imports it.

    gunicorn --workers 1 --bind 127.0.0.1:5002 --chdir benches/flask_baseline app:app

Per request, like the Rust service: a request id, the exact-origin CORS check (403), the
Content-Type check (415), the 16 KiB size limit (413), JSON parsing with unknown fields
refused (400/422), the name check, the phone policy with the `phonenumbers` library (validity,
region PT, mobile / fixed line), in-memory rolling per-IP and per-number limits (429 with
Retry-After), a dry-run "dispatch" with a UUID, one JSON log line on stdout and the JSON answer.
The limits read Chamada's variables (`MAX_REQUESTS_PER_IP`, `MAX_CALLS_PER_NUMBER`,
`RATE_LIMIT_WINDOW`) and count `X-End-User-IP` when sent, so `scripts/load` gives both stacks
the same scenarios. It has no API keys: the key scripts/load sends is ignored.
"""

import json
import os
import sys
import time
import uuid
from collections import defaultdict, deque

import phonenumbers
from flask import Flask, Response, request
from phonenumbers import PhoneNumberType

app = Flask(__name__)

ALLOWED_ORIGINS = {"http://localhost:3000"}
ALLOWED_REGIONS = {"PT"}
ALLOWED_TYPES = {
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
}
# The same variables as Chamada's, so scripts/load runs both stacks with the same limits.
MAX_PER_IP = int(os.environ.get("MAX_REQUESTS_PER_IP", "3"))
MAX_PER_NUMBER = int(os.environ.get("MAX_CALLS_PER_NUMBER", "3"))
WINDOW_S = float(os.environ.get("RATE_LIMIT_WINDOW", "86400"))
FIELDS = {"phone_number", "name", "provider", "variables"}
_hits = defaultdict(deque)


def log(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")


def answer(status, body, request_id, headers=None):
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["X-Request-Id"] = request_id
    response.headers["Vary"] = "Origin"
    origin = request.headers.get("Origin")
    if origin in ALLOWED_ORIGINS:
        response.headers["Access-Control-Allow-Origin"] = origin
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error(status, code, message, request_id, headers=None):
    body = {"error": {"code": code, "message": message}, "request_id": request_id}
    return answer(status, body, request_id, headers)


def admit(keys, now):
    """Counts the request under every key or none; returns the seconds to wait when full."""
    wait = 0
    for key, limit in keys:
        times = _hits[key]
        while times and times[0] + WINDOW_S <= now:
            times.popleft()
        if len(times) >= limit:
            wait = max(wait, int(times[len(times) - limit] + WINDOW_S - now) + 1)
    if wait:
        return wait
    for key, _ in keys:
        _hits[key].append(now)
    return 0


@app.route("/api/health", methods=["GET"])
def health():
    request_id = str(uuid.uuid4())
    return answer(
        200,
        {
            "status": "ok",
            "environment": "development",
            "version": "baseline",
            "provider": "dry-run",
            "rate_limit_store": "memory",
            "webhook": False,
        },
        request_id,
    )


@app.route("/api/start_call", methods=["POST"])
def start_call():
    request_id = str(uuid.uuid4())
    origin = request.headers.get("Origin")
    if origin is not None and origin not in ALLOWED_ORIGINS:
        return error(403, "forbidden_origin", "Origin not allowed.", request_id)
    if request.mimetype != "application/json":
        return error(415, "unsupported_media_type", "Use application/json.", request_id)
    if (request.content_length or 0) > 16 * 1024:
        return error(413, "payload_too_large", "Body too large.", request_id)
    try:
        body = json.loads(request.get_data(cache=False) or b"")
    except ValueError:
        return error(400, "invalid_json", "The body is not JSON.", request_id)
    if not isinstance(body, dict) or set(body) - FIELDS:
        return error(422, "invalid_request", "Unknown or malformed fields.", request_id)
    if "provider" in body or "variables" in body:
        return error(422, "invalid_request", "Authenticated callers only.", request_id)
    name = body.get("name")
    if name is not None:
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            return error(422, "invalid_request", "name must be 1 to 100 characters", request_id)
        if any(not ch.isprintable() for ch in name.strip()):
            return error(422, "invalid_request", "name has control characters", request_id)
        name = name.strip()
    raw = body.get("phone_number")
    if not isinstance(raw, str):
        return error(422, "invalid_request", "phone_number is required", request_id)
    e164 = raw.replace(" ", "").replace("-", "")
    if not (e164.startswith("+") and e164[1:].isdigit() and 8 <= len(e164) - 1 <= 15):
        return error(422, "invalid_phone_number", "Not E.164.", request_id)
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return error(422, "invalid_phone_number", "Not a valid number.", request_id)
    if not phonenumbers.is_valid_number(number):
        return error(422, "invalid_phone_number", "Not a valid number.", request_id)
    if phonenumbers.region_code_for_number(number) not in ALLOWED_REGIONS:
        return error(422, "destination_not_allowed", "Country not allowed.", request_id)
    if phonenumbers.number_type(number) not in ALLOWED_TYPES:
        return error(422, "destination_not_allowed", "Kind not allowed.", request_id)
    # Like Chamada's trusted servers (scripts/load sends it): the end user's address.
    ip = request.headers.get("X-End-User-IP") or request.remote_addr or ""
    wait = admit([("ip:" + ip, MAX_PER_IP), ("number:" + e164, MAX_PER_NUMBER)], time.time())
    if wait:
        log(request_id=request_id, message="Rate limit exceeded", retry_after=wait)
        return error(429, "rate_limited", "Too many calls.", request_id, {"Retry-After": str(wait)})
    call_id = str(uuid.uuid4())
    log(request_id=request_id, message="Call initiated", call_id=call_id, to=e164[:4] + "***")
    return answer(
        200,
        {
            "status": "initiated",
            "call_id": call_id,
            "provider": "dry-run",
            "provider_call_id": "dry-run-" + call_id,
            "to": e164,
            "dry_run": True,
        },
        request_id,
    )
