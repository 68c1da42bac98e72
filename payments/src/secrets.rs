//! Secrets kept in Paystage's database (a connector's API key and HMAC key, issue #43) are sealed
//! with the server's secret key, `PAYSTAGE_SECRET_KEY` (32 bytes as 64 hex digits, the same on
//! every server sharing the database): ChaCha20-Poly1305 with a random nonce per sealing, and the
//! place the secret belongs to (connector code and field) as associated data, so a sealed value
//! copied to another row or field does not open. A sealed value is `v1:` and the base64 of nonce
//! and ciphertext; the database never holds a key in the clear, and nothing shows one again.
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use rand_core::RngCore;
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The environment variable that holds the key.
pub const SECRET_KEY_VAR: &str = "PAYSTAGE_SECRET_KEY";
const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct SecretKey(Key);

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for SecretKey {}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<withheld>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("{SECRET_KEY_VAR} must be 64 hex digits (32 bytes); make one with: od -An -tx1 -N32 /dev/urandom | tr -d ' \\n'")]
    BadKey,
    /// Sealed with another key, for another place, or damaged.
    #[error("a stored secret does not open with this server's {SECRET_KEY_VAR} (another key sealed it, or it was altered); enter it again")]
    DoesNotOpen,
}

impl SecretKey {
    pub fn from_hex(hex: &str) -> Result<Self, SecretError> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SecretError::BadKey);
        }
        let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| SecretError::BadKey)).collect::<Result<_, _>>()?;
        Ok(SecretKey(*Key::from_slice(&bytes)))
    }

    /// The key in the environment: None when unset, an error when set but malformed.
    pub fn from_env() -> Result<Option<Self>, SecretError> {
        match std::env::var(SECRET_KEY_VAR) {
            Ok(v) if !v.trim().is_empty() => Self::from_hex(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Seals `plain` for `place` (e.g. `connector:sandbox:api_key`).
    pub fn seal(&self, place: &str, plain: &str) -> String {
        let cipher = ChaCha20Poly1305::new(&self.0);
        let mut nonce = [0u8; NONCE_LEN];
        rand_core::OsRng.fill_bytes(&mut nonce);
        // Encrypting to a Vec fails only past the cipher's length limit (far above any key).
        let sealed = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: place.as_bytes() }).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out))
    }

    /// Opens what [`Self::seal`] sealed for the same `place`.
    pub fn open(&self, place: &str, sealed: &str) -> Result<String, SecretError> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b).ok())
            .filter(|r| r.len() > NONCE_LEN)
            .ok_or(SecretError::DoesNotOpen)?;
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: place.as_bytes() })
            .map_err(|_| SecretError::DoesNotOpen)?;
        String::from_utf8(plain).map_err(|_| SecretError::DoesNotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_place() {
        let key = SecretKey::from_hex(K).unwrap();
        let sealed = key.seal("connector:sandbox:api_key", "the-api-key");
        assert!(!sealed.contains("the-api-key"));
        assert_ne!(sealed, key.seal("connector:sandbox:api_key", "the-api-key"), "a fresh nonce each time");
        assert_eq!(key.open("connector:sandbox:api_key", &sealed).unwrap(), "the-api-key");
        assert_eq!(key.open("connector:sandbox:hmac_key", &sealed), Err(SecretError::DoesNotOpen), "another place");
        let other = SecretKey::from_hex(&K.replace("00", "ff")).unwrap();
        assert_eq!(other.open("connector:sandbox:api_key", &sealed), Err(SecretError::DoesNotOpen), "another key");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.open("connector:sandbox:api_key", &String::from_utf8(altered).unwrap()), Err(SecretError::DoesNotOpen), "altered");
        for junk in ["", "v1:", "v1:!!", "plain", "v2:AAAA"] {
            assert_eq!(key.open("p", junk), Err(SecretError::DoesNotOpen), "{junk:?}");
        }
    }

    #[test]
    fn only_64_hex_digits_make_a_key() {
        for bad in ["", "abc", &K[..63], &format!("{K}0"), &K.replace('0', "g")] {
            assert_eq!(SecretKey::from_hex(bad).unwrap_err(), SecretError::BadKey, "{bad:?}");
        }
        assert!(format!("{:?}", SecretKey::from_hex(K).unwrap()).contains("withheld"));
    }
}
