//! The processor simulator's hosted acceptance page, served on its own route as a payment service
//! provider's page would be. The card number is typed here and handed only to the simulator's
//! `tokenize`; the browser is sent back to Paystage with the token, card type, last four digits,
//! holder and expiry (R-TOK-1). Nothing here logs or stores the card number.
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use payments::connector::CardEntry;
use payments::service::Services;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct AcceptanceQuery {
    #[serde(rename = "return")]
    pub return_to: Option<String>,
    /// Set by the processor's hosted page on its way back (with `shopperReference`).
    #[serde(rename = "storedPaymentMethodId")]
    pub stored_payment_method_id: Option<String>,
    #[serde(rename = "shopperReference")]
    pub shopper_reference: Option<String>,
    /// `Cancelled` when the shopper left the processor's page without a card.
    #[serde(rename = "resultCode")]
    pub result_code: Option<String>,
}

#[derive(Deserialize)]
pub struct AcceptanceForm {
    #[serde(rename = "return")]
    pub return_to: String,
    pub number: String,
    pub expiry: String,
    pub holder: String,
}

use crate::html::{enc, esc};

/// Only a local Paystage path without a query is a valid return address (the token is appended
/// as its query): parsed by `app::nav::local_path`, never prefix-checked (issue #40).
fn safe_return(r: Option<&str>) -> String {
    match r.and_then(app::nav::local_path) {
        Some(p) if !p.contains('?') && !p.contains('#') => p.to_string(),
        _ => "/orders/new".to_string(),
    }
}

fn page(return_to: &str, holder: &str, expiry: &str, error: Option<&str>) -> Response {
    let error = error.map(|e| format!("<div class=\"notice error\" role=\"alert\">{}</div>", esc(e))).unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Secure card payment · Processor simulator</title><link rel=\"stylesheet\" href=\"/pkg/paystage.css\"></head>\
         <body><div class=\"login-wrap\"><div class=\"login-card acceptance\">\
         <div class=\"brand\"><span class=\"brand-mark\">S</span>Processor simulator</div>\
         <h1>Card details</h1><p class=\"muted small\">Entered on the payment processor's page. The merchant receives a token, never the card number.</p>\
         {error}\
         <form method=\"post\" action=\"/processor/acceptance\" autocomplete=\"off\">\
         <input type=\"hidden\" name=\"return\" value=\"{ret}\">\
         <div class=\"field\"><label for=\"number\">Card number</label><input id=\"number\" name=\"number\" inputmode=\"numeric\" autocomplete=\"off\" required></div>\
         <div class=\"field\"><label for=\"expiry\">Expiry (MM/YY)</label><input id=\"expiry\" name=\"expiry\" value=\"{expiry}\" placeholder=\"12/29\" required></div>\
         <div class=\"field\"><label for=\"holder\">Name on card</label><input id=\"holder\" name=\"holder\" value=\"{holder}\" required></div>\
         <button type=\"submit\" class=\"primary wide\">Save card</button></form>\
         <p class=\"small\"><a href=\"{ret}\">Cancel</a> · test cards are listed on the Processor simulator page.</p>\
         </div></div></body></html>",
        ret = esc(return_to),
        holder = esc(holder),
        expiry = esc(expiry),
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// The card page: with a processor that has a hosted card page (the sandbox), the browser is
/// sent there and comes back here with the stored card's id, whose details Paystage asks the
/// processor for before sending the browser on to the page that asked (R-TOK-1: the number is
/// typed on the processor's origin only). Otherwise Paystage's own page, whose back end is the
/// in-process simulator's.
pub async fn form(
    State(services): State<Services>,
    axum::Extension(security): axum::Extension<std::sync::Arc<crate::security::SecurityConfig>>,
    Query(q): Query<AcceptanceQuery>,
    req: axum::extract::Request,
) -> Response {
    let return_to = safe_return(q.return_to.as_deref());
    if q.result_code.as_deref() == Some("Cancelled") {
        return Redirect::to(&return_to).into_response();
    }
    if let (Some(id), Some(shopper)) = (q.stored_payment_method_id.as_deref(), q.shopper_reference.as_deref()) {
        let token = payments::connector::adyen::stored_token(shopper, id);
        return match services.describe_token(&token).await {
            Ok(Some(t)) => back_with(&return_to, &t),
            Ok(None) => page(&return_to, "", "", Some("The processor does not know that card; enter it again.")),
            Err(e) => page(&return_to, "", "", Some(&crate::html::public_failure("The card could not be read back from the processor.", &e))),
        };
    }
    if let Some(origin) = crate::security::expected_origin(&security, &req) {
        let shopper = format!("ps-{}", uuid::Uuid::new_v4().simple());
        let back = format!("{origin}/processor/acceptance?return={}", enc(&return_to));
        if let Some(url) = services.connector.card_page(&shopper, &back) {
            return Redirect::to(&url).into_response();
        }
    }
    page(&return_to, "", "", None)
}

/// Sends the browser back to `return_to` with the card's token and details (never its number).
fn back_with(return_to: &str, t: &payments::connector::CardToken) -> Response {
    Redirect::to(&format!(
        "{return_to}?token={}&card_type={}&last_four={}&holder={}&expiry={}",
        enc(&t.token),
        enc(&t.card_type),
        enc(&t.last_four),
        enc(&t.holder),
        enc(&t.expiry)
    ))
    .into_response()
}

pub async fn submit(State(services): State<Services>, Form(f): Form<AcceptanceForm>) -> Response {
    let return_to = safe_return(Some(&f.return_to));
    let card = CardEntry { number: f.number, expiry: f.expiry.clone(), holder: f.holder.clone() };
    match services.tokenize(card).await {
        Ok(t) => back_with(&return_to, &t),
        Err(payments::connector::ConnectorError::Invalid(m)) => page(&return_to, &f.holder, &f.expiry, Some(&m)),
        // The processor's own error text is for the log, not for whoever is at the page.
        Err(e) => page(&return_to, &f.holder, &f.expiry, Some(&crate::html::public_failure("The card could not be saved.", &e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return(Some("/orders/new")), "/orders/new");
        for bad in ["https://evil.example", "//evil.example", "/\\evil", "/orders/new?x=1"] {
            assert_eq!(safe_return(Some(bad)), "/orders/new", "{bad}");
        }
    }

    #[test]
    fn values_are_escaped_and_encoded() {
        assert_eq!(esc("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
        assert_eq!(enc("Jamie O'Neil & co"), "Jamie%20O%27Neil%20%26%20co");
    }
}
