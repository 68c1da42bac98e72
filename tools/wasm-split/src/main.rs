//! `paystage-wasm-split IN.wasm OUT_DIR MAIN_OUT.wasm`: splits the wasm cargo built (linked with
//! `--emit-relocs`) at the split points Leptos's `#[lazy]` and `#[lazy_route]` mark. Writes one
//! `.wasm` per chunk into OUT_DIR, the loader `__wasm_split.______________________.js` (the name
//! Leptos's `HydrationScripts` preloads, and the module the split points import from), the
//! manifest `__wasm_split_manifest.json` (which chunks each lazy function needs), and the main
//! module to MAIN_OUT.wasm for wasm-bindgen (`--keep-lld-exports`: the chunks import from it).
use std::{path::Path, process::ExitCode};

/// The loader's module name as Leptos 0.8 expects it (`leptos::hydration`, cargo-leptos).
const LINK_NAME: &str = "./__wasm_split.______________________.js";
/// The main module's JS glue that wasm-bindgen writes, as the loader imports it.
const MAIN_MODULE: &str = "./paystage.js";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out_dir, main_out] = args.as_slice() else {
        eprintln!("usage: paystage-wasm-split IN.wasm OUT_DIR MAIN_OUT.wasm");
        return ExitCode::from(2);
    };
    match split(Path::new(input), Path::new(out_dir), Path::new(main_out)) {
        Ok(chunks) => {
            println!("wasm-split: {chunks} chunks");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasm-split: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn split(input: &Path, out_dir: &Path, main_out: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let wasm = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let mut opts = wasm_split_cli_support::Options::new(&wasm);
    opts.output_dir = out_dir;
    opts.main_out_path = main_out;
    opts.main_module = MAIN_MODULE;
    opts.link_name = LINK_NAME;
    let split = wasm_split_cli_support::transform(opts).map_err(|e| format!("{e:#}"))?;
    let manifest = serde_json::to_string_pretty(&split.prefetch_map)?;
    std::fs::write(out_dir.join("__wasm_split_manifest.json"), manifest)?;
    Ok(split.split_modules.len())
}
