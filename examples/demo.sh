#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, makes the
# development PKI, starts the three demo partners (the independent Node.js
# mock partners of tests/partners/: laizhou and zhaoyuan speak lu-xml,
# wujiang speaks yue-json) and runs the gateway in the foreground with the
# example configuration (examples/tbgw.json). Ctrl-C stops everything.
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
npm ci --prefix tests/partners --no-audit --no-fund --loglevel=error

# Demo partners on the ports examples/tbgw.json points at; their control APIs
# (what they received, scripted faults, sending statuses) on 96xx/97xx.
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start_partner() { # script partner port control-port [extra args]
  local script=$1 name=$2 port=$3 control=$4; shift 4
  node "tests/partners/$script" --pki certs/out --partner "$name" --port "$port" \
    --control-port "$control" --gateway-url https://127.0.0.1:8443 "$@" \
    >"examples/var/partner-$name.log" 2>&1 &
  pids+=($!)
}
start_partner lu-xml-partner.js laizhou 9443 9643
start_partner lu-xml-partner.js zhaoyuan 9444 9644
start_partner yue-json-partner.js wujiang 9543 9743 --app-id YY-YUNXI-001
# The complete check `serve` does at start: keys (certs/out), partner TLS
# files and the adapters in build/release/adapters, loaded and initialised.
build/release/gateway/tbgw check-config -c examples/tbgw.json

cat <<MSG

tbgw is starting with examples/tbgw.json (local API on 127.0.0.1:8080,
partner listener on 127.0.0.1:8443). Demo partners: laizhou :9443 (control
:9643), zhaoyuan :9444 (:9644), wujiang :9543 (:9743); their logs are in
examples/var/partner-*.log, and e.g. curl -s 127.0.0.1:9643/received shows
what laizhou received.
Try, in another terminal:

  curl -sS -H 'Authorization: Bearer demo-token-change-me-0123456789' \\
       -H 'Content-Type: application/json' \\
       --data-binary @$root/../shared/samples/01-rebirth-registration-laizhou.json \\
       http://127.0.0.1:8080/v1/cases

  curl -sS -H 'Authorization: Bearer demo-token-change-me-0123456789' \\
       http://127.0.0.1:8080/v1/cases/430603-20240506-000123

  build/release/gateway/tbgw send -c examples/tbgw.json ../shared/samples/*.json

A case is delivered to its demo partner within a second or so: GET it again
to see status 'delivered' and the partner's receipt number. Make a partner
send a status notification back (the case then moves to 'accepted'):

  curl -s -XPOST 127.0.0.1:9643/send-status -H 'Content-Type: application/json' \\
       -d '{"case_id":"430603-20240506-000123","status":"01"}'

and watch the feed: curl -sS -H 'Authorization: Bearer ...' 'http://127.0.0.1:8080/v1/events?after=0'.
MSG
build/release/gateway/tbgw serve -c examples/tbgw.json
