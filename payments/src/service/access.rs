//! Users, roles, passwords, sign-in and sessions. Passwords are hashed with Argon2id, at most
//! [`MAX_CONCURRENT_HASHES`] at a time. Failed sign-ins are counted per account and client address
//! and lock that address out of that account for a while, each lock twice as long as the last (the
//! same for unknown usernames, so the lock does not reveal which accounts exist); a lock never
//! keeps the account's owner out from another address (issue #40). Every sign-in attempt is
//! audited. A session holds while its user exists and is not disabled, it began after the user's
//! last password reset, and it is within its absolute lifetime.
use super::{audit, for_update, Services};
use crate::domain::access::{CurrentUser, Role};
use crate::domain::views::UserView;
use crate::entity::{sign_in_throttle, user, user_role};
use crate::error::{SetupError, ServiceError, ServiceResult};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use rand_core::{OsRng, RngCore};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::OnceLock;

/// Failed attempts from one address allowed within [`THROTTLE_WINDOW_MINUTES`] before that
/// address is locked out of the account.
pub const MAX_FAILED_SIGN_INS: i32 = 5;
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;
/// The first lock; each further lock of the same account from the same address doubles it, up to
/// [`MAX_LOCK_MINUTES`].
pub const LOCK_MINUTES: i64 = 15;
pub const MAX_LOCK_MINUTES: i64 = 24 * 60;
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (Argon2 hashes any length, but nobody needs more, and a bound keeps
/// every request's work bounded).
pub const MAX_PASSWORD_LEN: usize = 256;
/// Argon2 hashes computed at once, server-wide: each takes about 19 MiB and a core for a fifth of
/// a second, so this bounds memory (about 80 MiB) and keeps cores for payments. More wait.
pub const MAX_CONCURRENT_HASHES: usize = 4;
/// How long a sign-in waits for a hashing slot before it is refused as busy.
pub const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// A session's absolute lifetime unless configured (`PAYSTAGE_SESSION_MAX_HOURS`).
pub const DEFAULT_SESSION_MAX_HOURS: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("The username or password is not correct.")]
    InvalidCredentials,
    #[error("Too many failed sign-in attempts for this account from your address. Try again after {} UTC.", .until.format("%H:%M"))]
    Locked { until: DateTime<Utc> },
    #[error("This account is disabled. Ask an administrator to enable it.")]
    Disabled,
    #[error("Sign-in is busy right now. Try again in a moment.")]
    Busy,
    #[error("Sign-in is unavailable right now: {0}")]
    Database(#[from] DbErr),
}

impl SignInError {
    /// Stable code, as `ServiceError::code`.
    pub fn code(&self) -> &'static str {
        match self {
            SignInError::InvalidCredentials => "PS_SIGN_IN_INVALID",
            SignInError::Locked { .. } => "PS_SIGN_IN_LOCKED",
            SignInError::Disabled => "PS_ACCOUNT_DISABLED",
            SignInError::Busy => "PS_SIGN_IN_BUSY",
            SignInError::Database(_) => "PS_DATABASE",
        }
    }
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
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!("Password must be at least {MIN_PASSWORD_LEN} characters."));
    }
    if n > MAX_PASSWORD_LEN {
        return Err(format!("Password must be at most {MAX_PASSWORD_LEN} characters."));
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

/// The server's hashing slots ([`MAX_CONCURRENT_HASHES`]).
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// Runs `work` (Argon2) off the async workers in one of the hashing slots, waiting at most `wait`
/// for a slot (None when none came free).
async fn hashing<T: Send + 'static>(wait: std::time::Duration, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    use std::sync::atomic::Ordering::SeqCst;
    let _slot = tokio::time::timeout(wait, HASHING.acquire()).await.ok()?.ok()?;
    let now = HASHES_RUNNING.fetch_add(1, SeqCst) + 1;
    HASHES_PEAK.fetch_max(now, SeqCst);
    let out = tokio::task::spawn_blocking(work).await.ok();
    HASHES_RUNNING.fetch_sub(1, SeqCst);
    out
}

static HASHES_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HASHES_PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The most Argon2 hashes this process has run at once (never above [`MAX_CONCURRENT_HASHES`]).
pub fn peak_hashes() -> usize {
    HASHES_PEAK.load(std::sync::atomic::Ordering::SeqCst)
}

pub async fn hash_password(password: String) -> String {
    hashing(std::time::Duration::MAX, move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashing cannot fail").to_string()
    })
    .await
    .expect("a hashing slot always comes free, and hashing cannot fail")
}

/// Verifies against `hash`, or against a hash nobody matches when there is no such user (so both
/// take as long). None when no hashing slot came free in [`HASH_WAIT`].
async fn verify_password(password: String, hash: Option<String>) -> Option<bool> {
    hashing(HASH_WAIT, move || {
        let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
        PasswordHash::new(hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
    })
    .await
}

/// A hash nobody's password matches, verified for unknown usernames so they take as long as known ones.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(generate_password().as_bytes(), &salt).expect("argon2").to_string()
    })
}

/// What a session holds about its sign-in: who, when, and until when it may last at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub user_id: i32,
    pub at: DateTime<Utc>,
    pub ends: DateTime<Utc>,
}

impl SignedIn {
    pub fn new(user_id: i32, at: DateTime<Utc>, lifetime: Duration) -> Self {
        SignedIn { user_id, at, ends: at + lifetime }
    }
}

/// The user of a session, if the session still holds at `now`: within its absolute lifetime, the
/// user exists and is not disabled, and it began at or after the user's `sessions_valid_from`.
pub async fn session_user(db: &impl ConnectionTrait, s: SignedIn, now: DateTime<Utc>) -> Result<Option<CurrentUser>, DbErr> {
    if now >= s.ends {
        return Ok(None);
    }
    let Some(m) = user::Entity::find_by_id(s.user_id).one(db).await? else { return Ok(None) };
    if m.disabled_at.is_some() || m.sessions_valid_from.is_some_and(|from| s.at < from) {
        return Ok(None);
    }
    let roles = roles_of(db, m.id).await?;
    Ok(Some(current(m, roles)))
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
        out.push(UserView { id: m.id, username: m.username, display_name: m.display_name, roles, created_at: m.created_at, disabled: m.disabled_at.is_some(), last_sign_in: m.last_sign_in_at });
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

/// Sets a new password (the CLI's reset, or a first start); clears the user's sign-in locks and
/// ends every session they have (issue #40).
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
    am.sessions_valid_from = Set(Some(s.now()));
    am.update(&txn).await?;
    sign_in_throttle::Entity::delete_many().filter(sign_in_throttle::Column::Username.eq(name.clone())).exec(&txn).await?;
    audit::record(&txn, s.now(), actor, "user.password_reset", &name, None, None).await?;
    txn.commit().await?;
    Ok(())
}

/// Disables a user (no sign-in; every session of theirs ends at once) or enables them again. An
/// administrator cannot disable themselves, so the system never loses its last way in by accident.
/// `actor` is who does it (`actor_id` None: the command line).
pub async fn set_disabled(s: &Services, actor: &str, actor_id: Option<i32>, user_id: i32, disabled: bool) -> ServiceResult<()> {
    if disabled && actor_id == Some(user_id) {
        return Err(SetupError::DisableOwnAccount.into());
    }
    let txn = s.db.begin().await?;
    let m = for_update(user::Entity::find_by_id(user_id), &txn)
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no user with id {user_id}.")))?;
    if m.disabled_at.is_some() == disabled {
        return Ok(());
    }
    let name = m.username.clone();
    let now = s.now();
    let mut am = m.into_active_model();
    am.disabled_at = Set(disabled.then_some(now));
    if disabled {
        am.sessions_valid_from = Set(Some(now));
    }
    am.update(&txn).await?;
    let action = if disabled { "user.disable" } else { "user.enable" };
    audit::record(&txn, now, actor, action, &name, None, None).await?;
    txn.commit().await?;
    Ok(())
}

/// The client address as kept with sign-in failures: at most 64 characters.
fn client_key(client: &str) -> String {
    client.chars().take(64).collect()
}

/// Checks a username and password from `client` (the caller's address). Counts failures per
/// account and address, and refuses while that address is locked out of that account.
pub async fn sign_in(s: &Services, username: &str, password: &str, client: &str) -> Result<CurrentUser, SignInError> {
    let username = normalize_username(username);
    if validate_username(&username).is_err() || password.chars().count() > MAX_PASSWORD_LEN {
        // No account can have this name or password; refuse without hashing or writing anything.
        return Err(SignInError::InvalidCredentials);
    }
    let client = client_key(client);
    let now = s.now();
    let key = (username.clone(), client.clone());
    if let Some(t) = sign_in_throttle::Entity::find_by_id(key.clone()).one(&s.db).await? {
        if let Some(until) = t.locked_until.filter(|u| *u > now) {
            audit::record(&s.db, now, &username, "sign_in.refused_locked", &username, None, Some(json!({ "client": client }))).await?;
            return Err(SignInError::Locked { until });
        }
    }
    let found = find_by_username(&s.db, &username).await?;
    let hash = found.as_ref().map(|m| m.password_hash.clone());
    let ok = verify_password(password.to_string(), hash).await.ok_or(SignInError::Busy)? && found.is_some();
    if ok {
        let m = found.expect("checked above");
        if m.disabled_at.is_some() {
            audit::record(&s.db, now, &username, "sign_in.refused_disabled", &username, None, Some(json!({ "client": client }))).await?;
            return Err(SignInError::Disabled);
        }
        sign_in_throttle::Entity::delete_by_id(key).exec(&s.db).await?;
        user::Entity::update_many().col_expr(user::Column::LastSignInAt, sea_orm::sea_query::Expr::value(now)).filter(user::Column::Id.eq(m.id)).exec(&s.db).await?;
        audit::record(&s.db, now, &username, "sign_in", &username, None, Some(json!({ "client": client }))).await?;
        let roles = roles_of(&s.db, m.id).await?;
        return Ok(current(m, roles));
    }
    let locked = record_failure(s, &username, &client, now).await?;
    audit::record(&s.db, now, &username, "sign_in.failed", &username, None, Some(json!({ "client": client }))).await?;
    match locked {
        Some(until) => Err(SignInError::Locked { until }),
        None => Err(SignInError::InvalidCredentials),
    }
}

/// How long the `locks`-th lock (counting from 0) lasts: [`LOCK_MINUTES`], doubled each time, at
/// most [`MAX_LOCK_MINUTES`].
pub fn lock_minutes(locks: i32) -> i64 {
    let doublings = locks.clamp(0, 16) as u32;
    LOCK_MINUTES.saturating_mul(1i64 << doublings).min(MAX_LOCK_MINUTES)
}

/// Counts one failure; returns the lock end if this failure locked the account for this address.
async fn record_failure(s: &Services, username: &str, client: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, DbErr> {
    let txn = s.db.begin().await?;
    let key = (username.to_string(), client.to_string());
    let existing = for_update(sign_in_throttle::Entity::find_by_id(key), &txn).one(&txn).await?;
    let window = Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let (failures, started) = match &existing {
        Some(t) if now - t.window_started_at < window => (t.failures + 1, t.window_started_at),
        _ => (1, now),
    };
    let locks = existing.as_ref().map_or(0, |t| t.locks);
    let locked_until = (failures >= MAX_FAILED_SIGN_INS).then(|| now + Duration::minutes(lock_minutes(locks)));
    let am = sign_in_throttle::ActiveModel {
        username: Set(username.to_string()),
        client: Set(client.to_string()),
        failures: Set(if locked_until.is_some() { 0 } else { failures }),
        window_started_at: Set(started),
        locked_until: Set(locked_until),
        locks: Set(if locked_until.is_some() { locks.saturating_add(1) } else { locks }),
    };
    if existing.is_some() {
        am.update(&txn).await?;
    } else {
        am.insert(&txn).await?;
    }
    txn.commit().await?;
    Ok(locked_until)
}

/// Forgets sign-in failures that no longer matter: windows that ran out without a lock, and locks
/// over for more than a day (run hourly with the session clean-up).
pub async fn prune_sign_in_failures(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    use sea_orm::sea_query::Condition;
    let stale_window = now - Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let done = now - Duration::days(1);
    let r = sign_in_throttle::Entity::delete_many()
        .filter(
            Condition::any()
                .add(Condition::all().add(sign_in_throttle::Column::LockedUntil.is_null()).add(sign_in_throttle::Column::WindowStartedAt.lt(stale_window)))
                .add(sign_in_throttle::Column::LockedUntil.lt(done)),
        )
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}
