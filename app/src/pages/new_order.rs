//! New sales order (call center and finance): customer, channel, lines with requested ship dates,
//! and a card payment. The card is typed only on the processor's acceptance page, which hands back
//! a token, card type, last four digits, holder and expiry (R-TOK-1); the order is then authorized.
use crate::components::{field_error, loaded, table_head, ConfirmationDialog, PageHeader, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use payments::domain::payment_views::PlacedOrder;
use payments::domain::views::{ChannelView, CustomerView, SavedCardView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const LINE_ROWS: usize = 4;

/// What the New sales order form offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFormChoices {
    pub customers: Vec<CustomerView>,
    pub channels: Vec<ChannelView>,
    pub today: String,
    /// "Save payment information" is offered (R-TOK-6).
    pub card_on_file_offered: bool,
    /// R-FEA-3: nonrecurring tokens are on but do not take effect.
    pub token_warning: Option<String>,
    /// The Commerce parameters' default deposit percentage (R-PRE-2).
    pub deposit_percent: String,
}

#[server(endpoint = "new_order_choices")]
pub async fn new_order_choices() -> Result<OrderFormChoices, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    require(&[Role::Finance, Role::CallCenter]).await?;
    let s = services()?;
    let (customers, channels) = payments::service::orders::choices(&s.db).await?;
    let features = payments::service::features::load(&s.db).await?;
    let params = payments::service::parameters::load(&s.db).await?;
    Ok(OrderFormChoices {
        customers,
        channels,
        today: s.now().date_naive().to_string(),
        card_on_file_offered: payments::domain::tokens::card_on_file_offered(
            features.is_enabled(payments::Feature::RestrictPaymentTokenUsage),
            params.allow_customer_card_on_file(),
        ),
        deposit_percent: params.default_deposit_percent().normalize().to_string(),
        token_warning: (features.is_enabled(payments::Feature::NonrecurringTokens) && !features.nonrecurring_tokens_in_effect()).then(|| {
            "Enable use of nonrecurring tokens in Commerce is on, but Enable unified payments experience in POS is also on: nonrecurring tokens do not take effect, so every card is saved as a recurring token (R-FEA-3).".to_string()
        }),
    })
}

/// The customer's cards on file, for the Number list (R-TOK-6). Customer 0 means the first
/// customer of the list, the one the form starts with.
#[server(endpoint = "saved_cards")]
pub async fn saved_cards(customer_id: i32) -> Result<Vec<SavedCardView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    let s = services()?;
    let id = match customer_id {
        0 => payments::service::customers::list(&s.db).await?.first().map(|c| c.id).unwrap_or_default(),
        id => id,
    };
    Ok(payments::service::cards::saved(&s.db, id).await?)
}

/// Places the order and authorizes the card for its total. `lines` holds `item_N`, `quantity_N`,
/// `unit_price_N` and `ship_date_N` for rows 1..=LINE_ROWS; empty rows are ignored.
#[server(endpoint = "place_order")]
#[expect(clippy::too_many_arguments, reason = "a server function takes each form field as an argument")]
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
    order_kind: String,
    saved_card_id: String,
    save_card: Option<String>,
    confirmed: String,
    #[server(default)] prepayment: Option<String>,
    #[server(default)] deposit: String,
    #[server(default)] deposit_cash: String,
    #[server(default)] deposit_account: String,
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
        order_kind,
        saved_card_id,
        save_card: save_card.is_some_and(|v| !v.is_empty()),
        confirmed,
        prepayment: prepayment.is_some_and(|v| !v.is_empty()),
        deposit: payments::service::prepayments::DepositForm { deposit, cash: deposit_cash, customer_account: deposit_account },
    };
    let placed = payments::service::orders::place(&services()?, &user.username, &form).await?;
    leptos_axum::redirect(&format!("/orders/{}?placed=1", placed.order_id));
    Ok(placed)
}

/// The card section of a payment form: a card on file of the customer (the Number list) or the
/// card just entered on the processor's page, whose token, type, last four, holder and expiry
/// travel in hidden fields. `return_to` is where the processor's page sends the browser back;
/// `channel` the store or channel the card is taken for (on the connector it pays through; none:
/// the default connector).
#[component]
pub fn CardChoice(
    saved: Vec<SavedCardView>,
    return_to: String,
    #[prop(optional)] offer_save: bool,
    #[prop(optional)] channel: Option<Signal<Option<i32>>>,
) -> impl IntoView {
    let query = use_query_map();
    let q = move |k: &'static str| query.read_untracked().get(k).unwrap_or_default();
    let token = q("token");
    let has_card = !token.is_empty();
    let card_line = format!("{} •••• {} · {} · expires {}", q("card_type"), q("last_four"), q("holder"), q("expiry"));
    let acceptance = Signal::derive(move || match channel.and_then(|c| c.get()) {
        Some(ch) => format!("/processor/acceptance?return={return_to}&channel={ch}"),
        None => format!("/processor/acceptance?return={return_to}"),
    });
    let has_saved = !saved.is_empty();
    view! {
        {has_saved.then(|| view! {
            <label class="stacked">
                "Number (saved cards on file)"
                <select name="saved_card_id" data-testid="saved-cards">
                    <option value="" selected=has_card>{if has_card { "Use the card entered below" } else { "— choose a saved card —" }}</option>
                    {saved.iter().map(|c| view! { <option value=c.id>{c.label()}</option> }).collect_view()}
                </select>
            </label>
        })}
        {(!has_saved).then(|| view! { <input type="hidden" name="saved_card_id" value="" /> })}
        {if has_card {
            view! {
                <p data-testid="card">"New card: " {card_line} " " <a rel="external" href=acceptance>"Use another card"</a></p>
            }.into_any()
        } else {
            view! {
                <p>
                    <a class="button secondary" rel="external" href=acceptance>"Enter the card on the processor's payment page"</a>
                </p>
            }.into_any()
        }}
        {(offer_save && has_card).then(|| view! {
            <label class="checkbox-line">
                <input type="checkbox" name="save_card" value="yes" data-testid="save-card" aria-label="Save payment information" />
                <span>"Save payment information — saves this card on the customer's account as a card on file (call center orders; only with the customer's agreement)."</span>
            </label>
        })}
        <input type="hidden" name="token" value=token />
        <input type="hidden" name="card_type" value=q("card_type") />
        <input type="hidden" name="last_four" value=q("last_four") />
        <input type="hidden" name="holder" value=q("holder") />
        <input type="hidden" name="expiry" value=q("expiry") />
    }
}

#[component]
pub fn NewOrderPage() -> impl IntoView {
    let place = ServerAction::<PlaceOrder>::new();
    let data = Resource::new(|| (), |_| new_order_choices());
    let confirmed = NodeRef::<leptos::html::Input>::new();
    // Created here, not inside the choices' view, so that server and browser create the
    // resources in the same order (hydration).
    let customer = RwSignal::new(0);
    let cards = Resource::new(move || customer.get(), saved_cards);
    // The channel chosen, which the card is taken for: the one the processor's page came back
    // with, else the first offered.
    let query = use_query_map();
    let channel = RwSignal::new(query.read_untracked().get("channel").and_then(|c| c.parse::<i32>().ok()));
    view! {
        <PageHeader
            title="New sales order"
            intro="Take an order and authorize the customer's card for its total. The card number is entered on the payment processor's page; Paystage keeps only its token."
        />
        {move || match place.value().get() {
            Some(Err(AppError::ConfirmationRequired { .. })) => None,
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
        {loaded(data, move |c: OrderFormChoices| {
            let offer_save = c.card_on_file_offered;
            let first_channel = c.channels.first().map(|ch| ch.id);
            let chosen_channel = Signal::derive(move || channel.get().or(first_channel));
            let picked = channel.get_untracked();
            let today = c.today.clone();
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
                {c.token_warning.clone().map(|w| view! { <div class="notice warning" role="status" data-testid="token-warning">{w}</div> })}
                <ActionForm action=place>
                    <ConfirmationDialog
                        error=Signal::derive(move || place.value().get().and_then(|r| r.err()))
                        version=Signal::derive(move || place.version().get())
                        confirmed=confirmed
                        cancelled_text="Not authorized: the customer's consent was not confirmed, so nothing was placed. Confirm it, or move the requested ship dates inside the threshold and place the order again."
                    />
                    <input type="hidden" name="confirmed" value="" node_ref=confirmed />
                    <section class="panel">
                        <h2>"1. Channel, customer and card"</h2>
                        <label class="stacked">
                            "Channel"
                            <select name="channel_id" on:change=move |ev| channel.set(event_target_value(&ev).parse().ok())>
                                {c.channels.iter().map(|c| view! { <option value=c.id selected=picked == Some(c.id)>{format!("{} ({})", c.name, c.kind.label())}</option> }).collect_view()}
                            </select>
                            <span class="muted small">"The card is taken on the processor this channel pays through."</span>
                        </label>
                        <label class="stacked">
                            "Customer"
                            <select name="customer_id" on:change=move |ev| customer.set(event_target_value(&ev).parse().unwrap_or_default())>
                                {c.customers.iter().map(|c| view! { <option value=c.id>{format!("{} · {}", c.account, c.name)}</option> }).collect_view()}
                            </select>
                        </label>
                        <Transition fallback=|| ()>
                            {move || Suspend::new(async move {
                                let saved = cards.await.unwrap_or_default();
                                view! { <CardChoice saved=saved return_to="/orders/new".to_string() offer_save=offer_save channel=chosen_channel /> }
                            })}
                        </Transition>
                        {field_error(place.value(), "card", None)}
                        {field_error(place.value(), "saved_card_id", None)}
                        {field_error(place.value(), "save_card", None)}
                    </section>
                    <section class="panel">
                        <h2>"2. Order"</h2>
                        <div class="row-form">
                            <label class="stacked">
                                "Order type"
                                <select name="order_kind" aria-label="Order type">
                                    <option value="customer_order">"Customer order (ships later)"</option>
                                    <option value="cash_and_carry">"Cash and carry (POS: goods taken now)"</option>
                                </select>
                            </label>
                            <label class="stacked">
                                "Currency"
                                <select name="currency">
                                    {payments::domain::money::Currency::COMMON.into_iter().map(|c| view! { <option value=c.code()>{c.code()}</option> }).collect_view()}
                                </select>
                            </label>
                            <label class="stacked">"Tax %" <input name="tax_percent" value="0" inputmode="decimal" class="amount" /></label>
                            <label class="stacked">"Charges" <input name="charges" value="0" inputmode="decimal" class="amount" /></label>
                        </div>
                        {field_error(place.value(), "order_kind", None)}
                        {field_error(place.value(), "tax_percent", None)}
                        {field_error(place.value(), "charges", None)}
                        <table class="grid lines">
                            {table_head(&["#", "Item", "Quantity", "Unit price", "Requested ship date"])}
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
                    </section>
                    <section class="panel" aria-labelledby="deposit-title">
                        <h2 id="deposit-title">"3. Deposit (prepayment)"</h2>
                        <p class="muted small">{format!(
                            "A customer order at a store can take a deposit; a call center order with the prepayment attribute is paid in advance. Leave the deposit blank for the default: {} % of the total at a store, the whole order at the call center. The card pays what cash and on account (the customer account tender) do not, and is also authorized for what is due at pickup.",
                            c.deposit_percent
                        )}</p>
                        <label class="check"><input type="checkbox" name="prepayment" value="yes" />" Prepayment: take a deposit"</label>
                        <div class="row-form">
                            <label class="stacked">"Deposit" <input name="deposit" inputmode="decimal" class="amount" placeholder=format!("{} %", c.deposit_percent) /></label>
                            <label class="stacked">"of which cash" <input name="deposit_cash" inputmode="decimal" class="amount" placeholder="0.00" /></label>
                            <label class="stacked">"of which on account" <input name="deposit_account" inputmode="decimal" class="amount" placeholder="0.00" /></label>
                        </div>
                        {field_error(place.value(), "prepayment", None)}
                        {field_error(place.value(), "deposit", None)}
                        {field_error(place.value(), "deposit_cash", None)}
                        {field_error(place.value(), "deposit_account", None)}
                        <div class="actions"><SubmitButton pending=place.pending() class="primary">"Place order and authorize"</SubmitButton></div>
                    </section>
                </ActionForm>
            }
        })}
    }
}
