use crate::components::{loaded, outcome, table_head, PageHeader};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::FeaturesOverview;

#[server(endpoint = "features_overview")]
pub async fn load_features() -> Result<FeaturesOverview, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    let set = payments::service::features::load(&services()?.db).await?;
    Ok(payments::service::features::overview(&set))
}

/// Enables (`enable` = "yes") or disables a feature; refused when prerequisites say so (R-FEA-2).
#[server(endpoint = "toggle_feature")]
pub async fn toggle_feature(key: String, enable: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let feature = payments::Feature::from_key(&key).ok_or_else(|| AppError::NotFound(format!("There is no feature \"{key}\".")))?;
    let enable = payments::domain::parameters::parse_yes_no("Enable", &enable)
        .map_err(|m| AppError::Invalid { message: m, fields: Vec::new(), scope: None })?;
    payments::service::features::set(&services()?, &user.username, feature, enable).await?;
    Ok(())
}

#[component]
pub fn FeaturesPage() -> impl IntoView {
    let toggle = ServerAction::<ToggleFeature>::new();
    let data = Resource::new(move || toggle.version().get(), |_| load_features());
    let (filter, set_filter) = signal(String::new());
    view! {
        <PageHeader
            title="Feature management"
            intro="Turn payment features on or off. A feature can only be enabled after its prerequisites, and cannot be disabled while another enabled feature depends on it."
        />
        {outcome(toggle.value(), "Feature updated.", None)}
        <div class="toolbar">
            <label class="inline" for="feature-filter">"Filter"</label>
            <input
                id="feature-filter"
                type="search"
                placeholder="Type part of a feature name"
                on:input=move |ev| set_filter.set(event_target_value(&ev).to_lowercase())
            />
        </div>
        {loaded(data, move |o: FeaturesOverview| {
            let warnings = o
                .warnings
                .into_iter()
                .map(|w| view! { <div class="notice warning" role="status">{w}</div> })
                .collect_view();
            let rows = o
                .features
                .into_iter()
                .map(|f| {
                    let name = f.feature.name();
                    let lower = name.to_lowercase();
                    let hidden = move || !filter.get().is_empty() && !lower.contains(&filter.get());
                    let prereqs = if f.prerequisites.is_empty() {
                        view! { <span class="muted">"None"</span> }.into_any()
                    } else {
                        f.prerequisites
                            .iter()
                            .map(|(p, on)| {
                                let class = if *on { "chip on" } else { "chip off" };
                                let mark = if *on { "✓ " } else { "✗ " };
                                view! { <span class=class>{mark}{p.name()}</span> }
                            })
                            .collect_view()
                            .into_any()
                    };
                    let required_by = (!f.required_by.is_empty()).then(|| {
                        let names = f.required_by.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ");
                        view! { <p class="small muted">"Required by: " {names}</p> }
                    });
                    let (label, next) = if f.enabled { ("Disable", "no") } else { ("Enable", "yes") };
                    view! {
                        <tr class:hidden=hidden data-feature=f.feature.key()>
                            <td>
                                <strong>{name}</strong>
                                <p class="small">{f.feature.description()}</p>
                                {required_by}
                            </td>
                            <td class="prereqs">{prereqs}</td>
                            <td>
                                {if f.enabled {
                                    view! { <span class="badge on">"On"</span> }.into_any()
                                } else {
                                    view! { <span class="badge off">"Off"</span> }.into_any()
                                }}
                            </td>
                            <td>
                                <ActionForm action=toggle>
                                    <input type="hidden" name="key" value=f.feature.key() />
                                    <input type="hidden" name="enable" value=next />
                                    <button type="submit" class=if f.enabled { "secondary" } else { "primary" }>
                                        {label}
                                    </button>
                                </ActionForm>
                            </td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                {warnings}
                <table class="grid">
                    {table_head(&["Feature", "Prerequisites", "Status", ""])}
                    <tbody>{rows}</tbody>
                </table>
            }
        })}
    }
}
