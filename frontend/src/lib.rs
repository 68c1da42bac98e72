//! The wasm entry point: hydrates the server-rendered page. Every page but sign-in is a lazy route
//! (app/src/routes.rs), so hydration waits for the page's chunk first (`hydrate_lazy`).
use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_lazy(app::App);
}
