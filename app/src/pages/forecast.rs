//! Expiry forecast (seed 003; R-AUT-3, R-AUT-6; issue #44): what expiring authorizations put at
//! risk over the next 30 days, as a chart drawn on the server (SVG, readable without JavaScript)
//! with its figures as a table; the recurring ones and when they are renewed; the customers of
//! nonrecurring ones to contact for a new payment.
use crate::components::{loaded, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::forecast::{CurrencyForecast, ForecastPage};
use payments::domain::money::{Currency, Money};

#[server(endpoint = "expiry_forecast")]
pub async fn expiry_forecast() -> Result<ForecastPage, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Finance]).await?;
    Ok(payments::service::forecast::page(&services()?).await?)
}

/// The chart's geometry, in SVG user units.
const WIDTH: f64 = 720.0;
const PLOT_TOP: f64 = 16.0;
const PLOT_HEIGHT: f64 = 150.0;
const LEFT: f64 = 8.0;

fn money(minor: i64, currency: &str) -> String {
    Currency::from_code(currency).map_or_else(|| minor.to_string(), |c| Money::from_minor(minor, c).to_string())
}

/// One currency's stacked bars: recurring (renewable) below, nonrecurring (contact) above.
fn chart(f: &CurrencyForecast) -> impl IntoView + use<> {
    let peak = f.peak_minor().max(1) as f64;
    let slot = (WIDTH - LEFT) / f.days.len().max(1) as f64;
    let bar = slot * 0.7;
    let base = PLOT_TOP + PLOT_HEIGHT;
    let title_id = format!("forecast-title-{}", f.currency);
    let title = format!(
        "Authorizations expiring in the next {} days, {}: {} renewable, {} needing a new payment",
        f.days.len(),
        f.currency,
        money(f.recurring_minor, &f.currency),
        money(f.nonrecurring_minor, &f.currency)
    );
    let bars = f
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
            let h_rec = d.recurring_minor as f64 / peak * PLOT_HEIGHT;
            let h_non = d.nonrecurring_minor as f64 / peak * PLOT_HEIGHT;
            let tip = format!(
                "{}: {} renewable, {} needing a new payment",
                d.date.format("%a %d %b"),
                money(d.recurring_minor, &f.currency),
                money(d.nonrecurring_minor, &f.currency)
            );
            let label = (i % 5 == 0).then(|| {
                view! { <text x=format!("{:.1}", x + bar / 2.0) y=format!("{:.1}", base + 16.0) text-anchor="middle" class="axis">{d.date.format("%d %b").to_string()}</text> }
            });
            view! {
                <g>
                    <title>{tip}</title>
                    <rect x=format!("{x:.1}") y=format!("{:.1}", base - h_rec) width=format!("{bar:.1}") height=format!("{h_rec:.1}") class="bar-recurring" />
                    <rect x=format!("{x:.1}") y=format!("{:.1}", base - h_rec - h_non) width=format!("{bar:.1}") height=format!("{h_non:.1}") class="bar-nonrecurring" />
                    // An empty day still shows where it is.
                    <rect x=format!("{x:.1}") y=format!("{:.1}", base - 1.0) width=format!("{bar:.1}") height="1" class="bar-empty" />
                    {label}
                </g>
            }
        })
        .collect_view();
    let labelled_by = title_id.clone();
    view! {
        <svg class="forecast-chart" viewBox=format!("0 0 {WIDTH} {}", base + 24.0) role="img" aria-labelledby=labelled_by preserveAspectRatio="xMidYMid meet">
            <title id=title_id>{title}</title>
            <text x=LEFT.to_string() y="11" class="axis">{format!("Peak day: {}", money(f.peak_minor(), &f.currency))}</text>
            <line x1=LEFT.to_string() x2=WIDTH.to_string() y1=base.to_string() y2=base.to_string() class="baseline" />
            {bars}
        </svg>
    }
}

fn currency_section(f: CurrencyForecast) -> impl IntoView {
    let rows = f
        .days
        .iter()
        .filter(|d| d.total_minor() > 0)
        .map(|d| {
            view! {
                <tr data-day=d.date.to_string()>
                    <td class="nowrap">{d.date.format("%a %Y-%m-%d").to_string()}</td>
                    <td class="num">{money(d.recurring_minor, &f.currency)}</td>
                    <td class="num">{money(d.nonrecurring_minor, &f.currency)}</td>
                    <td class="num">{money(d.total_minor(), &f.currency)}</td>
                    <td class="num">{d.authorizations}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel" data-currency=f.currency.clone()>
            <h2>{format!("Value at risk by day · {}", f.currency)}</h2>
            <p class="legend small">
                <span class="swatch bar-recurring"></span> {format!("Recurring token, renewable: {}", money(f.recurring_minor, &f.currency))}
                " " <span class="swatch bar-nonrecurring"></span> {format!("Nonrecurring token, new payment needed: {}", money(f.nonrecurring_minor, &f.currency))}
            </p>
            {chart(&f)}
            <table class="grid compact" data-testid="forecast-days">
                <caption class="small muted">"The chart's figures: days with something expiring (UTC dates)."</caption>
                {table_head(&["Day", "n:Renewable", "n:New payment needed", "n:Total", "n:Authorizations"])}
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

#[component]
pub fn ForecastPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| expiry_forecast());
    view! {
        <PageHeader
            title="Expiry forecast"
            intro="What the orders would lose if the authorizations holding their money expired, day by day for the next 30 days. An authorization paid with a recurring token is renewed before it expires; one paid with a nonrecurring token never is, so its customer has to be asked for a new payment."
        />
        {loaded(data, move |p: ForecastPage| {
            let renewal = if p.renew_days_before == 0 {
                "Renewal is off: recurring authorizations expire like the others. Set \"Renew authorizations days before expiry\" on Accounts receivable parameters.".to_string()
            } else {
                format!("Recurring authorizations are renewed {} days before they expire (Accounts receivable parameters).", p.renew_days_before)
            };
            let empty = p.currencies.is_empty();
            let contacts = p.contacts.iter().map(|c| {
                let order = format!("/orders/{}", c.order_id);
                let new_payment = payments::domain::payment_views::new_payment_link(c.order_id, c.channel_id);
                let mail = (!c.email.is_empty()).then(|| view! { <a href=format!("mailto:{}", c.email)>{c.email.clone()}</a> });
                let tel = (!c.phone.is_empty()).then(|| view! { <br /> <a href=format!("tel:{}", c.phone.replace(' ', ""))>{c.phone.clone()}</a> });
                view! {
                    <tr data-order=c.order_number.clone()>
                        <td class="nowrap">{c.expires_at.format("%Y-%m-%d %H:%M UTC").to_string()}</td>
                        <td class="nowrap"><a href=order>{c.order_number.clone()}</a><br /><span class="muted small">{c.channel_name.clone()}</span></td>
                        <td>{c.customer_name.clone()}<br /><span class="muted small">{c.customer_account.clone()}</span></td>
                        <td>{mail}{tel}</td>
                        <td class="nowrap">{c.card.clone()}</td>
                        <td class="num">{c.at_risk.to_string()}</td>
                        <td><a rel="external" href=new_payment>"Take a new payment"</a></td>
                    </tr>
                }
            }).collect_view();
            let renewals = p.renewals.iter().map(|r| {
                let order = format!("/orders/{}", r.order_id);
                let when = match (r.renews_from, r.due) {
                    (None, _) => "Not renewed (renewal is off)".to_string(),
                    (Some(_), true) => "Due now: the next run of the renewal job".to_string(),
                    (Some(at), false) => format!("From {}", at.format("%Y-%m-%d %H:%M UTC")),
                };
                view! {
                    <tr data-order=r.order_number.clone()>
                        <td class="nowrap">{r.expires_at.format("%Y-%m-%d %H:%M UTC").to_string()}</td>
                        <td class="nowrap"><a href=order>{r.order_number.clone()}</a></td>
                        <td>{r.customer_account.clone()}</td>
                        <td class="num">{r.at_risk.to_string()}</td>
                        <td>{when}</td>
                    </tr>
                }
            }).collect_view();
            let (no_contacts, no_renewals) = (p.contacts.is_empty(), p.renewals.is_empty());
            view! {
                <p class="notice" role="status" data-testid="renewal-setting">{renewal}</p>
                {if empty {
                    view! { <p class="notice success">"Nothing held on a card expires in the next 30 days."</p> }.into_any()
                } else {
                    p.currencies.into_iter().map(currency_section).collect_view().into_any()
                }}
                <section class="panel">
                    <h2>"Customers to contact"</h2>
                    <p class="small muted">"Nonrecurring tokens are never re-authorized (R-AUT-3): before the date, ask the customer for a new payment."</p>
                    {if no_contacts {
                        view! { <p class="muted">"No one: no nonrecurring authorization expires in the next 30 days."</p> }.into_any()
                    } else {
                        view! {
                            <table class="grid" data-testid="contacts">
                                {table_head(&["Expires", "Sales order", "Customer", "Contact", "Card", "n:At risk", "Next step"])}
                                <tbody>{contacts}</tbody>
                            </table>
                        }.into_any()
                    }}
                </section>
                <section class="panel">
                    <h2>"Renewals"</h2>
                    {if no_renewals {
                        view! { <p class="muted">"No recurring authorization expires in the next 30 days."</p> }.into_any()
                    } else {
                        view! {
                            <table class="grid compact" data-testid="renewals">
                                {table_head(&["Expires", "Sales order", "Customer", "n:At risk", "Renewed"])}
                                <tbody>{renewals}</tbody>
                            </table>
                        }.into_any()
                    }}
                </section>
            }
        })}
    }
}
