#!/bin/sh
# tests/fuzz/run-fuzzers.sh — build the libFuzzer targets with clang and run
# each harness for FUZZ_SECONDS (default 60). A crash, leak, sanitizer report
# or timeout is copied into tests/fuzz/regressions/<name>/ (so the replay
# tests keep it) and the script fails. Without clang it says so and exits 0.
#
#   FUZZ_SECONDS=300 tests/fuzz/run-fuzzers.sh [harness...]
#   env: CC (default clang), FUZZ_BUILD_DIR (default /tmp/tbgw-fuzz-build),
#        FUZZ_JOBS (build jobs, default 2)
# New corpus entries found by the run stay in $FUZZ_BUILD_DIR/corpus-out/;
# the repo corpus is read, not modified (minimise and commit by hand).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cc=${CC:-clang}
secs=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD_DIR:-/tmp/tbgw-fuzz-build}
all="http_request case_json config xml_safe luxml_decode luxml_classify yuejson_decode yuejson_classify"
names=${*:-$all}

if ! command -v "$cc" >/dev/null 2>&1 || ! "$cc" --version 2>/dev/null | grep -qi clang; then
  echo "run-fuzzers: $cc is not clang; libFuzzer targets skipped (apt-get install clang libclang-rt-14-dev)"
  exit 0
fi

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTB_SANITIZE=ON -DTB_FUZZ=ON -DTB_WERROR=OFF >"$build.cmake.log" 2>&1 ||
  { cat "$build.cmake.log"; exit 1; }
targets=""
for n in $names; do targets="$targets fuzz_$n"; done
# shellcheck disable=SC2086
cmake --build "$build" -j"${FUZZ_JOBS:-2}" --target $targets adapter_lu-xml adapter_yue-json

export TB_REPO_ROOT="$root" TB_ADAPTERS_DIR="$build/adapters"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=""
for n in $names; do
  out="$build/corpus-out/$n" art="$build/artifacts/$n/"
  mkdir -p "$out" "$art"
  echo "run-fuzzers: $n for ${secs}s"
  if "$build/tests/fuzz/fuzz_$n" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -dict="$here/dict/$n.dict" \
      -artifact_prefix="$art" "$out" "$here/corpus/$n" >"$build/fuzz-$n.log" 2>&1; then
    tail -n 12 "$build/fuzz-$n.log" | grep -E '^stat::(number_of_executed_units|peak_rss)' || true
  else
    echo "run-fuzzers: $n FAILED (log: $build/fuzz-$n.log)"
    grep -E 'ERROR|SUMMARY|invariant|runtime error' "$build/fuzz-$n.log" | head -n 5 || true
    mkdir -p "$here/regressions/$n"
    for f in "$art"*; do
      [ -f "$f" ] || continue
      cp "$f" "$here/regressions/$n/$(basename "$f")"
      echo "run-fuzzers: saved $here/regressions/$n/$(basename "$f")"
    done
    failed="$failed $n"
  fi
done
if [ -n "$failed" ]; then
  echo "run-fuzzers: failures in:$failed"
  exit 1
fi
echo "run-fuzzers: all harnesses ran ${secs}s without a failure"
