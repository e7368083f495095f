#!/usr/bin/env bash
# Posts the OTLP/JSON fixtures to a running Otterline over HTTP, one signal each.
# Usage: examples/send-otlp-json.sh [http://127.0.0.1:4318]
set -euo pipefail
base=${1:-http://127.0.0.1:4318}
dir="$(dirname "$0")/../tests/fixtures"
for signal in traces metrics logs; do
  printf '%s: ' "$signal"
  curl -sS -X POST "$base/v1/$signal" -H 'Content-Type: application/json' --data-binary "@$dir/$signal.json"
  echo
done
