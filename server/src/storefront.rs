//! The online storefront's web-shop checkout (R-TOK-7), served for the online store channel at
//! `/shop`. Shoppers are not Paystage users: the page is public, like any shop. The card is
//! entered on the processor's acceptance page, which sends back a token; the order is placed and
//! authorized through `payments::service::storefront`, and nothing of the card is saved on file.
use crate::html::esc;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use payments::domain::order::PaymentStatus;
use payments::error::ServiceError;
use payments::service::orders::CardForm;
use payments::service::storefront::{self, Checkout, CATALOG};
use payments::service::Services;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct CardQuery {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub card_type: String,
    #[serde(default)]
    pub last_four: String,
    #[serde(default)]
    pub holder: String,
    #[serde(default)]
    pub expiry: String,
}

#[derive(Deserialize, Default)]
pub struct CheckoutForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub quantity_1: String,
    #[serde(default)]
    pub quantity_2: String,
    #[serde(default)]
    pub quantity_3: String,
    #[serde(flatten)]
    pub card: CardQuery,
}

fn frame(title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Paystage web shop</title><link rel=\"stylesheet\" href=\"/pkg/paystage.css\"></head>\
         <body class=\"shop\"><div class=\"login-wrap\"><div class=\"login-card shop-card\">\
         <div class=\"brand\"><span class=\"brand-mark\">W</span>Online store</div>{body}</div></div></body></html>",
        title = esc(title)
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// The checkout page; `channel` is the web shop's, whose connector takes the card.
fn checkout_page(f: &CheckoutForm, errors: &[(String, String)], channel: Option<i32>) -> Response {
    let err = |field: &str| {
        errors.iter().filter(|(k, _)| k == field).map(|(_, m)| format!("<p class=\"field-error\" data-field=\"{}\">{}</p>", esc(field), esc(m))).collect::<String>()
    };
    let general = errors
        .iter()
        .filter(|(k, _)| k.is_empty())
        .map(|(_, m)| format!("<div class=\"notice error\" role=\"alert\">{}</div>", esc(m)))
        .collect::<String>();
    let qty = [&f.quantity_1, &f.quantity_2, &f.quantity_3];
    let rows: String = CATALOG
        .iter()
        .enumerate()
        .map(|(i, (item, price))| {
            let n = i + 1;
            format!(
                "<tr><td>{item}</td><td class=\"num\">{price} USD</td><td><input class=\"qty\" name=\"quantity_{n}\" aria-label=\"Quantity of {item}\" \
                 inputmode=\"numeric\" value=\"{q}\"></td></tr>",
                item = esc(item),
                q = esc(qty[i]),
            )
        })
        .collect();
    let qty_errors: String = (1..=CATALOG.len()).map(|n| err(&format!("quantity_{n}"))).collect();
    let c = &f.card;
    let has_card = !c.token.is_empty();
    let acceptance = match channel {
        Some(ch) => format!("/processor/acceptance?return=/shop&amp;channel={ch}"),
        None => "/processor/acceptance?return=/shop".to_string(),
    };
    let card = if has_card {
        format!(
            "<p data-testid=\"card\">{} •••• {} · {} · expires {} · <a href=\"{acceptance}\">Use another card</a></p>",
            esc(&c.card_type),
            esc(&c.last_four),
            esc(&c.holder),
            esc(&c.expiry)
        )
    } else {
        format!("<p><a class=\"button secondary\" href=\"{acceptance}\">Enter your card on the secure payment page</a></p>")
    };
    let hidden: String = [("token", &c.token), ("card_type", &c.card_type), ("last_four", &c.last_four), ("holder", &c.holder), ("expiry", &c.expiry)]
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
        .collect();
    let body = format!(
        "<h1>Checkout</h1><p class=\"muted small\">Your card is entered on the payment processor's page; this shop does not keep it.</p>{general}\
         <form method=\"post\" action=\"/shop\">\
         <h2>1. Payment</h2>{card}{card_err}{hidden}\
         <h2>2. Your order</h2>\
         <table class=\"grid\"><thead><tr><th>Item</th><th class=\"num\">Price</th><th>Quantity</th></tr></thead><tbody>{rows}</tbody></table>{qty_errors}\
         <div class=\"field\"><label for=\"email\">E-mail</label><input id=\"email\" name=\"email\" type=\"email\" value=\"{email}\" autocomplete=\"email\">{email_err}</div>\
         <div class=\"field\"><label for=\"name\">Name</label><input id=\"name\" name=\"name\" value=\"{name}\" autocomplete=\"name\">{name_err}</div>\
         <button type=\"submit\" class=\"primary wide\"{disabled}>Pay now</button></form>",
        email = esc(&f.email),
        name = esc(&f.name),
        email_err = err("email"),
        name_err = err("name"),
        card_err = err("card"),
        disabled = if has_card { "" } else { " disabled" },
    );
    frame("Checkout", &body)
}

/// The card's details as the processor describes its token; the query's own details are not
/// trusted. An unknown token is dropped with a message.
async fn described(services: &Services, connector_id: Option<i32>, q: CardQuery) -> (CardQuery, Option<String>) {
    if q.token.trim().is_empty() {
        return (CardQuery::default(), None);
    }
    let card = CardForm { token: q.token, ..Default::default() };
    match payments::service::cards::verified(services, connector_id, &card).await {
        Ok(c) => (CardQuery { token: c.token, card_type: c.card_type, last_four: c.last_four, holder: c.holder, expiry: c.expiry }, None),
        Err(ServiceError::Validation(fields)) => (CardQuery::default(), fields.into_iter().next().map(|f| f.message)),
        Err(e) => (CardQuery::default(), Some(crate::html::public_failure("We could not confirm your card with the payment processor.", &e))),
    }
}

/// The checkout page; the processor's page returns here with the card's token in the query.
pub async fn page(State(services): State<Services>, Query(q): Query<CardQuery>) -> Response {
    let shop = storefront::web_shop(&services).await.ok();
    let (card, error) = described(&services, shop.as_ref().map(|(_, c)| *c), q).await;
    let errors: Vec<(String, String)> = error.into_iter().map(|m| ("card".to_string(), m)).collect();
    checkout_page(&CheckoutForm { quantity_1: "1".into(), card, ..Default::default() }, &errors, shop.map(|(w, _)| w.id))
}

pub async fn submit(State(services): State<Services>, Form(f): Form<CheckoutForm>) -> Response {
    let channel = storefront::web_shop(&services).await.ok().map(|(w, _)| w.id);
    let c = &f.card;
    let checkout = Checkout {
        email: f.email.clone(),
        name: f.name.clone(),
        quantities: vec![f.quantity_1.clone(), f.quantity_2.clone(), f.quantity_3.clone()],
        card: CardForm { token: c.token.clone(), card_type: c.card_type.clone(), last_four: c.last_four.clone(), holder: c.holder.clone(), expiry: c.expiry.clone() },
    };
    match storefront::checkout(&services, &checkout).await {
        Ok(placed) if placed.payment_status == PaymentStatus::Authorized => frame(
            "Thank you",
            &format!(
                "<h1>Thank you</h1><div class=\"notice success\" role=\"status\">Order {} is confirmed; your card was authorized and is charged when the order ships.</div>\
                 <p><a href=\"/shop\">Back to the shop</a></p>",
                esc(&placed.number)
            ),
        ),
        Ok(placed) => {
            // The processor's reason stays in the log; the shopper learns only that it was not authorized.
            let why = placed.message.unwrap_or_else(|| "no reason given".into());
            let what = format!("Your card was not authorized for order {}.", placed.number);
            let reference = crate::html::log_reference(&what, &why);
            checkout_page(&CheckoutForm { card: CardQuery::default(), ..f }, &[(String::new(), format!("{what} Try another card, or ask your bank; our reference is {reference}."))], channel)
        }
        Err(ServiceError::Validation(fields)) => {
            let errors: Vec<(String, String)> = fields.into_iter().map(|e| (e.field, e.message)).collect();
            checkout_page(&f, &errors, channel)
        }
        Err(e) => checkout_page(&f, &[(String::new(), crate::html::public_failure("We could not place your order; your card was not charged.", &e))], channel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_shopper_typed_is_escaped() {
        let f = CheckoutForm { email: "\"><script>".into(), ..Default::default() };
        let r = checkout_page(&f, &[("email".into(), "<b>bad</b>".into())], Some(3));
        let body = futures_body(r);
        assert!(!body.contains("<script>") && body.contains("&lt;script&gt;") && body.contains("&lt;b&gt;bad"));
    }

    fn futures_body(r: Response) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
