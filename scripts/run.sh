#!/usr/bin/env bash
# README command 1: install what is missing, build in release mode, and run Paystage on the
# embedded SQLite database (data/paystage.db) with demo data, at http://127.0.0.1:3000, and the
# processor sandbox beside it as a second process (data/sandbox, http://127.0.0.1:8081), which
# Paystage reaches over HTTP with the adyen connector and which sends it signed notifications.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
bash scripts/build-site.sh release
cargo build --release -p server --bin paystage
export PAYSTAGE_DEMO="${PAYSTAGE_DEMO:-true}"

# The sandbox's API key and HMAC key: made once, kept with its store (never printed).
SANDBOX_DIR="${PAYSTAGE_SANDBOX_DATA:-data/sandbox}"
SANDBOX_PORT="${PAYSTAGE_SANDBOX_PORT:-8081}"
mkdir -p "$SANDBOX_DIR"
if [ ! -f "$SANDBOX_DIR/keys.env" ]; then
  umask 077
  printf 'PAYSTAGE_SANDBOX_API_KEY=%s\nPAYSTAGE_SANDBOX_HMAC_KEY=%s\n' "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > "$SANDBOX_DIR/keys.env"
fi
set -a; source "$SANDBOX_DIR/keys.env"; set +a
# The server's secret key, which seals the keys of connectors set up on the Payment connectors
# page: made once, kept beside the data (never printed). Servers sharing a database share it.
if [ -z "${PAYSTAGE_SECRET_KEY:-}" ]; then
  mkdir -p data
  if [ ! -f data/secret.env ]; then
    (umask 077; printf 'PAYSTAGE_SECRET_KEY=%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > data/secret.env)
  fi
  set -a; source data/secret.env; set +a
fi
# On the sandbox's first start, an earlier Paystage's processor records (kept by its in-process
# simulator in Paystage's database, or beside it in paystage.simulator.db) move into its store.
IMPORT=()
if [ ! -f "$SANDBOX_DIR/sandbox.db" ]; then
  DB_URL="${DATABASE_URL:-sqlite://data/paystage.db}"
  case "$DB_URL" in
    sqlite:*)
      DB_FILE="${DB_URL#sqlite:}"; DB_FILE="${DB_FILE#//}"; DB_FILE="${DB_FILE%%\?*}"
      [ -f "$DB_FILE" ] && IMPORT+=(--import-from "sqlite://$DB_FILE")
      [ -f "${DB_FILE%.db}.simulator.db" ] && IMPORT+=(--import-from "sqlite://${DB_FILE%.db}.simulator.db")
      ;;
    *) IMPORT+=(--import-from "$DB_URL") ;;
  esac
fi
target/release/paystage sandbox --port "$SANDBOX_PORT" --data "$SANDBOX_DIR" --merchant-account PaystageDemo \
  --notify-url "http://127.0.0.1:${PAYSTAGE_PORT:-3000}/webhooks/adyen/sandbox" "${IMPORT[@]}" &
SANDBOX_PID=$!
trap 'kill "$SANDBOX_PID" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SANDBOX_PORT") 2>/dev/null && break
  kill -0 "$SANDBOX_PID" 2>/dev/null || { echo "run: the processor sandbox did not start" >&2; exit 1; }
  sleep 0.1
done

export PAYSTAGE_PROCESSOR_URL="http://127.0.0.1:$SANDBOX_PORT/checkout/v72"
export PAYSTAGE_PROCESSOR_API_KEY="$PAYSTAGE_SANDBOX_API_KEY"
export PAYSTAGE_PROCESSOR_MERCHANT_ACCOUNT=PaystageDemo
export PAYSTAGE_PROCESSOR_CARD_PAGE="http://127.0.0.1:$SANDBOX_PORT/hpp/cards"
export PAYSTAGE_CONNECTOR_SANDBOX_HMAC_KEY="$PAYSTAGE_SANDBOX_HMAC_KEY"
target/release/paystage serve
