#!/bin/sh
# bench/run.sh — the gateway's load benchmark, one command (docs/performance.md).
#
# Builds release into build/bench, generates ~4 KB cases, runs the in-process
# limits (tbgw-bench-limit), starts tbgw (embedded store, durability fsync)
# with the dev PKI, drives POST /v1/cases with wrk + bench/wrk.lua, then
# GET /healthz on tbgw and on nginx `return 200`, and prints one table
# (bench/report.py), also written as bench/out/results.json.
#
# Partners point at a closed port (127.0.0.1:9): every delivery fails at
# connect, circuits open and cases stay queued. This isolates the accept
# path; delivered cases/s needs a fast mock partner (not written yet: the
# Node mocks in tests/partners/ do SM2 in pure JS, ~80 ms a request).
#
# Knobs (environment): TB_BENCH_DURATION (s, default 20), TB_BENCH_RUNS (3),
# TB_BENCH_THREADS (2), TB_BENCH_CONNS (64), TB_BENCH_CASES (for the limit
# run, 20000), TB_BENCH_LIMIT_SECONDS (3), TB_BENCH_PORT (18080).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/out"
BUILD="$ROOT/build/bench"
DUR=${TB_BENCH_DURATION:-20}
RUNS=${TB_BENCH_RUNS:-3}
THREADS=${TB_BENCH_THREADS:-2}
CONNS=${TB_BENCH_CONNS:-64}
NCASES=${TB_BENCH_CASES:-20000}
LIMIT_S=${TB_BENCH_LIMIT_SECONDS:-3}
PORT=${TB_BENCH_PORT:-18080}
NGINX_PORT=$((PORT + 1))
TOKEN=bench-token-0123456789abcdef

say() { printf '== %s\n' "$*" >&2; }

# ---- tools -------------------------------------------------------------------
need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
command -v curl >/dev/null 2>&1 || need="$need curl"
if [ -n "$need" ]; then
  say "installing$need"
  if [ "$(id -u)" -ne 0 ]; then echo "run as root or install:$need" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---- build (release) -------------------------------------------------------------
say "building release into $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTB_TESTS=OFF -DTB_BENCH=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
TBGW="$BUILD/gateway/tbgw"
LIMIT="$BUILD/bench/tbgw-bench-limit"

# ---- cases ---------------------------------------------------------------------------
mkdir -p "$OUT/raw"
rm -f "$OUT"/raw/*
python3 "$ROOT/bench/gen_cases.py" -n "$NCASES" --out "$OUT" >&2

# ---- limits ----------------------------------------------------------------------------
say "in-process limits (tbgw-bench-limit, ${LIMIT_S}s per phase)"
"$LIMIT" --cases "$OUT/cases.jsonl" --seconds "$LIMIT_S" --adapters "$BUILD/adapters" \
  --repo "$ROOT" --out "$OUT/limit.json" >"$OUT/raw/limit.txt" 2>"$OUT/raw/limit.err"
cat "$OUT/raw/limit.txt" >&2

# ---- gateway -------------------------------------------------------------------------
W=$(mktemp -d /var/tmp/tbgw-bench.XXXXXX)   # a real disk: fsync must mean something
TBGW_PID=""; NGINX_PID=""
cleanup() {
  [ -n "$TBGW_PID" ] && kill "$TBGW_PID" 2>/dev/null && wait "$TBGW_PID" 2>/dev/null || true
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM
"$ROOT/certs/make-dev-pki.sh" "$W/pki" >/dev/null
P="$W/pki"
cat >"$W/tbgw.json" <<JSON
{
  "node": { "region": "430603", "name": "bench" },
  "local_api": {
    "listen": "127.0.0.1:$PORT",
    "tokens": [ { "client": "bench", "token": "$TOKEN" } ],
    "rate_limit": { "requests_per_s": 0 }
  },
  "store": { "path": "$W/tbgw.db", "durability": "fsync" },
  "log": { "level": "info", "file": "$W/tbgw.log" },
  "keys": {
    "gw-rsa": { "kind": "rsa", "private_key": "$P/gateway/sign-rsa.key",
                "certificate": "$P/gateway/sign-rsa.pem" },
    "gw-sm2": { "kind": "sm2", "private_key": "$P/gateway/sign-sm2.key",
                "public_key": "$P/gateway/sign-sm2.pub.pem" },
    "laizhou-ca": { "kind": "ca", "certificate": "$P/partners/laizhou/ca.pem" },
    "zhaoyuan-ca": { "kind": "ca", "certificate": "$P/partners/zhaoyuan/ca.pem" },
    "wujiang-sm2-pub": { "kind": "sm2", "public_key": "$P/partners/wujiang/sign-sm2.pub.pem" }
  },
  "adapters": { "dir": "$BUILD/adapters" },
  "partners": [
    { "name": "laizhou", "adapter": "lu-xml", "regions": ["370683"],
      "endpoint": "https://127.0.0.1:9",
      "tls": { "ca": "$P/partners/laizhou/ca.pem",
               "client_certificate": "$P/gateway/tls-client.pem",
               "client_key": "$P/gateway/tls-client.key",
               "client_ca": "$P/partners/laizhou/ca.pem" },
      "keys": { "sign": "gw-rsa", "peer_ca": "laizhou-ca" } },
    { "name": "zhaoyuan", "adapter": "lu-xml", "regions": ["370685"],
      "endpoint": "https://127.0.0.1:9",
      "tls": { "ca": "$P/partners/zhaoyuan/ca.pem",
               "client_certificate": "$P/gateway/tls-client.pem",
               "client_key": "$P/gateway/tls-client.key",
               "client_ca": "$P/partners/zhaoyuan/ca.pem" },
      "keys": { "sign": "gw-rsa", "peer_ca": "zhaoyuan-ca" } },
    { "name": "wujiang", "adapter": "yue-json", "regions": ["440203"],
      "endpoint": "https://127.0.0.1:9",
      "tls": { "ca": "$P/partners/wujiang/ca.pem",
               "client_certificate": "$P/gateway/tls-client.pem",
               "client_key": "$P/gateway/tls-client.key",
               "client_ca": "$P/partners/wujiang/ca.pem" },
      "app_id": "YY-YUNXI-001", "peer_app_id": "GD-WJ-TB",
      "keys": { "sign": "gw-sm2", "decrypt": "gw-sm2", "peer": "wujiang-sm2-pub" } }
  ]
}
JSON
"$TBGW" check-config -c "$W/tbgw.json" >/dev/null
"$TBGW" serve -c "$W/tbgw.json" 2>"$W/tbgw.stderr" &
TBGW_PID=$!
i=0
until curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 "$TBGW_PID" 2>/dev/null; then
    echo "tbgw did not start:" >&2; cat "$W/tbgw.stderr" "$W/tbgw.log" >&2 2>/dev/null; exit 1
  fi
  sleep 0.1
done

snap() { # snap NAME PID: metrics + /proc stat of the process
  curl -fsS "http://127.0.0.1:$PORT/metrics" >"$OUT/raw/$1.metrics"
  cat "/proc/$2/stat" >"$OUT/raw/$1.stat"
  cat "/proc/$2/status" >"$OUT/raw/$1.status"
}

export TB_BENCH_TEMPLATES="$OUT/wrk_cases.lua" TB_BENCH_TOKEN="$TOKEN"
r=1
while [ $r -le "$RUNS" ]; do
  say "run $r/$RUNS: POST /v1/cases, wrk -t$THREADS -c$CONNS -d${DUR}s"
  snap "post$r.before" "$TBGW_PID"
  TB_BENCH_MODE=post TB_BENCH_RUN=$r TB_BENCH_WRK_JSON="$OUT/raw/post$r.wrk.json" \
    wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -s "$ROOT/bench/wrk.lua" \
    "http://127.0.0.1:$PORT/v1/cases" >"$OUT/raw/post$r.wrk.txt"
  sleep 0.5   # let wrk's last in-flight requests commit before the snapshot
  snap "post$r.after" "$TBGW_PID"
  r=$((r + 1))
done

HZ_DUR=$(( DUR < 10 ? DUR : 10 ))
say "GET /healthz on tbgw, wrk -t$THREADS -c$CONNS -d${HZ_DUR}s"
snap hz.before "$TBGW_PID"
TB_BENCH_MODE=get TB_BENCH_WRK_JSON="$OUT/raw/hz.wrk.json" \
  wrk -t"$THREADS" -c"$CONNS" -d"${HZ_DUR}s" --latency -s "$ROOT/bench/wrk.lua" \
  "http://127.0.0.1:$PORT/healthz" >"$OUT/raw/hz.wrk.txt"
snap hz.after "$TBGW_PID"
cp "$W/tbgw.db"* "$OUT/raw/" 2>/dev/null || true; rm -f "$OUT"/raw/tbgw.db*
ls -l "$W" >"$OUT/raw/workdir.txt"

# ---- nginx: the same GET on `return 200`, one worker, keep-alive ----------------
mkdir -p "$W/nginx/logs"
cat >"$W/nginx/nginx.conf" <<NGINX
daemon off;
master_process on;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { return 200 "ok\n"; }
  }
}
NGINX
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" &
NGINX_PID=$!
i=0
until curl -fsS "http://127.0.0.1:$NGINX_PORT/healthz" >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 50 ] && { echo "nginx did not start" >&2; exit 1; }; sleep 0.1
done
NGINX_WORKER=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" | awk '{print $1}')
say "GET /healthz on nginx return 200 (worker $NGINX_WORKER), wrk -t$THREADS -c$CONNS -d${HZ_DUR}s"
cat "/proc/$NGINX_WORKER/stat" >"$OUT/raw/nginx.before.stat"
TB_BENCH_MODE=get TB_BENCH_WRK_JSON="$OUT/raw/nginx.wrk.json" \
  wrk -t"$THREADS" -c"$CONNS" -d"${HZ_DUR}s" --latency -s "$ROOT/bench/wrk.lua" \
  "http://127.0.0.1:$NGINX_PORT/healthz" >"$OUT/raw/nginx.wrk.txt"
cat "/proc/$NGINX_WORKER/stat" >"$OUT/raw/nginx.after.stat"

# ---- machine + report ---------------------------------------------------------
{
  echo "nproc=$(nproc)"
  echo "cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  echo "mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
  echo "disk=$(df -P "$W" | awk 'NR==2 {print $1}')"
  echo "wrk=$(wrk -v 2>&1 | head -1)"
  echo "nginx=$("$NGINX" -v 2>&1)"
  echo "tbgw=$("$TBGW" version 2>&1 | head -1)"
  echo "clk_tck=$(getconf CLK_TCK)"
  echo "runs=$RUNS duration_s=$DUR threads=$THREADS conns=$CONNS"
} >"$OUT/raw/machine.txt"
python3 "$ROOT/bench/report.py" "$OUT"
