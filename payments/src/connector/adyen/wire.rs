//! The request and response bodies of Adyen's Checkout API (version [`API_VERSION`]) and of its
//! standard payment notifications, as far as Paystage and the sandbox use them. Written from
//! Adyen's public API reference and the field lists of its open-source client libraries
//! (`@adyen/api-library` 32.1.0 speaks `/v72`); unknown fields are ignored when reading, absent
//! optional fields are left out when writing.
use serde::{Deserialize, Serialize};

/// The Checkout API version the connector speaks and the sandbox serves (`/checkout/v72/...`).
pub const API_VERSION: &str = "v72";

/// Header carrying the API key (Adyen's API-key authentication).
pub const API_KEY_HEADER: &str = "X-API-Key";
/// Header carrying the idempotency key; Adyen echoes it in the response.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Set (`true`) on an error answer when nothing was processed: the request may be sent again.
pub const TRANSIENT_ERROR_HEADER: &str = "Transient-Error";
/// Adyen's upper bound on an idempotency key's length.
pub const IDEMPOTENCY_KEY_MAX: usize = 64;

/// An amount in the currency's minor units (Adyen's `Amount`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub currency: String,
    pub value: i64,
}

/// The payment method of a `/payments` request: a stored card (`storedPaymentMethodId`, what the
/// hosted page hands back). Card numbers never appear in a request Paystage sends (R-TOK-1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethod {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_payment_method_id: Option<String>,
}

/// `POST /payments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    pub amount: Amount,
    pub merchant_account: String,
    pub reference: String,
    pub payment_method: PaymentMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopper_reference: Option<String>,
    /// `CardOnFile`, `Subscription` or `UnscheduledCardOnFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring_processing_model: Option<String>,
    /// `Ecommerce`, `ContAuth`, `Moto` or `POS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopper_interaction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_payment_method: Option<bool>,
    /// `manualCapture: "true"` keeps the authorization open until captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_data: Option<std::collections::BTreeMap<String, String>>,
}

/// The payment method Adyen reports in a `/payments` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsePaymentMethod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The answer to `POST /payments`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_reference: Option<String>,
    /// `Authorised`, `Refused`, `Error`, `Cancelled`, `Received`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_reason_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<ResponsePaymentMethod>,
    /// `cardSummary` (last four), `expiryDate`, `cardHolderName`, `paymentMethod` (the variant),
    /// `recurring.recurringDetailReference`, …
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub additional_data: std::collections::BTreeMap<String, String>,
}

/// `POST /payments/{pspReference}/captures`, `/refunds` and `/amountUpdates`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationRequest {
    pub amount: Amount,
    pub merchant_account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `POST /payments/{pspReference}/cancels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    pub merchant_account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The answer to a modification: `status` is `received`; the outcome follows as a notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    pub merchant_account: String,
    pub payment_psp_reference: String,
    pub psp_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub status: String,
}

/// Adyen's error body (`ServiceError`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceError {
    pub status: u16,
    pub error_code: String,
    pub message: String,
    pub error_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_reference: Option<String>,
}

/// `GET /storedPaymentMethods?merchantAccount=…&shopperReference=…`: a shopper's stored cards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPaymentMethods {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopper_reference: Option<String>,
    #[serde(default)]
    pub stored_payment_methods: Vec<StoredPaymentMethod>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPaymentMethod {
    pub id: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub last_four: String,
    #[serde(default)]
    pub expiry_month: String,
    /// Four digits.
    #[serde(default)]
    pub expiry_year: String,
    #[serde(default)]
    pub holder_name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A notification batch as Adyen POSTs it (`live`, `notificationItems`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRequest {
    pub live: String,
    pub notification_items: Vec<NotificationItemWrapper>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationItemWrapper {
    #[serde(rename = "NotificationRequestItem")]
    pub item: NotificationItem,
}

/// One notification (`NotificationRequestItem`). `success` is the string `"true"` or `"false"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationItem {
    #[serde(default)]
    pub additional_data: std::collections::BTreeMap<String, String>,
    pub amount: Amount,
    pub event_code: String,
    pub event_date: String,
    pub merchant_account_code: String,
    pub merchant_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_reference: Option<String>,
    pub psp_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub success: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
}

/// The answer a notification endpoint gives to acknowledge a batch.
pub const ACCEPTED: &str = "[accepted]";

/// The key under `additionalData` that carries an item's signature.
pub const HMAC_SIGNATURE_KEY: &str = "hmacSignature";
