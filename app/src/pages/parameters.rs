use crate::components::{field_error, loaded, outcome, PageHeader, YesNoSelect, successes};
use crate::error::AppError;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use payments::domain::parameters::ParameterGroup;
use payments::domain::views::ParameterFieldView;
use std::collections::BTreeMap;

#[cfg(feature = "ssr")]
fn group_of(key: &str) -> Result<ParameterGroup, AppError> {
    ParameterGroup::from_key(key).ok_or_else(|| AppError::NotFound(format!("There is no parameter page \"{key}\".")))
}

#[server(endpoint = "parameters_page")]
pub async fn load_parameters(group: String) -> Result<Vec<ParameterFieldView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[payments::Role::Administrator]).await?;
    let group = group_of(&group)?;
    let params = payments::service::parameters::load(&services()?.db).await?;
    Ok(payments::service::parameters::fields(&params, group))
}

/// Saves one parameter page; any invalid field refuses the whole submission (R-PAR-7).
#[server(endpoint = "save_parameters")]
pub async fn save_parameters(group: String, values: BTreeMap<String, String>) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[payments::Role::Administrator]).await?;
    let group = group_of(&group)?;
    payments::service::parameters::save_group(&services()?, &user.username, group, &values).await?;
    Ok(())
}

#[component]
pub fn ParametersPage() -> impl IntoView {
    let params = use_params_map();
    let group_key = move || params.read().get("group").unwrap_or_default();
    let save = ServerAction::<SaveParameters>::new();
    let saves = successes(move || matches!(save.value().get(), Some(Ok(()))));
    let data = Resource::new(move || (group_key(), saves.get()), |(g, _)| load_parameters(g));
    move || match ParameterGroup::from_key(&group_key()) {
        None => view! {
            <PageHeader title="Page not found" intro="There is no parameter page at this address." />
        }
            .into_any(),
        Some(group) => view! {
            <PageHeader title=group.title() intro=group.intro() />
            {outcome(save.value(), "Parameters saved.", None)}
            {loaded(data, move |fields: Vec<ParameterFieldView>| {
                let rows = fields
                    .into_iter()
                    .map(|f| {
                        let name = format!("values[{}]", f.key);
                        let key: &'static str = payments::domain::parameters::definition(&f.key).map(|d| d.key).unwrap_or("");
                        let input = if f.yes_no {
                            view! { <YesNoSelect name=name value=f.value == "yes" id=f.key.clone() /> }.into_any()
                        } else {
                            view! {
                                <span class="with-suffix">
                                    <input id=f.key.clone() name=name value=f.value.clone() inputmode="decimal" />
                                    <span class="suffix">{f.suffix.clone()}</span>
                                </span>
                            }
                                .into_any()
                        };
                        view! {
                            <div class="field">
                                <label for=f.key.clone()>{f.label.clone()}</label>
                                {input}
                                <p class="help">{f.help.clone()}</p>
                                {field_error(save.value(), key, None)}
                            </div>
                        }
                    })
                    .collect_view();
                view! {
                    <section class="panel">
                        <ActionForm action=save>
                            <input type="hidden" name="group" value=group.key() />
                            {rows}
                            <div class="actions">
                                <button type="submit" class="primary">"Save"</button>
                            </div>
                        </ActionForm>
                    </section>
                }
            })}
        }
            .into_any(),
    }
}
