#!/usr/bin/env bash
# Fails when anything that looks like a real secret is in the tree or its history (docs/API.md §12):
# an ElevenLabs-style key (sk_ + 48 hex), an AWS access key id, a private key, a Make hook URL.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
pattern='sk_[0-9a-f]{48}|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|hook\.[a-z0-9]+\.make\.com/[a-z0-9]{20,}'
found=0
if git grep -nIE "$pattern" -- . ':!scripts/check-secrets.sh' >/dev/null 2>&1; then
  echo "check-secrets: the working tree holds something that looks like a secret:" >&2
  git grep -nIE "$pattern" -- . ':!scripts/check-secrets.sh' | cut -c1-120 >&2
  found=1
fi
if git log --all -p --no-color -- . ':!scripts/check-secrets.sh' 2>/dev/null | grep -nE "^[+-].*($pattern)" >/dev/null; then
  echo "check-secrets: the history holds something that looks like a secret (rewrite it):" >&2
  found=1
fi
if [ "$found" -ne 0 ]; then exit 1; fi
echo "check-secrets: no secrets in the tree or its history"
