//! Customers, and each customer's credit cards on file (R-TOK-8): view, add (through the
//! processor's acceptance page; needs a default connector), delete.
use crate::components::{field_error, loaded, successes, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use payments::domain::views::{CustomerCards, CustomerView};

#[server(endpoint = "list_customers")]
pub async fn list_customers() -> Result<Vec<CustomerView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    Ok(payments::service::customers::list(&services()?.db).await?)
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

#[component]
pub fn CustomersPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| list_customers());
    view! {
        <PageHeader title="Customers" intro="Customer accounts that orders and card payments are taken for." />
        {loaded(data, |customers: Vec<CustomerView>| {
            let rows = customers
                .into_iter()
                .map(|c| {
                    let cards = format!("/customers/{}/cards", c.id);
                    view! {
                        <tr>
                            <td>{c.account}</td>
                            <td>{c.name}</td>
                            <td>{c.email.unwrap_or_default()}</td>
                            <td><a href=cards>"Credit cards"</a></td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table class="grid">
                    {table_head(&["Account", "Name", "Email", ""])}
                    <tbody>{rows}</tbody>
                </table>
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
