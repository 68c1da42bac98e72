//! Customer account deposit at a POS store (R-PRE-1).
use crate::components::{field_error, loaded, PageHeader, SubmitButton};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::{ChannelView, CustomerView};

#[server(endpoint = "deposit_choices")]
pub async fn deposit_choices() -> Result<(Vec<CustomerView>, Vec<ChannelView>), AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    require(&[Role::Finance, Role::CallCenter]).await?;
    let s = services()?;
    let (customers, channels) = payments::service::orders::choices(&s.db).await?;
    Ok((customers, channels.into_iter().filter(|c| c.kind == payments::domain::views::ChannelKind::PosStore).collect()))
}

/// A customer account deposit at POS (R-PRE-1).
#[server(endpoint = "take_account_deposit")]
pub async fn take_account_deposit(customer_id: String, channel_id: String, currency: String, amount: String) -> Result<String, AppError> {
    use crate::auth::ssr::{require, services};
    use payments::Role;
    let user = require(&[Role::Finance, Role::CallCenter]).await?;
    let field = |f: &str, m: &str| AppError::from(payments::error::ServiceError::field(f, m));
    let customer = customer_id.trim().parse::<i32>().map_err(|_| field("customer_id", "Choose a customer."))?;
    let channel = channel_id.trim().parse::<i32>().map_err(|_| field("channel_id", "Choose a store."))?;
    Ok(payments::service::prepayments::account_deposit(&services()?, &user.username, customer, channel, &currency, &amount).await?)
}

#[component]
pub fn AccountDepositPage() -> impl IntoView {
    let take = ServerAction::<TakeAccountDeposit>::new();
    let form = crate::components::cleared_on_success(move || matches!(take.value().get(), Some(Ok(_))));
    let choices = Resource::new(|| (), |_| deposit_choices());
    view! {
        <PageHeader
            title="Customer account deposit"
            intro="A deposit a customer pays at the store onto their account. It is posted as a cash journal marked Prepayment journal voucher."
        />
        {move || match take.value().get() {
            Some(Ok(m)) => Some(view! { <div class="notice success" role="status" data-testid="deposit-taken">{m}</div> }.into_any()),
            Some(Err(e)) => Some(view! { <div class="notice error" role="alert">{e.to_string()}</div> }.into_any()),
            None => None,
        }}
        {loaded(choices, move |(customers, stores): (Vec<CustomerView>, Vec<ChannelView>)| view! {
            <section class="panel">
                <ActionForm action=take node_ref=form>
                    <div class="row-form">
                        <label class="stacked">
                            "Customer"
                            <select name="customer_id">
                                <option value="">"Choose…"</option>
                                {customers.into_iter().map(|c| view! { <option value=c.id.to_string()>{format!("{} · {}", c.account, c.name)}</option> }).collect_view()}
                            </select>
                        </label>
                        <label class="stacked">
                            "Store"
                            <select name="channel_id">
                                {stores.into_iter().map(|c| view! { <option value=c.id.to_string()>{c.name}</option> }).collect_view()}
                            </select>
                        </label>
                        <label class="stacked">
                            "Currency"
                            <select name="currency">
                                <option value="USD">"USD"</option>
                                <option value="EUR">"EUR"</option>
                            </select>
                        </label>
                        <label class="stacked">"Amount (cash)" <input name="amount" inputmode="decimal" class="amount" placeholder="0.00" /></label>
                    </div>
                    {field_error(take.value(), "customer_id", None)}
                    {field_error(take.value(), "channel_id", None)}
                    {field_error(take.value(), "amount", None)}
                    <div class="actions"><SubmitButton pending=take.pending() class="primary">"Take deposit"</SubmitButton></div>
                </ActionForm>
            </section>
        })}
    }
}
