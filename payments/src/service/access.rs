//! Users, roles, passwords and sign-in. Passwords are hashed with Argon2id; failed sign-ins are
//! counted per account and lock it for a while (the same for unknown usernames, so the lock does
//! not reveal which accounts exist). Every sign-in attempt is audited.
use super::{audit, for_update, Services};
use crate::domain::access::{CurrentUser, Role};
use crate::domain::views::UserView;
use crate::entity::{login_throttle, user, user_role};
use crate::error::{ServiceError, ServiceResult};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use rand_core::{OsRng, RngCore};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde_json::json;
use std::sync::OnceLock;

/// Failed attempts allowed within [`THROTTLE_WINDOW_MINUTES`] before the account is locked.
pub const MAX_FAILED_SIGN_INS: i32 = 5;
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;
pub const LOCK_MINUTES: i64 = 15;
pub const MIN_PASSWORD_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("The username or password is not correct.")]
    InvalidCredentials,
    #[error("Too many failed sign-in attempts for this account. Try again after {} UTC.", .until.format("%H:%M"))]
    Locked { until: DateTime<Utc> },
    #[error("Sign-in is unavailable right now: {0}")]
    Database(#[from] DbErr),
}

pub fn normalize_username(raw: &str) -> String {
    raw.trim().to_ascii_lowercase()
}

pub fn validate_username(username: &str) -> Result<(), String> {
    if username.len() < 2 || username.len() > 40 {
        return Err("Username must be 2 to 40 characters.".into());
    }
    if !username.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-') {
        return Err("Username may contain only letters, digits, dots, hyphens and underscores.".into());
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!("Password must be at least {MIN_PASSWORD_LEN} characters."));
    }
    Ok(())
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

pub async fn hash_password(password: String) -> String {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashing cannot fail").to_string()
    })
    .await
    .expect("hashing task panicked")
}

/// Verifies against `hash`, or against a hash nobody matches when there is no such user (so both
/// take as long). Runs off the async workers: Argon2 is deliberately slow.
async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
        PasswordHash::new(hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash nobody's password matches, verified for unknown usernames so they take as long as known ones.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(generate_password().as_bytes(), &salt).expect("argon2").to_string()
    })
}

async fn roles_of(db: &impl ConnectionTrait, user_id: i32) -> Result<Vec<Role>, DbErr> {
    let mut roles: Vec<Role> = user_role::Entity::find()
        .filter(user_role::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|r| Role::from_code(&r.role))
        .collect();
    roles.sort();
    Ok(roles)
}

fn current(m: user::Model, roles: Vec<Role>) -> CurrentUser {
    CurrentUser { id: m.id, username: m.username, display_name: m.display_name, roles }
}

pub async fn load_user(db: &impl ConnectionTrait, id: i32) -> Result<Option<CurrentUser>, DbErr> {
    match user::Entity::find_by_id(id).one(db).await? {
        Some(m) => {
            let roles = roles_of(db, m.id).await?;
            Ok(Some(current(m, roles)))
        }
        None => Ok(None),
    }
}

pub async fn count_users(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    user::Entity::find().count(db).await
}

pub async fn find_by_username(db: &impl ConnectionTrait, username: &str) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find().filter(user::Column::Username.eq(normalize_username(username))).one(db).await
}

pub async fn list_users(db: &impl ConnectionTrait) -> Result<Vec<UserView>, DbErr> {
    let mut out = Vec::new();
    for m in user::Entity::find().order_by_asc(user::Column::Username).all(db).await? {
        let roles = roles_of(db, m.id).await?;
        out.push(UserView { id: m.id, username: m.username, display_name: m.display_name, roles, created_at: m.created_at });
    }
    Ok(out)
}

pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub password: String,
    pub roles: Vec<Role>,
}

/// Creates a user; refuses a bad username, a short password, no role, or a taken username.
pub async fn create_user(s: &Services, actor: &str, new: NewUser) -> ServiceResult<i32> {
    let username = normalize_username(&new.username);
    let mut errors = Vec::new();
    if let Err(m) = validate_username(&username) {
        errors.push(crate::domain::parameters::FieldError::new("username", m));
    }
    let display_name = new.display_name.trim().to_string();
    if display_name.is_empty() || display_name.len() > 80 {
        errors.push(crate::domain::parameters::FieldError::new("display_name", "Display name must be 1 to 80 characters."));
    }
    if let Err(m) = validate_password(&new.password) {
        errors.push(crate::domain::parameters::FieldError::new("password", m));
    }
    if new.roles.is_empty() {
        errors.push(crate::domain::parameters::FieldError::new("roles", "Choose at least one role."));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Validation(errors));
    }
    let hash = hash_password(new.password).await;
    let txn = s.db.begin().await?;
    if find_by_username(&txn, &username).await?.is_some() {
        return Err(ServiceError::field("username", format!("The username {username} is already taken.")));
    }
    let m = user::ActiveModel {
        username: Set(username.clone()),
        display_name: Set(display_name),
        password_hash: Set(hash),
        created_at: Set(s.now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    for role in &new.roles {
        user_role::ActiveModel { user_id: Set(m.id), role: Set(role.code().to_string()) }.insert(&txn).await?;
    }
    let roles: Vec<&str> = new.roles.iter().map(|r| r.code()).collect();
    audit::record(&txn, s.now(), actor, "user.create", &username, None, Some(json!({ "roles": roles }))).await?;
    txn.commit().await?;
    Ok(m.id)
}

/// Replaces a user's roles. An administrator cannot remove their own Administrator role, so the
/// system never loses its last way in by accident.
pub async fn set_roles(s: &Services, actor: &CurrentUser, user_id: i32, roles: Vec<Role>) -> ServiceResult<()> {
    if roles.is_empty() {
        return Err(ServiceError::field("roles", "Choose at least one role."));
    }
    if actor.id == user_id && !roles.contains(&Role::Administrator) {
        return Err(ServiceError::field("roles", "You cannot remove your own Administrator role."));
    }
    let txn = s.db.begin().await?;
    let m = user::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no user with id {user_id}.")))?;
    let before = roles_of(&txn, user_id).await?;
    user_role::Entity::delete_many().filter(user_role::Column::UserId.eq(user_id)).exec(&txn).await?;
    for role in &roles {
        user_role::ActiveModel { user_id: Set(user_id), role: Set(role.code().to_string()) }.insert(&txn).await?;
    }
    let codes = |rs: &[Role]| rs.iter().map(|r| r.code()).collect::<Vec<_>>();
    audit::record(
        &txn,
        s.now(),
        &actor.username,
        "user.roles",
        &m.username,
        Some(json!({ "roles": codes(&before) })),
        Some(json!({ "roles": codes(&roles) })),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Sets a new password (the CLI's reset, or a first start); clears any sign-in lock.
pub async fn set_password(s: &Services, actor: &str, username: &str, password: String) -> ServiceResult<()> {
    validate_password(&password).map_err(|m| ServiceError::field("password", m))?;
    let hash = hash_password(password).await;
    let txn = s.db.begin().await?;
    let m = find_by_username(&txn, username)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no user named {username}.")))?;
    let name = m.username.clone();
    let mut am = m.into_active_model();
    am.password_hash = Set(hash);
    am.update(&txn).await?;
    login_throttle::Entity::delete_by_id(name.clone()).exec(&txn).await?;
    audit::record(&txn, s.now(), actor, "user.password_reset", &name, None, None).await?;
    txn.commit().await?;
    Ok(())
}

/// Checks a username and password. Counts failures per account and refuses while locked.
pub async fn sign_in(s: &Services, username: &str, password: &str) -> Result<CurrentUser, SignInError> {
    let username = normalize_username(username);
    if validate_username(&username).is_err() {
        // No account can have this name; refuse without writing it anywhere.
        return Err(SignInError::InvalidCredentials);
    }
    let now = s.now();
    if let Some(t) = login_throttle::Entity::find_by_id(username.clone()).one(&s.db).await? {
        if let Some(until) = t.locked_until.filter(|u| *u > now) {
            audit::record(&s.db, now, &username, "sign_in.refused_locked", &username, None, None).await?;
            return Err(SignInError::Locked { until });
        }
    }
    let found = find_by_username(&s.db, &username).await?;
    let hash = found.as_ref().map(|m| m.password_hash.clone());
    let ok = verify_password(password.to_string(), hash).await && found.is_some();
    if ok {
        let m = found.expect("checked above");
        login_throttle::Entity::delete_by_id(username.clone()).exec(&s.db).await?;
        audit::record(&s.db, now, &username, "sign_in", &username, None, None).await?;
        let roles = roles_of(&s.db, m.id).await?;
        return Ok(current(m, roles));
    }
    let locked = record_failure(s, &username, now).await?;
    audit::record(&s.db, now, &username, "sign_in.failed", &username, None, None).await?;
    match locked {
        Some(until) => Err(SignInError::Locked { until }),
        None => Err(SignInError::InvalidCredentials),
    }
}

/// Counts one failure; returns the lock end if this failure locked the account.
async fn record_failure(s: &Services, username: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, DbErr> {
    let txn = s.db.begin().await?;
    let existing = for_update(login_throttle::Entity::find_by_id(username.to_string()), &txn).one(&txn).await?;
    let window = Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let (failures, started) = match &existing {
        Some(t) if now - t.window_started_at < window => (t.failures + 1, t.window_started_at),
        _ => (1, now),
    };
    let locked_until = (failures >= MAX_FAILED_SIGN_INS).then(|| now + Duration::minutes(LOCK_MINUTES));
    let am = login_throttle::ActiveModel {
        username: Set(username.to_string()),
        failures: Set(if locked_until.is_some() { 0 } else { failures }),
        window_started_at: Set(started),
        locked_until: Set(locked_until),
    };
    if existing.is_some() {
        am.update(&txn).await?;
    } else {
        am.insert(&txn).await?;
    }
    txn.commit().await?;
    Ok(locked_until)
}
