#!/usr/bin/env bash
# Installs whatever this machine is missing to build and test Paystage, and nothing it already has.
# Sourced by run.sh and test.sh. Debian 12 (bookworm); needs root (or sudo) for apt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

APT_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 chromium postgresql-client openssl)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# One toolchain for server and wasm: Debian's rustc-web (with its std source for -Zbuild-std).
# RUSTC_BOOTSTRAP is set by build-site.sh for the wasm build only: cargo fingerprints it, so setting
# it here would rebuild every host crate whenever someone also runs plain `cargo test`.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:${PATH}"

# wasm-bindgen-cli must match the wasm-bindgen version locked in Cargo.lock.
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' "$ROOT/Cargo.lock")"
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WB_VERSION"; then
  echo "setup: installing wasm-bindgen-cli $WB_VERSION (a few minutes, once per machine)"
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --force --quiet
fi

# The wasm splitter (tools/wasm-split, outside the workspace): cuts each lazy page into a chunk.
# Reinstalled when its sources change (a stamp named by their hash).
WS_HASH="$(cat "$ROOT"/tools/wasm-split/Cargo.toml "$ROOT"/tools/wasm-split/Cargo.lock "$ROOT"/tools/wasm-split/src/*.rs | sha256sum | cut -c1-16)"
if [ ! -f "$HOME/.cargo/bin/.paystage-wasm-split-$WS_HASH" ] || ! command -v paystage-wasm-split >/dev/null; then
  echo "setup: installing paystage-wasm-split (about a minute, once per machine)"
  cargo install --locked --quiet --force --path "$ROOT/tools/wasm-split" --target-dir "$ROOT/target/tools"
  rm -f "$HOME"/.cargo/bin/.paystage-wasm-split-* && touch "$HOME/.cargo/bin/.paystage-wasm-split-$WS_HASH"
fi

# Playwright and wasm-opt (binaryen) from the npm registry; the browser is Debian's Chromium.
# (openssl makes the throwaway certificate of the Adyen client-library test.)
if [ ! -x "$ROOT/end2end/node_modules/.bin/playwright" ] || [ "$ROOT/end2end/package-lock.json" -nt "$ROOT/end2end/node_modules/.package-lock.json" ]; then
  echo "setup: installing npm packages for end2end"
  (cd "$ROOT/end2end" && npm ci --no-audit --no-fund --loglevel=error)
fi
