//! The sandbox's hosted card page, on the sandbox's own origin: the shopper types the card here,
//! the sandbox stores it for the merchant's shopper, and the browser goes back to the merchant's
//! return URL with the stored payment method's id only. The merchant (Paystage) then reads the
//! card's brand, last four, holder and expiry from `/storedPaymentMethods`, never from the
//! browser, and never sees the number (R-TOK-1).
use super::{keys, Sandbox};
use crate::html::esc;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use crate::connector::{CardEntry, Connector, ConnectorError};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct HostedQuery {
    merchant_account: Option<String>,
    shopper_reference: Option<String>,
    return_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HostedForm {
    merchant_account: String,
    shopper_reference: String,
    return_url: String,
    number: String,
    expiry: String,
    holder: String,
}

/// A return URL is an absolute http(s) URL without credentials in it.
pub(super) fn valid_return(raw: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(raw.trim()).ok()?;
    let ok = matches!(url.scheme(), "http" | "https") && url.username().is_empty() && url.password().is_none() && url.host_str().is_some() && url.fragment().is_none();
    ok.then_some(url)
}

fn page(q: &HostedQuery, holder: &str, expiry: &str, error: Option<&str>) -> Response {
    let error = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Card details · Paystage processor sandbox</title><style>\
         body{{font:15px/1.45 system-ui,sans-serif;background:#eef1f5;color:#18202b;margin:0}}\
         main{{max-width:420px;margin:48px auto;background:#fff;border:1px solid #d5dbe3;border-radius:10px;padding:28px}}\
         h1{{font-size:20px;margin:0 0 4px}} .muted{{color:#5b6675;font-size:13px}} label{{display:block;font-weight:600;margin:14px 0 4px}}\
         input{{width:100%;box-sizing:border-box;padding:9px 10px;border:1px solid #b8c1cc;border-radius:6px;font:inherit}}\
         button{{margin-top:20px;width:100%;padding:10px;border:0;border-radius:6px;background:#1d5fd1;color:#fff;font:inherit;font-weight:600;cursor:pointer}}\
         .error{{background:#fdecec;border:1px solid #e2a3a3;color:#8a1c1c;padding:8px 10px;border-radius:6px}} .brand{{font-weight:700;color:#1d5fd1;margin-bottom:16px}}\
         </style></head><body><main><div class=\"brand\">Processor sandbox</div>\
         <h1>Card details</h1><p class=\"muted\">You are on the payment processor's page. The merchant receives a reference to the card, never its number.</p>\
         {error}<form method=\"post\" action=\"/hpp/cards\" autocomplete=\"off\">\
         <input type=\"hidden\" name=\"merchantAccount\" value=\"{merchant}\"><input type=\"hidden\" name=\"shopperReference\" value=\"{shopper}\">\
         <input type=\"hidden\" name=\"returnUrl\" value=\"{ret}\">\
         <label for=\"number\">Card number</label><input id=\"number\" name=\"number\" inputmode=\"numeric\" autocomplete=\"off\" required>\
         <label for=\"expiry\">Expiry (MM/YY)</label><input id=\"expiry\" name=\"expiry\" value=\"{expiry}\" placeholder=\"12/29\" required>\
         <label for=\"holder\">Name on card</label><input id=\"holder\" name=\"holder\" value=\"{holder}\" required>\
         <button type=\"submit\">Save card</button></form>{cancel}</main></body></html>",
        merchant = esc(q.merchant_account.as_deref().unwrap_or("")),
        shopper = esc(q.shopper_reference.as_deref().unwrap_or("")),
        ret = esc(q.return_url.as_deref().unwrap_or("")),
        holder = esc(holder),
        expiry = esc(expiry),
        cancel = cancel_link(q.return_url.as_deref().unwrap_or("")),
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// Back to the merchant without a card: its return URL with `resultCode=Cancelled`.
fn cancel_link(return_url: &str) -> String {
    match valid_return(return_url) {
        Some(mut url) => {
            url.query_pairs_mut().append_pair("resultCode", "Cancelled");
            format!("<p class=\"muted\"><a href=\"{}\">Cancel and go back</a></p>", esc(url.as_str()))
        }
        None => String::new(),
    }
}

fn refused(message: &str) -> Response {
    (axum::http::StatusCode::BAD_REQUEST, [(header::CACHE_CONTROL, "no-store")], Html(format!("<!DOCTYPE html><title>Refused</title><p>{}</p>", esc(message)))).into_response()
}

/// Checks what the merchant sent the shopper with: its merchant account, a shopper reference and
/// a return URL.
fn check(s: &Sandbox, merchant: &str, shopper: &str, return_url: &str) -> Result<(), &'static str> {
    if merchant != s.inner.options.merchant_account {
        return Err("This page was opened for an unknown merchant account.");
    }
    if shopper.is_empty() || shopper.len() > 256 {
        return Err("This page needs the shopper's reference.");
    }
    valid_return(return_url).map(|_| ()).ok_or("This page needs an http(s) return address.")
}

pub(super) async fn form(State(s): State<Sandbox>, Query(q): Query<HostedQuery>) -> Response {
    if let Err(m) = check(&s, q.merchant_account.as_deref().unwrap_or(""), q.shopper_reference.as_deref().unwrap_or(""), q.return_url.as_deref().unwrap_or("")) {
        return refused(m);
    }
    page(&q, "", "", None)
}

pub(super) async fn submit(State(s): State<Sandbox>, Form(f): Form<HostedForm>) -> Response {
    if let Err(m) = check(&s, &f.merchant_account, &f.shopper_reference, &f.return_url) {
        return refused(m);
    }
    let Some(mut back) = valid_return(&f.return_url) else { return refused("This page needs an http(s) return address.") };
    let q = HostedQuery { merchant_account: Some(f.merchant_account.clone()), shopper_reference: Some(f.shopper_reference.clone()), return_url: Some(f.return_url.clone()) };
    let card = CardEntry { number: f.number, expiry: f.expiry.clone(), holder: f.holder.clone() };
    match s.inner.engine.tokenize(card).await {
        Ok(t) => {
            if let Err(e) = keys::set_owner(&s, &t.token, &f.shopper_reference).await {
                return page(&q, &f.holder, &f.expiry, Some(&crate::html::public_failure("The card could not be saved.", &e)));
            }
            back.query_pairs_mut().append_pair("storedPaymentMethodId", &t.token).append_pair("shopperReference", &f.shopper_reference);
            Redirect::to(back.as_str()).into_response()
        }
        Err(ConnectorError::Invalid(m)) => page(&q, &f.holder, &f.expiry, Some(&m)),
        Err(e) => page(&q, &f.holder, &f.expiry, Some(&crate::html::public_failure("The card could not be saved.", &e))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn return_addresses_are_absolute_http_without_credentials() {
        assert!(super::valid_return("http://127.0.0.1:3000/customers/7/cards/returned").is_some());
        assert!(super::valid_return("https://shop.example/back?x=1").is_some());
        for bad in ["javascript:alert(1)", "/local/path", "//evil.example", "https://user:pw@evil.example/", "data:text/html,x", "ftp://x/", "https://x/#frag", ""] {
            assert!(super::valid_return(bad).is_none(), "{bad}");
        }
    }
}
