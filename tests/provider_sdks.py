#!/usr/bin/env python3
"""The providers' official Python SDKs as judges of Chamada's webhook signatures (docs/API.md
§15.3, §15.4). Run through `scripts/provider-sdks`, which installs the pinned `elevenlabs` and
`livekit-api` packages in their own virtualenv; the Rust tests call it as a subprocess.

Every subcommand reads the raw request body from standard input (bytes, decoded as UTF-8
because both SDKs take a `str`), prints one line on standard output when it succeeds, and
exits:
    0  accepted / produced
    1  refused by the SDK (the reason on standard error)
    2  usage error (argparse) or a body that is not UTF-8

Subcommands:
  elevenlabs-verify --secret S --signature HEADER [--now UNIX]
      `ElevenLabs().webhooks.construct_event(rawBody, sig_header, secret)`; prints the event's
      `type`. `--now` fixes the SDK's clock (it reads `time.time()`), as the SDK's own tests do.
  elevenlabs-sign --secret S --timestamp T
      Prints `t=T,v0=<hex HMAC-SHA256(secret, "T.body")>`. The SDK has no signer: the header is
      computed here exactly as `construct_event` recomputes it, then checked with
      `construct_event` itself (clock fixed at T) before it is printed.
  livekit-token --api-key K --api-secret S [--ttl SECONDS]
      Prints the JWT LiveKit's server puts in `Authorization` for this body:
      `AccessToken(K, S).with_sha256(base64(sha256(body))).with_ttl(ttl).to_jwt()`, HS256,
      `iss` = K; ttl 300 s by default as the server's (`SetValidFor(5 * time.Minute)`); a
      negative ttl makes an already expired token.
  livekit-verify --api-key K --api-secret S --auth TOKEN
      `WebhookReceiver(TokenVerifier(K, S)).receive(body, TOKEN)`; prints the event name
      (`event`). The token is the bare JWT, as LiveKit sends it (no `Bearer `).
  versions
      Prints the installed versions of the judges (no standard input read).
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import sys
import warnings
from importlib import metadata
from unittest import mock

USAGE = 2

# PyJWT warns about HMAC keys shorter than 32 bytes; tests use short fake secrets on purpose.
warnings.filterwarnings("ignore", message="The HMAC key is")


def read_body() -> str:
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        print(f"the body is not UTF-8 (both SDKs take a str): {e}", file=sys.stderr)
        sys.exit(USAGE)


def refused(what: str, error: BaseException) -> int:
    body = getattr(error, "body", None)
    detail = getattr(body, "error", None) or body or error
    print(f"{what}: refused: {type(error).__name__}: {detail}", file=sys.stderr)
    return 1


def elevenlabs_construct_event(body: str, signature: str, secret: str, now=None):
    from elevenlabs.client import ElevenLabs

    # No API key is needed to verify; the client makes no request.
    client = ElevenLabs(api_key="unused")
    if now is None:
        return client.webhooks.construct_event(rawBody=body, sig_header=signature, secret=secret)
    with mock.patch("time.time", return_value=float(now)):
        return client.webhooks.construct_event(rawBody=body, sig_header=signature, secret=secret)


def elevenlabs_verify(args) -> int:
    body = read_body()
    try:
        event = elevenlabs_construct_event(body, args.signature, args.secret, args.now)
    except Exception as e:  # BadRequestError, or the JSON error of a body that is not JSON
        return refused("elevenlabs construct_event", e)
    kind = event.get("type") if isinstance(event, dict) else None
    print(kind if isinstance(kind, str) else "")
    return 0


def elevenlabs_sign(args) -> int:
    body = read_body()
    timestamp = str(args.timestamp)
    digest = hmac.new(
        args.secret.encode("utf-8"), f"{timestamp}.{body}".encode("utf-8"), hashlib.sha256
    ).hexdigest()
    header = f"t={timestamp},v0={digest}"
    try:
        elevenlabs_construct_event(body, header, args.secret, now=args.timestamp)
    except Exception as e:
        return refused("elevenlabs-sign: the SDK does not accept the header made here", e)
    print(header)
    return 0


def body_sha256_b64(body: str) -> str:
    return base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")


def livekit_token(args) -> int:
    from livekit.api import AccessToken

    body = read_body()
    try:
        token = (
            AccessToken(args.api_key, args.api_secret)
            .with_sha256(body_sha256_b64(body))
            .with_ttl(datetime.timedelta(seconds=args.ttl))
            .to_jwt()
        )
    except Exception as e:
        return refused("livekit AccessToken", e)
    print(token)
    return 0


def livekit_verify(args) -> int:
    from livekit.api import TokenVerifier, WebhookReceiver

    body = read_body()
    try:
        event = WebhookReceiver(TokenVerifier(args.api_key, args.api_secret)).receive(body, args.auth)
    except Exception as e:  # jwt errors, "hash mismatch", protobuf ParseError
        return refused("livekit WebhookReceiver.receive", e)
    print(event.event)
    return 0


def versions(_args) -> int:
    for name in ("elevenlabs", "livekit-api", "livekit-protocol", "PyJWT", "protobuf"):
        try:
            print(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            print(f"{name} (not installed)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="provider-sdks",
        description="The providers' official SDKs as judges of webhook signatures; the body on stdin.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("elevenlabs-verify", help="ElevenLabs construct_event accepts the signature?")
    p.add_argument("--secret", required=True)
    p.add_argument("--signature", required=True, help="the ElevenLabs-Signature header value")
    p.add_argument("--now", type=int, help="the SDK's clock, unix seconds (default: real time)")
    p.set_defaults(run=elevenlabs_verify)

    p = sub.add_parser("elevenlabs-sign", help="an ElevenLabs-Signature header for the body")
    p.add_argument("--secret", required=True)
    p.add_argument("--timestamp", required=True, type=int, help="unix seconds")
    p.set_defaults(run=elevenlabs_sign)

    p = sub.add_parser("livekit-token", help="a LiveKit webhook Authorization JWT for the body")
    p.add_argument("--api-key", required=True)
    p.add_argument("--api-secret", required=True)
    p.add_argument("--ttl", type=int, default=300, help="seconds (default 300, as the server)")
    p.set_defaults(run=livekit_token)

    p = sub.add_parser("livekit-verify", help="LiveKit WebhookReceiver accepts the token and body?")
    p.add_argument("--api-key", required=True)
    p.add_argument("--api-secret", required=True)
    p.add_argument("--auth", required=True, help="the Authorization header value (the bare JWT)")
    p.set_defaults(run=livekit_verify)

    p = sub.add_parser("versions", help="the installed SDK versions")
    p.set_defaults(run=versions)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
