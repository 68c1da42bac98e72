//! Taking a card: Paystage sends the browser to the processor's hosted card page (the sandbox's, or
//! Adyen's) and takes back the stored card's reference; the browser is then sent on to the page
//! that asked with the token, card type, last four digits, holder and expiry as the processor holds
//! them (R-TOK-1). No card number is ever typed on, posted to or stored by Paystage.
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
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
    /// The store or channel the card is taken for: taken on the connector it pays through
    /// (R-PAR-5); none, or one that does not exist: the default connector.
    pub channel: Option<String>,
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

/// Paystage's page when the card cannot be taken or read back: what went wrong, and the way back.
/// (Cards are typed only on the processor's own page, never here.)
fn trouble(return_to: &str, error: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Card payment · Paystage</title><link rel=\"stylesheet\" href=\"/pkg/paystage.css\"></head>\
         <body><div class=\"login-wrap\"><div class=\"login-card acceptance\">\
         <div class=\"brand\"><span class=\"brand-mark\">P</span>Paystage</div>\
         <h1>Card payment</h1><div class=\"notice error\" role=\"alert\">{error}</div>\
         <p><a class=\"button secondary\" href=\"{ret}\">Go back</a></p>\
         </div></div></body></html>",
        ret = esc(return_to),
        error = esc(error),
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// The way to the processor's hosted card page: the browser is sent there and comes back here
/// with the stored card's id, whose details Paystage asks the processor for before sending the
/// browser on to the page that asked (R-TOK-1: the number is typed on the processor's origin only,
/// never on Paystage's). Without such a page no card can be taken, and the page says so.
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
    let channel = match channel_connector(&services, q.channel.as_deref()).await {
        Ok(c) => c,
        Err(e) => return trouble(&return_to, &crate::html::public_failure("No card can be taken for this store or channel.", &e)),
    };
    let connector_id = channel.map(|(_, c)| c);
    let channel_id = channel.map(|(ch, _)| ch);
    if let (Some(id), Some(shopper)) = (q.stored_payment_method_id.as_deref(), q.shopper_reference.as_deref()) {
        let token = payments::connector::adyen::stored_token(shopper, id);
        return match services.describe_token_on(connector_id, &token).await {
            Ok(Some(t)) => back_with(&return_to, &t, channel_id),
            Ok(None) => trouble(&return_to, "The processor does not know that card; enter it again."),
            Err(e) => trouble(&return_to, &crate::html::public_failure("The card could not be read back from the processor.", &e)),
        };
    }
    let Some(origin) = crate::security::expected_origin(&security, &req) else {
        return trouble(&return_to, "This request's address is not Paystage's own, so the processor could not send the browser back here.");
    };
    let shopper = format!("ps-{}", uuid::Uuid::new_v4().simple());
    let back = match channel_id {
        Some(ch) => format!("{origin}/processor/acceptance?return={}&channel={ch}", enc(&return_to)),
        None => format!("{origin}/processor/acceptance?return={}", enc(&return_to)),
    };
    let processor = match connector_id {
        Some(id) => services.processor(id),
        None => services.connector.clone(),
    };
    match processor.card_page(&shopper, &back) {
        Some(url) => Redirect::to(&url).into_response(),
        None => trouble(&return_to, "No card can be taken: this Paystage has no processor card page configured (PAYSTAGE_PROCESSOR_URL and PAYSTAGE_PROCESSOR_CARD_PAGE). Ask your administrator."),
    }
}

/// The channel `raw` names (an id) and the connector it takes cards on; None when no channel is
/// named or it does not exist (the default connector takes the card).
async fn channel_connector(services: &Services, raw: Option<&str>) -> payments::error::ServiceResult<Option<(i32, i32)>> {
    use sea_orm::EntityTrait;
    let Some(id) = raw.and_then(|r| r.trim().parse::<i32>().ok()) else {
        return Ok(None);
    };
    let Some(chan) = payments::entity::channel::Entity::find_by_id(id).one(&services.db).await? else {
        return Ok(None);
    };
    let conn = payments::service::card_payments::connector_for_channel(&services.db, &chan).await?;
    Ok(Some((chan.id, conn.id)))
}

/// Sends the browser back to `return_to` with the card's token and details (never its number),
/// and the channel it was taken for.
fn back_with(return_to: &str, t: &payments::connector::CardToken, channel: Option<i32>) -> Response {
    let channel = channel.map(|c| format!("&channel={c}")).unwrap_or_default();
    Redirect::to(&format!(
        "{return_to}?token={}&card_type={}&last_four={}&holder={}&expiry={}{channel}",
        enc(&t.token),
        enc(&t.card_type),
        enc(&t.last_four),
        enc(&t.holder),
        enc(&t.expiry)
    ))
    .into_response()
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
