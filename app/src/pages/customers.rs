use crate::components::{loaded, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::CustomerView;

#[server(endpoint = "list_customers")]
pub async fn list_customers() -> Result<Vec<CustomerView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance, payments::Role::CallCenter]).await?;
    Ok(payments::service::customers::list(&services()?.db).await?)
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
                    view! {
                        <tr>
                            <td>{c.account}</td>
                            <td>{c.name}</td>
                            <td>{c.email.unwrap_or_default()}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table class="grid">
                    <thead>
                        <tr>
                            <th>"Account"</th>
                            <th>"Name"</th>
                            <th>"Email"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            }
        })}
    }
}
