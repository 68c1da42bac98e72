use crate::components::{PageHeader, field_error, loaded, outcome, successes_each, table_head};
use crate::error::AppError;
use leptos::prelude::*;
use payments::domain::views::UserView;
use payments::Role;

#[server(endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, AppError> {
    use crate::auth::ssr::{require, services};
    require(&[Role::Administrator]).await?;
    Ok(payments::service::access::list_users(&services()?.db).await?)
}

#[cfg(feature = "ssr")]
fn roles_from(administrator: &Option<String>, finance: &Option<String>, call_center: &Option<String>) -> Vec<Role> {
    [(administrator, Role::Administrator), (finance, Role::Finance), (call_center, Role::CallCenter)]
        .into_iter()
        .filter(|(v, _)| v.is_some())
        .map(|(_, r)| r)
        .collect()
}

#[server(endpoint = "create_user")]
pub async fn create_user(
    username: String,
    display_name: String,
    password: String,
    role_administrator: Option<String>,
    role_finance: Option<String>,
    role_call_center: Option<String>,
) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[Role::Administrator]).await?;
    let roles = roles_from(&role_administrator, &role_finance, &role_call_center);
    payments::service::access::create_user(
        &services()?,
        &user.username,
        payments::service::access::NewUser { username, display_name, password, roles },
    )
    .await?;
    Ok(())
}

#[server(endpoint = "set_user_roles")]
pub async fn set_user_roles(
    user_id: i32,
    role_administrator: Option<String>,
    role_finance: Option<String>,
    role_call_center: Option<String>,
) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[Role::Administrator]).await?;
    let roles = roles_from(&role_administrator, &role_finance, &role_call_center);
    payments::service::access::set_roles(&services()?, &user, user_id, roles)
        .await
        .map_err(|e| AppError::from(e).with_scope(format!("user:{user_id}")))
}

/// Disables a user (their sessions end at once) or enables them again (issue #40).
#[server(endpoint = "set_user_disabled")]
pub async fn set_user_disabled(user_id: i32, disable: String) -> Result<(), AppError> {
    use crate::auth::ssr::{require, services};
    let user = require(&[Role::Administrator]).await?;
    let disabled = match disable.as_str() {
        "yes" => true,
        "no" => false,
        _ => return Err(AppError::Invalid { message: "Choose to disable or to enable the user.".into(), fields: Vec::new(), scope: None }),
    };
    payments::service::access::set_disabled(&services()?, &user.username, Some(user.id), user_id, disabled)
        .await
        .map_err(|e| AppError::from(e).with_scope(format!("user:{user_id}")))
}

fn role_field(role: Role) -> &'static str {
    match role {
        Role::Administrator => "role_administrator",
        Role::Finance => "role_finance",
        Role::CallCenter => "role_call_center",
    }
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let roles = ServerAction::<SetUserRoles>::new();
    let access = ServerAction::<SetUserDisabled>::new();
    let saves = successes_each(vec![
        Box::new(move || matches!(create.value().get(), Some(Ok(())))),
        Box::new(move || matches!(roles.value().get(), Some(Ok(())))),
        Box::new(move || matches!(access.value().get(), Some(Ok(())))),
    ]);
    let data = Resource::new(move || saves.get(), |_| list_users());
    // The signed-in administrator's own row offers no Disable (the server refuses it anyway).
    let me = use_context::<crate::components::UserResource>();
    let my_id = move || me.and_then(|r| r.get()).and_then(|r| r.ok()).flatten().map(|u| u.id);
    view! {
        <PageHeader
            title="Users"
            intro="Who can sign in, and with which roles. A user may hold several roles. Disabling a user ends their sessions at once; a password reset (paystage users reset-password) does too."
        />
        {outcome(roles.value(), "Roles saved.", None)}
        {outcome(access.value(), "Access saved. A disabled user's sessions end at once.", None)}
        {loaded(data, move |users: Vec<UserView>| {
            let rows = users
                .into_iter()
                .map(|u| {
                    let scope = format!("user:{}", u.id);
                    let boxes = Role::ALL
                        .into_iter()
                        .map(|r| {
                            view! {
                                <label class="check">
                                    <input type="checkbox" name=role_field(r) value="on" checked=u.roles.contains(&r) />
                                    {r.label()}
                                </label>
                            }
                        })
                        .collect_view();
                    let (label, disable, class) = if u.disabled { ("Enable", "no", "secondary") } else { ("Disable", "yes", "secondary caution") };
                    let id = u.id;
                    let status = if u.disabled {
                        view! { <span class="badge bad" data-testid="user-disabled">"Disabled"</span> }.into_any()
                    } else {
                        view! { <span class="badge on">"Active"</span> }.into_any()
                    };
                    view! {
                        <tr data-user=u.username.clone()>
                            <td><strong>{u.username.clone()}</strong><br />{status}</td>
                            <td>{u.display_name.clone()}</td>
                            <td>
                                <ActionForm action=roles attr:class="row-form">
                                    <input type="hidden" name="user_id" value=u.id />
                                    {boxes}
                                    <button type="submit" class="secondary">"Save roles"</button>
                                </ActionForm>
                                {outcome(roles.value(), "", Some(scope.clone()))}
                                {field_error(roles.value(), "roles", Some(scope))}
                            </td>
                            <td class="small muted">{u.created_at.format("%Y-%m-%d").to_string()}</td>
                            <td class="small muted nowrap" data-testid="last-sign-in">
                                {u.last_sign_in.map_or_else(|| "Never".to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())}
                            </td>
                            <td>
                                <Show when=move || my_id() != Some(id) fallback=|| view! { <span class="small muted">"You"</span> }>
                                    <ActionForm action=access attr:class="row-form">
                                        <input type="hidden" name="user_id" value=id />
                                        <input type="hidden" name="disable" value=disable />
                                        <button type="submit" class=class>{label}</button>
                                    </ActionForm>
                                </Show>
                                {outcome(access.value(), "", Some(format!("user:{}", u.id)))}
                            </td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table class="grid">
                    {table_head(&["Username", "Name", "Roles", "Created", "Last sign-in", "Access"])}
                    <tbody>{rows}</tbody>
                </table>
            }
        })}
        <section class="panel">
            <h2>"Add a user"</h2>
            {outcome(create.value(), "User created.", None)}
            <ActionForm action=create>
                <div class="field">
                    <label for="new-username">"Username"</label>
                    <input id="new-username" name="username" autocomplete="off" />
                    {field_error(create.value(), "username", None)}
                </div>
                <div class="field">
                    <label for="new-display-name">"Name"</label>
                    <input id="new-display-name" name="display_name" autocomplete="off" />
                    {field_error(create.value(), "display_name", None)}
                </div>
                <div class="field">
                    <label for="new-password">"Password (at least 12 characters)"</label>
                    <input id="new-password" name="password" type="password" autocomplete="new-password" />
                    {field_error(create.value(), "password", None)}
                </div>
                <fieldset class="field">
                    <legend>"Roles"</legend>
                    {Role::ALL
                        .into_iter()
                        .map(|r| {
                            view! {
                                <label class="check">
                                    <input type="checkbox" name=role_field(r) value="on" />
                                    {r.label()}
                                </label>
                            }
                        })
                        .collect_view()}
                    {field_error(create.value(), "roles", None)}
                </fieldset>
                <div class="actions">
                    <button type="submit" class="primary">"Add user"</button>
                </div>
            </ActionForm>
        </section>
    }
}
