#!/usr/bin/env bash
# Issue #42's invoicing targets, in one run: `paystage bench invoicing` through a sandbox process
# over HTTP on SQLite and on PostgreSQL, each on a fresh database:
#   T0   = invoices/s at L = 0 ms processor latency and C = 32 invoicings in flight;
#   T250 = invoices/s at L = 250 ms and C = 256;
# target: T250 >= 0.9 x min(C / L, T0) on both databases (latency hidden up to the database's own
# ceiling), and on PostgreSQL T0 >= 0.2 x pgbench -N at C = 32, pgbench run in the same run.
# Prints one JSON object (last line) with the figures and the ratios.
# Usage: scripts/bench-http.sh [ORDERS_T0] [ORDERS_T250] [ROUNDS]   (defaults 4000 6000 1)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$HOME/.cargo/bin:${PATH}"
cd "$ROOT"
N0="${1:-4000}"; N1="${2:-6000}"; ROUNDS="${3:-1}"
ADMIN="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ROOT_URL="${ADMIN%/*}"
WORK="$(mktemp -d /tmp/paystage-bench-http.XXXXXX)"
DBS=()
cleanup() {
  for d in "${DBS[@]}"; do [ -n "$d" ] && psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release -q -p server --bin paystage
BIN="$ROOT/target/release/paystage"

# A fresh database of kind $1 ("sqlite" or "postgres"): sets URL (in this shell, so that the
# exit trap drops it).
fresh() {
  if [ "$1" = postgres ]; then
    local name="paystage_bench_$$_${#DBS[@]}"
    psql -q "$ADMIN" -c "CREATE DATABASE $name" >/dev/null
    DBS+=("$name")
    URL="$ROOT_URL/$name"
  else
    URL="sqlite://$WORK/bench-${#DBS[@]}-$RANDOM.db?mode=rwc"
    DBS+=("")
  fi
}

# One bench on database $1; prints its JSON line.
run() {
  local url="$1" n="$2" c="$3" l="$4"
  PAYSTAGE_LOG=warn "$BIN" bench invoicing --database "$url" --orders "$n" --concurrency "$c" --latency-ms "$l" 2>"$WORK/last.err" | tail -n1 \
    || { cat "$WORK/last.err" >&2; exit 1; }
}

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  for kind in sqlite postgres; do
    fresh "$kind"; t0="$(run "$URL" "$N0" 32 0)"
    echo "$kind T0  (L=0,   C=32):  $t0" >&2
    fresh "$kind"; t250="$(run "$URL" "$N1" 256 250)"
    echo "$kind T250 (L=250, C=256): $t250" >&2
    printf '{"round":%s,"database":"%s","t0":%s,"t250":%s}\n' "$round" "$kind" "$t0" "$t250" >>"$RESULTS"
  done
  name="paystage_pgbench_$$_$round"
  psql -q "$ADMIN" -c "CREATE DATABASE $name" >/dev/null
  DBS+=("$name")
  pgbench -i -q -s 10 "$ROOT_URL/$name" >/dev/null 2>&1
  tps="$(pgbench -N -n -c 32 -j 2 -T 15 "$ROOT_URL/$name" 2>/dev/null | awk '/^tps = / {print $3; exit}')"
  echo "pgbench -N (C=32): $tps tps" >&2
  printf '{"round":%s,"pgbench_tps":%s}\n' "$round" "$tps" >>"$RESULTS"
done

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out = {"runs": []}
for r in rows:
    if "pgbench_tps" in r:
        continue
    t0, t250 = r["t0"]["invoices_per_sec"], r["t250"]["invoices_per_sec"]
    ceiling = min(256 / 0.250, t0)
    run = {"round": r["round"], "database": r["database"], "t0": t0, "t250": t250,
           "t250_over_ceiling": round(t250 / ceiling, 3), "target": 0.9,
           "not_completed": r["t0"]["not_completed"] + r["t250"]["not_completed"],
           "p99_ms_t250": r["t250"]["p99_ms"]}
    if r["database"] == "postgres":
        tps = next(x["pgbench_tps"] for x in rows if x.get("round") == r["round"] and "pgbench_tps" in x)
        run["pgbench_tps"] = tps
        run["t0_over_pgbench"] = round(t0 / tps, 3)
        run["t0_target"] = 0.2
    out["runs"].append(run)
print(json.dumps(out))
EOF
