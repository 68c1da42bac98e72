#!/usr/bin/env bash
# README command 2: install what is missing, then run every test: the Rust unit and integration
# tests (each database test on SQLite and on PostgreSQL) and the Playwright suite against a freshly
# built server. Exits non-zero on any failure; prints each runner's summary and a total.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh" || { echo "test: setup failed"; exit 1; }
set +e
cd "$ROOT"

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "test: PostgreSQL is not answering on 127.0.0.1:5432; starting it"
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "test: FAILED: PostgreSQL is not reachable at 127.0.0.1:5432 and could not be started."
  echo "      Every database test also runs on PostgreSQL; start it, or set TEST_DATABASE_URL."
  exit 1
fi

LOG="$(mktemp -d)"
status=0
bash scripts/build-site.sh debug || exit 1

echo "== cargo test (workspace; SQLite and PostgreSQL)"
cargo test --workspace --exclude frontend --no-fail-fast 2>&1 | tee "$LOG/cargo.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# cargo test also built target/debug/paystage, the binary the browser tests start.
echo "== Playwright (Chromium)"
(cd end2end && PAYSTAGE_BIN="$ROOT/target/debug/paystage" npx playwright test 2>&1) | tee "$LOG/playwright.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

rust_passed=$(grep -E '^test result:' "$LOG/cargo.txt" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
rust_failed=$(grep -E '^test result:' "$LOG/cargo.txt" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
pw_passed=$(grep -Eo '^ *[0-9]+ passed' "$LOG/playwright.txt" | grep -Eo '[0-9]+' | tail -n1)
pw_failed=$(grep -Eo '^ *[0-9]+ failed' "$LOG/playwright.txt" | grep -Eo '[0-9]+' | tail -n1)
rust_passed=${rust_passed:-0}; rust_failed=${rust_failed:-0}; pw_passed=${pw_passed:-0}; pw_failed=${pw_failed:-0}
# The failures' own messages once more at the very end, where a log's tail shows them: cargo
# prints them mid-log (before the browser tests' output), Playwright before its summary.
if [ "$rust_failed" -gt 0 ]; then
  echo
  echo "== Rust failures (again)"
  # Without the backtraces' frames: each failure's place and message, then the list of failures.
  sed -n '/^failures:$/,/^test result:/p' "$LOG/cargo.txt" \
    | grep -vE '^test result:|^stack backtrace:|^ +[0-9]+: |^ +at |^note: Some details are omitted' | head -c 12000
fi
if [ "$pw_failed" -gt 0 ]; then
  echo
  echo "== Playwright failures (again)"
  grep -E '^ +[0-9]+\) |Error:|expect\(' "$LOG/playwright.txt" | head -n 80
fi
echo
echo "Rust: $rust_passed passed, $rust_failed failed · Playwright: $pw_passed passed, $pw_failed failed"
if [ "$status" -ne 0 ] && [ $((rust_failed + pw_failed)) -eq 0 ]; then rust_failed=1; fi
echo "total: $((rust_passed + pw_passed)) passed, $((rust_failed + pw_failed)) failed"
exit $status
