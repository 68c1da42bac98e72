#!/usr/bin/env bash
# README command 1: install what is missing, build in release mode, and run Paystage on the
# embedded SQLite database (data/paystage.db) with demo data, at http://127.0.0.1:3000.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
bash scripts/build-site.sh release
cargo build --release -p server --bin paystage
export PAYSTAGE_DEMO="${PAYSTAGE_DEMO:-true}"
exec target/release/paystage serve
