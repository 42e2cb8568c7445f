#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, makes the
# development PKI and runs the gateway in the foreground with the example
# configuration (examples/tbgw.json). Ctrl-C stops it gracefully.
#
# In another terminal, submit a sample case:
#   curl -sS -H 'Authorization: Bearer demo-token-change-me-0123456789' \
#        -H 'Content-Type: application/json' \
#        --data-binary @../shared/samples/01-rebirth-registration-laizhou.json \
#        http://127.0.0.1:8080/v1/cases
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

./.ci/install-deps
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)"
./certs/make-dev-pki.sh >/dev/null
mkdir -p examples/var
# The complete check `serve` does at start: keys (certs/out), partner TLS
# files and the adapters in build/release/adapters, loaded and initialised.
build/release/gateway/tbgw check-config -c examples/tbgw.json

cat <<MSG

tbgw is starting with examples/tbgw.json (local API on 127.0.0.1:8080).
Try, in another terminal:

  curl -sS -H 'Authorization: Bearer demo-token-change-me-0123456789' \\
       -H 'Content-Type: application/json' \\
       --data-binary @$root/../shared/samples/01-rebirth-registration-laizhou.json \\
       http://127.0.0.1:8080/v1/cases

  curl -sS -H 'Authorization: Bearer demo-token-change-me-0123456789' \\
       http://127.0.0.1:8080/v1/cases/430603-20240506-000123

  build/release/gateway/tbgw send -c examples/tbgw.json ../shared/samples/*.json

Cases wait in 'queued': delivery to partners is not built yet (see README).
MSG
exec build/release/gateway/tbgw serve -c examples/tbgw.json
