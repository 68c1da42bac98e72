//! `POST /webhooks/adyen/{connector}`: where an Adyen-shaped processor (Adyen, or `paystage
//! sandbox`) sends its notification batches (issue #42). Every item's HMAC signature is checked
//! with that connector's HMAC key first; one bad signature and the whole batch is refused with 401
//! and nothing is stored. A good batch is stored in the inbox (`processor_notifications`) before
//! the answer `[accepted]`; the background job processes it. A storage failure answers 503, so
//! the processor sends the batch again.
//!
//! The keys come from the environment, one per connector: `PAYSTAGE_CONNECTOR_<CODE>_HMAC_KEY`
//! (hex; `<CODE>` is the connector's code in upper case, `-` as `_`); a connector without one
//! there uses the HMAC key entered on the Payment connectors page (issue #43), stored sealed.
//! They are never logged.
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use payments::connector::adyen::signature::{self, HmacKey};
use payments::connector::adyen::wire::{NotificationRequest, ACCEPTED};
use payments::service::Services;
use std::collections::HashMap;
use std::sync::Arc;

/// The HMAC key of each connector that receives notifications, by connector code.
#[derive(Clone, Debug, Default)]
pub struct WebhookKeys(Arc<HashMap<String, HmacKey>>);

impl WebhookKeys {
    pub fn new(keys: HashMap<String, HmacKey>) -> Self {
        WebhookKeys(Arc::new(keys))
    }

    /// The keys set in the environment (`PAYSTAGE_CONNECTOR_<CODE>_HMAC_KEY`); a key that is not
    /// valid hex stops the start with a message naming the variable.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for (name, value) in vars {
            let Some(code) = name.strip_prefix("PAYSTAGE_CONNECTOR_").and_then(|r| r.strip_suffix("_HMAC_KEY")) else { continue };
            if code.is_empty() {
                continue;
            }
            let key = HmacKey::from_hex(&value).map_err(|e| format!("{name}: {e}"))?;
            keys.insert(code.to_ascii_lowercase().replace('_', "-"), key);
        }
        Ok(WebhookKeys::new(keys))
    }

    fn get(&self, connector: &str) -> Option<&HmacKey> {
        self.0.get(&connector.to_ascii_lowercase())
    }
}

/// The webhook routes, with their own body limit; outside the session, same-origin and page
/// layers (a processor has no session and no Origin; the signature is its credential).
pub fn router(services: Services, keys: WebhookKeys) -> Router {
    Router::new()
        .route("/webhooks/adyen/{connector}", post(adyen))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(crate::security::MAX_REQUEST_BODY_BYTES))
        .with_state((services, keys))
}

async fn adyen(State((services, keys)): State<(Services, WebhookKeys)>, Path(connector): Path<String>, body: String) -> Response {
    let refused = || (StatusCode::UNAUTHORIZED, "The notification's signature is not valid for this connector.").into_response();
    let stored;
    let key = match keys.get(&connector) {
        Some(k) => k,
        None => match payments::service::setup::stored_hmac_key(&services, &connector.to_ascii_lowercase()).await {
            Ok(Some(hex)) => match HmacKey::from_hex(&hex) {
                Ok(k) => {
                    stored = k;
                    &stored
                }
                Err(_) => return refused(),
            },
            Ok(None) => return refused(),
            Err(e) => {
                tracing::error!(error = %e, %connector, "could not read the connector's HMAC key; the processor will send the batch again");
                return (StatusCode::SERVICE_UNAVAILABLE, "Not stored; send it again.").into_response();
            }
        },
    };
    let batch: NotificationRequest = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(_) => return (StatusCode::BAD_REQUEST, "The body is not a notification batch.").into_response(),
    };
    let items: Vec<_> = batch.notification_items.into_iter().map(|w| w.item).collect();
    if items.iter().any(|i| !signature::verify(i, key)) {
        tracing::warn!(%connector, items = items.len(), "refused a notification batch with a signature that does not verify");
        return refused();
    }
    match payments::service::notifications::receive(&services, &connector.to_ascii_lowercase(), &items).await {
        Ok(_) => (StatusCode::OK, ACCEPTED).into_response(),
        Err(e) => {
            tracing::error!(error = %e, %connector, "could not store a notification batch; the processor will send it again");
            (StatusCode::SERVICE_UNAVAILABLE, "Not stored; send it again.").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_come_from_their_variables_and_a_bad_one_is_named() {
        let vars = [("PAYSTAGE_CONNECTOR_ADYEN_HMAC_KEY".to_string(), "ab".repeat(32)), ("PAYSTAGE_CONNECTOR_EU_SHOP_HMAC_KEY".to_string(), "cd".repeat(32)), ("OTHER".to_string(), "x".into())];
        let keys = super::WebhookKeys::from_vars(vars.into_iter()).unwrap();
        assert!(keys.get("adyen").is_some() && keys.get("eu-shop").is_some() && keys.get("other").is_none());
        let bad = super::WebhookKeys::from_vars([("PAYSTAGE_CONNECTOR_X_HMAC_KEY".to_string(), "secret-not-hex".to_string())].into_iter()).unwrap_err();
        assert!(bad.contains("PAYSTAGE_CONNECTOR_X_HMAC_KEY") && !bad.contains("secret-not-hex"), "{bad}");
    }
}
