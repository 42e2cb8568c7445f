#!/usr/bin/env bash
# The README's test command: installs what is missing, builds twice (a
# warnings-as-errors build, and an ASan+UBSan build that runs the suite),
# makes the development PKI, and runs every test with ctest.
#
#   ./tests/run.sh            everything (what CI runs)
#   TB_JOBS=2 ./tests/run.sh  parallel ctest jobs (default 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${TB_JOBS:-2}

./.ci/install-deps

if [[ ! -d ../shared/samples ]]; then
  echo "tests/run.sh: ../shared/samples (the canonical samples) not found beside the repository" >&2
  exit 1
fi

echo "== build (release, -Werror)"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTB_WERROR=ON >/dev/null
cmake --build build/release -j"$jobs"

echo "== build (ASan + UBSan, -Werror)"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DTB_SANITIZE=ON -DTB_WERROR=ON >/dev/null
cmake --build build/asan -j"$jobs"

echo "== development PKI"
./certs/make-dev-pki.sh build/pki >/dev/null

echo "== npm packages for the mock partners and GM/T interop checks"
npm ci --prefix tests/partners --no-audit --no-fund --loglevel=error
npm ci --prefix tests/crypto --no-audit --no-fund --loglevel=error
# Interop tests fail, rather than skip, when an independent tool is missing.
export TB_REQUIRE_INTEROP=1

echo "== tests (ASan + UBSan)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd build/asan
ctest --output-on-failure -j"$jobs"
