//! HMAC signatures of Adyen's standard payment notifications: HMAC-SHA256 over
//! `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`
//! (absent fields as empty strings) with the hex-decoded HMAC key, Base64-encoded, carried in
//! `additionalData.hmacSignature`. The sandbox signs with it, the webhook endpoint verifies with it.
use super::wire::{NotificationItem, HMAC_SIGNATURE_KEY};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// An HMAC key as Adyen issues it: hex digits (32 bytes for a key made in its Customer Area).
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey(Vec<u8>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacKey(<{} bytes, withheld>)", self.0.len())
    }
}

impl HmacKey {
    /// Parses a key given as hex; at least 16 bytes, an even number of hex digits.
    pub fn from_hex(hex: &str) -> Result<HmacKey, String> {
        let hex = hex.trim();
        if hex.len() % 2 != 0 || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("an HMAC key is an even number of hex digits, at least 32".into());
        }
        let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16)).collect::<Result<Vec<u8>, _>>().map_err(|e| e.to_string())?;
        Ok(HmacKey(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
    }
}

/// The string an item's signature covers.
pub fn signed_data(item: &NotificationItem) -> String {
    [
        item.psp_reference.as_str(),
        item.original_reference.as_deref().unwrap_or(""),
        item.merchant_account_code.as_str(),
        item.merchant_reference.as_str(),
        &item.amount.value.to_string(),
        item.amount.currency.as_str(),
        item.event_code.as_str(),
        item.success.as_str(),
    ]
    .join(":")
}

/// The Base64 signature of `item` under `key`.
pub fn sign(item: &NotificationItem, key: &HmacKey) -> String {
    let mut mac = key.mac();
    mac.update(signed_data(item).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Sets `item`'s `additionalData.hmacSignature`.
pub fn attach(item: &mut NotificationItem, key: &HmacKey) {
    let signature = sign(item, key);
    item.additional_data.insert(HMAC_SIGNATURE_KEY.to_string(), signature);
}

/// Whether `item` carries a valid signature under `key` (compared in constant time).
pub fn verify(item: &NotificationItem, key: &HmacKey) -> bool {
    let Some(given) = item.additional_data.get(HMAC_SIGNATURE_KEY) else { return false };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given.trim()) else { return false };
    let mut mac = key.mac();
    mac.update(signed_data(item).as_bytes());
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::adyen::wire::Amount;

    fn item() -> NotificationItem {
        NotificationItem {
            additional_data: Default::default(),
            amount: Amount { currency: "EUR".into(), value: 1130 },
            event_code: "CAPTURE".into(),
            event_date: "2026-12-07T10:00:00+00:00".into(),
            merchant_account_code: "PaystageDemo".into(),
            merchant_reference: "trk-1".into(),
            original_reference: Some("auth_1".into()),
            psp_reference: "cap_1".into(),
            reason: None,
            success: "true".into(),
            payment_method: Some("visa".into()),
        }
    }

    #[test]
    fn the_signed_string_follows_adyens_field_order() {
        assert_eq!(signed_data(&item()), "cap_1:auth_1:PaystageDemo:trk-1:1130:EUR:CAPTURE:true");
        let mut no_original = item();
        no_original.original_reference = None;
        assert_eq!(signed_data(&no_original), "cap_1::PaystageDemo:trk-1:1130:EUR:CAPTURE:true");
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let key = HmacKey::from_hex(&"44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056".to_lowercase()).unwrap();
        let mut signed = item();
        attach(&mut signed, &key);
        assert!(verify(&signed, &key));
        let mut tampered = signed.clone();
        tampered.amount.value += 1;
        assert!(!verify(&tampered, &key), "a changed amount");
        let mut tampered = signed.clone();
        tampered.success = "false".into();
        assert!(!verify(&tampered, &key), "a changed outcome");
        let other = HmacKey::from_hex(&"00".repeat(32)).unwrap();
        assert!(!verify(&signed, &other), "another key");
        let mut missing = signed.clone();
        missing.additional_data.clear();
        assert!(!verify(&missing, &key));
        let mut garbage = signed;
        garbage.additional_data.insert(HMAC_SIGNATURE_KEY.into(), "%%%not base64\u{0}".into());
        assert!(!verify(&garbage, &key));
    }

    #[test]
    fn keys_are_hex_and_never_shown() {
        assert!(HmacKey::from_hex("abc").is_err());
        assert!(HmacKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(HmacKey::from_hex(&"ab".repeat(8)).is_err(), "too short");
        let k = HmacKey::from_hex(&"ab".repeat(32)).unwrap();
        assert!(!format!("{k:?}").contains("ab"));
    }
}
