//! New sales order (call center and finance): customer, channel, lines with requested ship dates,
//! and a card payment. The card is typed only on the processor's acceptance page, which hands back
//! a token, card type, last four digits, holder and expiry (R-TOK-1); the order is then authorized.
use crate::components::{field_error, loaded, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::views::{ChannelView, CustomerView};
use payments::domain::payment_views::PlacedOrder;
use std::collections::BTreeMap;

pub const LINE_ROWS: usize = 4;

#[server(endpoint = "new_order_choices")]
pub async fn new_order_choices() -> Result<(Vec<CustomerView>, Vec<ChannelView>, String), AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    require(&[Role::Finance, Role::CallCenter]).await?;
    let s = services()?;
    let (customers, channels) = payments::service::orders::choices(&s.db).await?;
    Ok((customers, channels, s.now().date_naive().to_string()))
}

/// Places the order and authorizes the card for its total. `lines` holds `item_N`, `quantity_N`,
/// `unit_price_N` and `ship_date_N` for rows 1..=LINE_ROWS; empty rows are ignored.
#[server(endpoint = "place_order")]
#[allow(clippy::too_many_arguments)]
pub async fn place_order(
    customer_id: String,
    channel_id: String,
    currency: String,
    tax_percent: String,
    charges: String,
    lines: BTreeMap<String, String>,
    token: String,
    card_type: String,
    last_four: String,
    holder: String,
    expiry: String,
) -> Result<PlacedOrder, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::service::orders::{CardForm, LineForm, OrderForm};
    use payments::Role;
    let user = require(&[Role::Finance, Role::CallCenter]).await?;
    let get = |k: String| lines.get(&k).cloned().unwrap_or_default();
    let form = OrderForm {
        customer_id,
        channel_id,
        currency,
        tax_percent,
        charges,
        lines: (1..=LINE_ROWS)
            .map(|n| LineForm {
                item: get(format!("item_{n}")),
                quantity: get(format!("quantity_{n}")),
                unit_price: get(format!("unit_price_{n}")),
                requested_ship_date: get(format!("ship_date_{n}")),
            })
            .collect(),
        card: CardForm { token, card_type, last_four, holder, expiry },
    };
    let placed = payments::service::orders::place(&services()?, &user.username, &form).await?;
    leptos_axum::redirect(&format!("/orders/{}?placed=1", placed.order_id));
    Ok(placed)
}

#[component]
pub fn NewOrderPage() -> impl IntoView {
    let query = use_query_map();
    let q = move |k: &'static str| query.read().get(k).unwrap_or_default();
    let place = ServerAction::<PlaceOrder>::new();
    let data = Resource::new(|| (), |_| new_order_choices());
    view! {
        <PageHeader
            title="New sales order"
            intro="Take an order and authorize the customer's card for its total. The card number is entered on the payment processor's page; Paystage keeps only its token."
        />
        {move || match place.value().get() {
            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            Some(Ok(p)) => {
                let href = format!("/orders/{}", p.order_id);
                Some(view! {
                    <div class="notice success" role="status">
                        {format!("{} placed; payment {}. ", p.number, p.payment_status.label())}
                        {p.message.clone()}
                        <a href=href>"Open the order"</a>
                    </div>
                }.into_any())
            }
            None => None,
        }}
        {loaded(data, move |(customers, channels, today): (Vec<CustomerView>, Vec<ChannelView>, String)| {
            let token = q("token");
            let has_card = !token.is_empty();
            let card_line = format!("{} •••• {} · {} · expires {}", q("card_type"), q("last_four"), q("holder"), q("expiry"));
            let rows = (1..=LINE_ROWS)
                .map(|n| {
                    let today = today.clone();
                    view! {
                        <tr>
                            <td>{n}</td>
                            <td><input name=format!("lines[item_{n}]") aria-label=format!("Item, line {n}") /></td>
                            <td><input class="qty" name=format!("lines[quantity_{n}]") aria-label=format!("Quantity, line {n}") inputmode="numeric" /></td>
                            <td><input class="amount" name=format!("lines[unit_price_{n}]") aria-label=format!("Unit price, line {n}") inputmode="decimal" /></td>
                            <td><input type="date" name=format!("lines[ship_date_{n}]") aria-label=format!("Requested ship date, line {n}") value=today /></td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <ActionForm action=place>
                    <section class="panel">
                        <h2>"1. Card"</h2>
                        {if has_card {
                            view! {
                                <p data-testid="card">{card_line} " " <a rel="external" href="/processor/acceptance?return=/orders/new">"Use another card"</a></p>
                            }.into_any()
                        } else {
                            view! {
                                <p>
                                    <a class="button secondary" rel="external" href="/processor/acceptance?return=/orders/new">"Enter the card on the processor's payment page"</a>
                                </p>
                            }.into_any()
                        }}
                        {field_error(place.value(), "card", None)}
                        <input type="hidden" name="token" value=token />
                        <input type="hidden" name="card_type" value=q("card_type") />
                        <input type="hidden" name="last_four" value=q("last_four") />
                        <input type="hidden" name="holder" value=q("holder") />
                        <input type="hidden" name="expiry" value=q("expiry") />
                    </section>
                    <section class="panel">
                        <h2>"2. Order"</h2>
                        <div class="row-form">
                            <label class="stacked">
                                "Customer"
                                <select name="customer_id">
                                    {customers.into_iter().map(|c| view! { <option value=c.id>{format!("{} · {}", c.account, c.name)}</option> }).collect_view()}
                                </select>
                            </label>
                            <label class="stacked">
                                "Channel"
                                <select name="channel_id">
                                    {channels.into_iter().map(|c| view! { <option value=c.id>{format!("{} ({})", c.name, c.kind.label())}</option> }).collect_view()}
                                </select>
                            </label>
                            <label class="stacked">
                                "Currency"
                                <select name="currency">
                                    {payments::domain::money::Currency::ALL.into_iter().map(|c| view! { <option value=c.code()>{c.code()}</option> }).collect_view()}
                                </select>
                            </label>
                            <label class="stacked">"Tax %" <input name="tax_percent" value="0" inputmode="decimal" class="amount" /></label>
                            <label class="stacked">"Charges" <input name="charges" value="0" inputmode="decimal" class="amount" /></label>
                        </div>
                        {field_error(place.value(), "tax_percent", None)}
                        {field_error(place.value(), "charges", None)}
                        <table class="grid lines">
                            <thead><tr><th>"#"</th><th>"Item"</th><th>"Quantity"</th><th>"Unit price"</th><th>"Requested ship date"</th></tr></thead>
                            <tbody>{rows}</tbody>
                        </table>
                        {(1..=LINE_ROWS).map(|n| {
                            let f: [&'static str; 4] = match n {
                                1 => ["line1_item", "line1_quantity", "line1_unit_price", "line1_ship_date"],
                                2 => ["line2_item", "line2_quantity", "line2_unit_price", "line2_ship_date"],
                                3 => ["line3_item", "line3_quantity", "line3_unit_price", "line3_ship_date"],
                                _ => ["line4_item", "line4_quantity", "line4_unit_price", "line4_ship_date"],
                            };
                            f.into_iter().map(|k| field_error(place.value(), k, None)).collect_view()
                        }).collect_view()}
                        <div class="actions"><button type="submit" class="primary" disabled=!has_card>"Place order and authorize"</button></div>
                    </section>
                </ActionForm>
            }
        })}
    }
}
