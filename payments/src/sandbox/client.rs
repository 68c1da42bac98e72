//! Paystage's side of the sandbox's fault administration ([`super::admin`]): `paystage faults` and
//! the Processor simulator page set the processor's faults through it when Paystage reaches its
//! processor over HTTP. A processor that offers no such API (Adyen itself) is said to be one.
use super::admin::{FaultRequest, FieldProblem};
use crate::domain::parameters::FieldError;
use crate::domain::views::FaultView;
use crate::error::{ServiceError, ServiceResult};
use reqwest::StatusCode;

/// How long one administration call may take.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The fault administration of the sandbox whose Checkout API is at a given endpoint.
#[derive(Clone)]
pub struct SandboxAdmin {
    faults: String,
    api_key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for SandboxAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxAdmin").field("faults", &self.faults).finish_non_exhaustive()
    }
}

impl SandboxAdmin {
    /// For the Checkout API at `endpoint` (`http://host:port/checkout/v72`): the administration
    /// is at the same origin, `/admin/faults`.
    pub fn for_endpoint(endpoint: &str, api_key: &str) -> Result<SandboxAdmin, String> {
        let root = match endpoint.find("/checkout/") {
            Some(i) => &endpoint[..i],
            None => endpoint.trim_end_matches('/'),
        };
        let http = reqwest::Client::builder().timeout(ADMIN_TIMEOUT).build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(SandboxAdmin { faults: format!("{root}/admin/faults"), api_key: api_key.to_string(), http })
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> ServiceError {
        ServiceError::internal(format!("the processor's fault administration at {} could not be reached: {e}", self.faults))
    }

    /// What an answer other than the expected one means.
    async fn refused(&self, r: reqwest::Response) -> ServiceError {
        match r.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ServiceError::internal(format!("the processor at {} refused Paystage's API key", self.faults)),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                ServiceError::internal(format!("the processor at {} offers no fault administration (only `paystage sandbox` does)", self.faults))
            }
            status => {
                let text: String = r.text().await.unwrap_or_default().chars().take(200).collect();
                ServiceError::internal(format!("the processor's fault administration answered {status}: {text}"))
            }
        }
    }

    /// The processor's faults, oldest first.
    pub async fn list(&self) -> ServiceResult<Vec<FaultView>> {
        let r = self.http.get(&self.faults).header("X-API-Key", &self.api_key).send().await.map_err(|e| self.unreachable(e))?;
        if r.status() != StatusCode::OK {
            return Err(self.refused(r).await);
        }
        r.json().await.map_err(|e| self.unreachable(e))
    }

    /// Adds a fault; a refused one comes back as field errors, as from [`crate::connector::faults::add`].
    pub async fn add(&self, point: &str, kind: &str, rate: &str, times: &str, latency_ms: &str) -> ServiceResult<i32> {
        let ask = FaultRequest { point: point.into(), kind: kind.into(), rate: rate.into(), times: times.into(), latency_ms: latency_ms.into() };
        let r = self.http.post(&self.faults).header("X-API-Key", &self.api_key).json(&ask).send().await.map_err(|e| self.unreachable(e))?;
        match r.status() {
            StatusCode::CREATED => {
                let v: serde_json::Value = r.json().await.map_err(|e| self.unreachable(e))?;
                v["id"].as_i64().and_then(|id| i32::try_from(id).ok()).ok_or_else(|| ServiceError::internal("the processor answered no fault id"))
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                let v: serde_json::Value = r.json().await.map_err(|e| self.unreachable(e))?;
                let fields: Vec<FieldProblem> = serde_json::from_value(v["fields"].clone()).unwrap_or_default();
                Err(ServiceError::Validation(fields.into_iter().map(|f| FieldError { field: f.field, message: f.message }).collect()))
            }
            _ => Err(self.refused(r).await),
        }
    }

    /// Removes fault `id`; false when the processor has no such fault.
    pub async fn remove(&self, id: i32) -> ServiceResult<bool> {
        let r = self.http.delete(format!("{}/{id}", self.faults)).header("X-API-Key", &self.api_key).send().await.map_err(|e| self.unreachable(e))?;
        match r.status() {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND if r.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json")) => Ok(false),
            _ => Err(self.refused(r).await),
        }
    }

    /// Removes every fault of the processor; how many there were.
    pub async fn clear(&self) -> ServiceResult<u64> {
        let r = self.http.delete(&self.faults).header("X-API-Key", &self.api_key).send().await.map_err(|e| self.unreachable(e))?;
        if r.status() != StatusCode::OK {
            return Err(self.refused(r).await);
        }
        let v: serde_json::Value = r.json().await.map_err(|e| self.unreachable(e))?;
        Ok(v["removed"].as_u64().unwrap_or(0))
    }
}

/// A shopper's browser at the processor's hosted card page `page_url` (the address Paystage's
/// connector sends browsers to, [`crate::connector::Connector::card_page`]): reads the page's
/// fields from its query as the form carries them, posts the card with them, and takes the
/// stored payment method's id from the redirect back to the merchant. Answers the card's token
/// ([`crate::connector::adyen::stored_token`]). For tools that play the shopper (the invoicing
/// bench); Paystage itself never holds a card number (R-TOK-1).
pub async fn enter_card_as_shopper(http: &reqwest::Client, page_url: &str, card: &crate::connector::CardEntry) -> Result<String, String> {
    let page = reqwest::Url::parse(page_url).map_err(|e| format!("the card page address {page_url:?}: {e}"))?;
    let field = |name: &str| page.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default();
    let shopper = field("shopperReference");
    let form = [
        ("merchantAccount", field("merchantAccount")),
        ("shopperReference", shopper.clone()),
        ("returnUrl", field("returnUrl")),
        ("number", card.number.clone()),
        ("expiry", card.expiry.clone()),
        ("holder", card.holder.clone()),
    ];
    let mut action = page.clone();
    action.set_query(None);
    let r = http.post(action).form(&form).send().await.map_err(|e| format!("the card page at {page_url}: {e}"))?;
    let location = r.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
    let Some(location) = location.filter(|_| r.status().is_redirection()) else {
        return Err(format!("the card page answered {} without sending the browser back", r.status()));
    };
    let back = reqwest::Url::parse(&location).map_err(|e| format!("the card page sent the browser to {location:?}: {e}"))?;
    match back.query_pairs().find(|(k, _)| k == "storedPaymentMethodId") {
        Some((_, id)) => Ok(crate::connector::adyen::stored_token(&shopper, &id)),
        None => Err(format!("the card page sent the browser back without a stored card ({location})")),
    }
}
