#!/usr/bin/env bash
# Runs `paystage bench invoicing` on a fresh PostgreSQL database and, in the same run, pgbench -N
# (simple updates) at the same concurrency on another fresh database; prints both and the ratio
# (issue 3's target: invoices/s >= 0.25 x pgbench tps).
# Usage: scripts/bench-postgres.sh [ORDERS] [CONCURRENCY] [LATENCY_MS]   (defaults 2000 8 0)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$HOME/.cargo/bin:${PATH}"
cd "$ROOT"
ORDERS="${1:-2000}"; C="${2:-8}"; L="${3:-0}"
ADMIN="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ROOT_URL="${ADMIN%/*}"
BENCH_DB="paystage_bench_$$"; PGB_DB="paystage_pgbench_$$"
psql -q "$ADMIN" -c "CREATE DATABASE $BENCH_DB" -c "CREATE DATABASE $PGB_DB"
trap 'psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "DROP DATABASE IF EXISTS $PGB_DB WITH (FORCE)"' EXIT
cargo build --release -q -p server --bin paystage
line="$(target/release/paystage bench invoicing --database "$ROOT_URL/$BENCH_DB" --orders "$ORDERS" --concurrency "$C" --latency-ms "$L" | tail -n1)"
echo "paystage: $line"
pgbench -i -q -s 10 "$ROOT_URL/$PGB_DB" >/dev/null 2>&1
tps="$(pgbench -N -n -c "$C" -j 2 -T 15 "$ROOT_URL/$PGB_DB" 2>/dev/null | awk '/^tps = / {print $3; exit}')"
echo "pgbench -N: $tps tps at concurrency $C"
ips="$(echo "$line" | sed -E 's/.*"invoices_per_sec":([0-9.]+).*/\1/')"
awk -v i="$ips" -v t="$tps" 'BEGIN { printf "ratio: %.3f invoices per pgbench transaction (target >= 0.25)\n", i / t }'
