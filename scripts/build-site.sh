#!/usr/bin/env bash
# Builds the browser half into target/site: the hydrate wasm (+ JS glue) and the stylesheet.
# Usage: build-site.sh [debug|release]. Equivalent to what cargo-leptos does, without needing it
# (cargo-leptos takes 15-30 minutes to install on these machines; see docs/BUILD.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${1:-debug}"
cd "$ROOT"
# The wasm build has a target directory of its own: it needs RUSTC_BOOTSTRAP (for -Zbuild-std) and
# other features of the shared crates, and in the same directory as the server's build each would
# invalidate the other's artefacts (every switch rebuilt the server's dependencies, 6-8 minutes).
export CARGO_TARGET_DIR="$ROOT/target/wasm-build"
# Every page is a lazy route (app/src/routes.rs): the wasm is linked with its relocations so that
# paystage-wasm-split (tools/wasm-split, installed by setup.sh) can cut each page into a chunk.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-Clink-args=--emit-relocs"
if [ "$PROFILE" = release ]; then
  RUSTC_BOOTSTRAP=1 cargo build -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release -Zbuild-std=std,panic_abort
  WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm"
else
  RUSTC_BOOTSTRAP=1 cargo build -p frontend --lib --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
  WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/debug/frontend.wasm"
fi
mkdir -p target/site/pkg
OUT=target/site/pkg/paystage_bg.wasm
MARK=target/site/pkg/.built-from
# Skip wasm-bindgen and wasm-opt when the bundle was already made from this very wasm.
if [ -f "$OUT" ] && [ -f "$MARK" ] && [ "$(cat "$MARK")" = "$PROFILE" ] && [ "$OUT" -nt "$WASM" ]; then
  echo "site: wasm bundle is up to date"
else
  # The chunks, the loader and the manifest go straight into pkg; the main module goes through
  # wasm-bindgen, which must keep the exports the chunks import (and their names).
  rm -f target/site/pkg/*.wasm target/site/pkg/__wasm_split*
  paystage-wasm-split "$WASM" target/site/pkg "$CARGO_TARGET_DIR/paystage_split.wasm"
  wasm-bindgen --target web --no-typescript --keep-lld-exports --no-demangle --out-dir target/site/pkg --out-name paystage \
    "$CARGO_TARGET_DIR/paystage_split.wasm"
  if [ "$PROFILE" = release ] && command -v wasm-opt >/dev/null; then
    # The features rustc's wasm32 target emits by default; wasm-opt must be told it may keep them.
    for f in target/site/pkg/*.wasm; do
      wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
        --enable-reference-types --enable-multivalue "$f" -o "$f"
    done
  fi
  echo "$PROFILE" > "$MARK"
fi
cp style/main.css target/site/pkg/paystage.css
# Content-hashed names for the main module and its JS glue, which the server serves as immutable
# (a year's cache, no revalidation): paystage.<hash>.js and paystage.<hash>.wasm, named in hash.txt
# for Leptos's HydrationScripts. The chunk loader imports the glue, so it names the hashed copy (one
# module instance). The other files keep their names and are revalidated (no-cache).
rm -f target/site/pkg/paystage.[0-9a-f]*.js target/site/pkg/paystage.[0-9a-f]*.wasm
JS_HASH="$(sha256sum target/site/pkg/paystage.js | cut -c1-16)"
WASM_HASH="$(sha256sum "$OUT" | cut -c1-16)"
cp target/site/pkg/paystage.js "target/site/pkg/paystage.$JS_HASH.js"
cp "$OUT" "target/site/pkg/paystage.$WASM_HASH.wasm"
sed -i -E "s#\./paystage(\.[0-9a-f]+)?\.js#./paystage.$JS_HASH.js#g" target/site/pkg/__wasm_split.______________________.js
printf 'js: %s\nwasm: %s\n' "$JS_HASH" "$WASM_HASH" > target/site/pkg/hash.txt
# A release bundle is served pre-compressed (brotli at its best, and gzip), made once here instead
# of on every request; a debug bundle is compressed on the fly, so no stale copy may stay.
rm -f target/site/pkg/*.br target/site/pkg/*.gz
if [ "$PROFILE" = release ]; then
  node -e '
    const fs = require("fs"), zlib = require("zlib");
    const files = fs.readdirSync("target/site/pkg").filter(f => /\.(wasm|js|css)$/.test(f));
    for (const f of files) {
      const p = "target/site/pkg/" + f, data = fs.readFileSync(p);
      fs.writeFileSync(p + ".br", zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }));
      fs.writeFileSync(p + ".gz", zlib.gzipSync(data, { level: 9 }));
    }'
fi
cp -r public/. target/site/
echo "site: built target/site ($PROFILE, wasm $(du -k target/site/pkg/paystage_bg.wasm | cut -f1) KiB$([ -f target/site/pkg/paystage_bg.wasm.br ] && echo ", $(du -k target/site/pkg/paystage_bg.wasm.br | cut -f1) KiB brotli"))"
