//! Customers, and each customer's credit cards on file (R-TOK-8): view, add (through the
//! processor's acceptance page; needs a default connector), delete.
use crate::components::{field_error, loaded, successes, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use payments::domain::views::{CustomerCards, CustomerView};

#[server(endpoint = "list_customers")]
pub async fn list_customers(q: String, inactive: bool) -> Result<Vec<CustomerView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(CUSTOMER_ROLES).await?;
    Ok(payments::service::customers::search(&services()?.db, &q, inactive).await?)
}

/// Who sets customers up: finance and the call center, and administrators setting up a store.
pub const CUSTOMER_ROLES: &[payments::Role] = &[payments::Role::Finance, payments::Role::CallCenter, payments::Role::Administrator];

#[server(endpoint = "customer_detail")]
pub async fn customer_detail(id: i32) -> Result<CustomerView, AppError> {
    use crate::auth::ssr::{require, services};
    require(CUSTOMER_ROLES).await?;
    Ok(payments::service::customers::detail(&services()?.db, id).await?)
}

/// Creates a customer (`id` 0) or edits one.
#[server(endpoint = "save_customer")]
#[expect(clippy::too_many_arguments, reason = "a server function takes each form field as an argument")]
pub async fn save_customer(
    id: i32,
    account: String,
    name: String,
    email: String,
    phone: String,
    billing_street: String,
    billing_city: String,
    billing_postal_code: String,
    billing_country: String,
) -> Result<i32, AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(CUSTOMER_ROLES).await?;
    let form = payments::service::customers::CustomerForm { account, name, email, phone, billing_street, billing_city, billing_postal_code, billing_country };
    // 0 adds a customer; any other id edits that one (an id no customer has is not found).
    let saved = payments::service::customers::save(&services()?, &user.username, (id != 0).then_some(id), &form).await?;
    Ok(saved)
}

/// Deactivates a customer (no new orders or cards) or activates them again.
#[server(endpoint = "set_customer_active")]
pub async fn set_customer_active(id: i32, active: bool) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(CUSTOMER_ROLES).await?;
    Ok(payments::service::customers::set_active(&services()?, &user.username, id, active).await?)
}

#[server(endpoint = "customer_cards")]
pub async fn load_customer_cards(customer_id: i32) -> Result<CustomerCards, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    Ok(payments::service::cards::for_customer(&services()?.db, customer_id).await?)
}

#[server(endpoint = "add_customer_card")]
#[expect(clippy::too_many_arguments, reason = "a server function takes each form field as an argument")]
pub async fn add_customer_card(
    customer_id: i32,
    token: String,
    card_type: String,
    last_four: String,
    holder: String,
    expiry: String,
    agreed: Option<String>,
) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    use payments::service::orders::CardForm;
    let user = require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    let card = CardForm { token, card_type, last_four, holder, expiry };
    payments::service::cards::add(&services()?, &user.username, customer_id, &card, agreed.is_some_and(|a| !a.is_empty())).await?;
    leptos_axum::redirect(&format!("/customers/{customer_id}/cards?saved=1"));
    Ok(())
}

#[server(endpoint = "delete_customer_card")]
pub async fn delete_customer_card(customer_id: i32, card_id: i32) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    Ok(payments::service::cards::delete(&services()?, &user.username, customer_id, card_id).await?)
}

/// The fields of a customer (`c`) or of a new one, with their messages.
fn customer_fields<V>(value: V, c: Option<&CustomerView>) -> impl IntoView + use<V>
where
    V: With<Value = Option<Result<i32, AppError>>> + Clone + Send + Sync + 'static,
{
    let v = |f: fn(&CustomerView) -> Option<String>| c.and_then(f).unwrap_or_default();
    let field = move |label: &'static str, name: &'static str, current: String, class: &'static str, hint: &'static str| {
        let value = value.clone();
        view! {
            <label class=format!("stacked {class}")>
                {label}
                <input name=name value=current placeholder=hint />
                {field_error(value, name, None)}
            </label>
        }
    };
    view! {
        {field("Account number", "account", c.map(|c| c.account.clone()).unwrap_or_default(), "narrow", "e.g. C-1006")}
        {field("Name", "name", c.map(|c| c.name.clone()).unwrap_or_default(), "grow", "")}
        {field("E-mail", "email", v(|c| c.email.clone()), "", "name@example.com")}
        {field("Phone", "phone", v(|c| c.phone.clone()), "", "")}
        {field("Street", "billing_street", v(|c| c.billing_street.clone()), "grow", "Billing address")}
        {field("City", "billing_city", v(|c| c.billing_city.clone()), "", "")}
        {field("Postal code", "billing_postal_code", v(|c| c.billing_postal_code.clone()), "narrow", "")}
        {field("Country", "billing_country", v(|c| c.billing_country.clone()), "narrow", "US")}
    }
}

#[component]
pub fn CustomersPage() -> impl IntoView {
    let query = use_query_map();
    let add = ServerAction::<SaveCustomer>::new();
    let added = successes(move || matches!(add.value().get(), Some(Ok(_))));
    let search = move || (query.read().get("q").unwrap_or_default(), query.read().get("inactive").is_some_and(|v| !v.is_empty()));
    let data = Resource::new(move || (search(), added.get()), |((q, inactive), _)| list_customers(q, inactive));
    let add_form = crate::components::cleared_on_success(move || matches!(add.value().get(), Some(Ok(_))));
    view! {
        <PageHeader title="Customers" intro="Customer accounts that orders and card payments are taken for. A deactivated customer takes no new orders or cards; their orders and history stay." />
        {move || matches!(add.value().get(), Some(Ok(_))).then(|| view! { <div class="notice success" role="status">"Customer added."</div> })}
        {move || match add.value().get() {
            Some(Err(e)) if e.field_message("account", None).is_none() && e.field_message("email", None).is_none() && e.field_message("name", None).is_none() => {
                Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> })
            }
            _ => None,
        }}
        <form method="get" action="/customers" class="row-form panel" role="search">
            <label class="stacked grow">
                "Search"
                <input name="q" value=move || query.read_untracked().get("q").unwrap_or_default() placeholder="Account, name, e-mail or phone" />
            </label>
            <label class="checkbox-line">
                <input type="checkbox" name="inactive" value="1" checked=move || query.read_untracked().get("inactive").is_some() />
                <span>"Include deactivated"</span>
            </label>
            <button type="submit" class="secondary">"Search"</button>
        </form>
        {loaded(data, |customers: Vec<CustomerView>| {
            if customers.is_empty() {
                return view! { <p class="panel muted" data-testid="no-customers">"No customer matches. Add one below."</p> }.into_any();
            }
            let rows = customers
                .into_iter()
                .map(|c| {
                    let cards = format!("/customers/{}/cards", c.id);
                    let edit = format!("/customers/{}", c.id);
                    let place = [c.billing_city.clone(), c.billing_country.clone()].into_iter().flatten().collect::<Vec<_>>().join(", ");
                    view! {
                        <tr data-customer=c.account.clone()>
                            <td>{c.account.clone()}</td>
                            <td>{c.name}</td>
                            <td>{c.email.unwrap_or_default()}</td>
                            <td>{c.phone.unwrap_or_default()}</td>
                            <td>{place}</td>
                            <td>{if c.active { view! { <span class="badge on">"Active"</span> }.into_any() } else { view! { <span class="badge off">"Deactivated"</span> }.into_any() }}</td>
                            <td class="nowrap"><a href=edit>"Edit"</a>" · "<a href=cards>"Credit cards"</a></td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table class="grid">
                    {table_head(&["Account", "Name", "E-mail", "Phone", "Billing", "State", ""])}
                    <tbody>{rows}</tbody>
                </table>
            }
            .into_any()
        })}
        <section class="panel">
            <h2>"Add a customer"</h2>
            <ActionForm action=add node_ref=add_form attr:class="row-form wrap">
                <input type="hidden" name="id" value="0" />
                {customer_fields(add.value(), None)}
                <button type="submit" class="primary">"Add customer"</button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn CustomerPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let save = ServerAction::<SaveCustomer>::new();
    let active = ServerAction::<SetCustomerActive>::new();
    let saves = crate::components::successes_each(vec![
        Box::new(move || matches!(save.value().get(), Some(Ok(_)))),
        Box::new(move || matches!(active.value().get(), Some(Ok(())))),
    ]);
    let data = Resource::new(move || (id(), saves.get()), |(id, _)| customer_detail(id));
    view! {
        {move || matches!(save.value().get(), Some(Ok(_))).then(|| view! { <div class="notice success" role="status">"Customer saved."</div> })}
        {crate::components::outcome(active.value(), "Saved.", None)}
        {loaded(data, move |c: CustomerView| {
            let cards = format!("/customers/{}/cards", c.id);
            let fields = customer_fields(save.value(), Some(&c));
            view! {
                <leptos_meta::Title text=format!("Customer · {}", c.account) />
                <div class="page-header">
                    <h1>{format!("Customer {}", c.account)}</h1>
                    <p class="intro">
                        {c.name.clone()}
                        " · "
                        {if c.active { "Active" } else { "Deactivated: no new orders or cards" }}
                        " · "
                        <a href=cards>"Credit cards"</a>
                        " · "
                        <a href="/customers">"All customers"</a>
                    </p>
                </div>
                <section class="panel">
                    <ActionForm action=save attr:class="row-form wrap">
                        <input type="hidden" name="id" value=c.id />
                        {fields}
                        <button type="submit" class="primary">"Save"</button>
                    </ActionForm>
                </section>
                <section class="panel">
                    <ActionForm action=active>
                        <input type="hidden" name="id" value=c.id />
                        <input type="hidden" name="active" value=(!c.active).to_string() />
                        <button type="submit" class=if c.active { "link-button danger" } else { "secondary" }>
                            {if c.active { "Deactivate customer" } else { "Activate customer" }}
                        </button>
                    </ActionForm>
                </section>
            }
        })}
    }
}

#[component]
pub fn CustomerCardsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let add = ServerAction::<AddCustomerCard>::new();
    let delete = ServerAction::<DeleteCustomerCard>::new();
    let deletes = successes(move || matches!(delete.value().get(), Some(Ok(_))));
    let data = Resource::new(move || (id(), deletes.get()), |(id, _)| load_customer_cards(id));
    let q = move |k: &'static str| query.read_untracked().get(k).unwrap_or_default();
    view! {
        {move || (query.read().get("saved").is_some() && add.value().get().is_none())
            .then(|| view! { <div class="notice success" role="status">"The card was saved on file."</div> })}
        {move || matches!(delete.value().get(), Some(Ok(_))).then(|| view! { <div class="notice success" role="status">"The card was deleted; it is no longer offered."</div> })}
        {move || match (add.value().get(), delete.value().get()) {
            (Some(Err(e)), _) | (_, Some(Err(e))) if e.field_message("agreed", None).is_none() && e.field_message("card", None).is_none() => {
                Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> })
            }
            _ => None,
        }}
        {loaded(data, move |c: CustomerCards| {
            let cid = c.customer.id;
            let token = q("token");
            let return_to = format!("/processor/acceptance?return=/customers/{cid}/cards");
            view! {
                <leptos_meta::Title text=format!("Customer credit cards · {}", c.customer.account) />
                <div class="page-header">
                    <h1>"Customer credit cards"</h1>
                    <p class="intro">{format!("{} · {} — cards saved on file with the customer's agreement (recurring tokens). ", c.customer.account, c.customer.name)}<a href="/customers">"All customers"</a></p>
                </div>
                <section class="panel">
                    {if c.cards.is_empty() {
                        view! { <p class="muted" data-testid="no-cards">"No card on file."</p> }.into_any()
                    } else {
                        view! {
                            <table class="grid" data-testid="cards">
                                {table_head(&["Card holder", "Card", "Expiry", "Added", ""])}
                                <tbody>
                                    {c.cards.clone().into_iter().map(|card| view! {
                                        <tr data-last-four=card.last_four.clone()>
                                            <td>{card.holder.clone()}</td>
                                            <td>{format!("{} •••• {}", card.card_type, card.last_four)}</td>
                                            <td>{card.expiry.clone()}</td>
                                            <td class="nowrap">{format!("{} by {}", card.added_at.format("%Y-%m-%d"), card.added_by)}</td>
                                            <td>
                                                <ActionForm action=delete>
                                                    <input type="hidden" name="customer_id" value=cid />
                                                    <input type="hidden" name="card_id" value=card.id />
                                                    <button type="submit" class="link-button">"Delete"</button>
                                                </ActionForm>
                                            </td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any()
                    }}
                </section>
                <section class="panel">
                    <h2>"New customer credit card"</h2>
                    {match c.cannot_add.clone() {
                        Some(why) => view! { <p class="notice warning">{format!("A card cannot be added: {why}")}</p> }.into_any(),
                        None if token.is_empty() => view! {
                            <p><a class="button secondary" rel="external" href=return_to.clone()>"New: enter the card on the processor's payment page"</a></p>
                        }.into_any(),
                        None => view! {
                            <ActionForm action=add>
                                <input type="hidden" name="customer_id" value=cid />
                                <input type="hidden" name="token" value=token.clone() />
                                <input type="hidden" name="card_type" value=q("card_type") />
                                <input type="hidden" name="last_four" value=q("last_four") />
                                <input type="hidden" name="holder" value=q("holder") />
                                <input type="hidden" name="expiry" value=q("expiry") />
                                <p data-testid="card">{format!("{} •••• {} · {} · expires {}", q("card_type"), q("last_four"), q("holder"), q("expiry"))}</p>
                                <label class="checkbox-line">
                                    <input type="checkbox" name="agreed" value="yes" />
                                    <span>"The customer agrees to save this card on file, as our compliance practices and customer terms require."</span>
                                </label>
                                {field_error(add.value(), "agreed", None)}
                                {field_error(add.value(), "card", None)}
                                <div class="actions"><button type="submit" class="primary">"Save card"</button></div>
                            </ActionForm>
                        }.into_any(),
                    }}
                </section>
            }
        })}
    }
}
