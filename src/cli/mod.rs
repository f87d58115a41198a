//! Command implementations behind the `omnistream` subcommands.

pub mod demo;
pub mod replay;
pub mod validate;

use omnistream_schemas::Pii;

/// Environment variable holding the secret key for hashing personal identity values.
pub const PII_KEY_ENV: &str = "OMNISTREAM_PII_KEY";

/// A key used when none is configured: fine for trying omnistream out, never for production,
/// because anyone who knows it can test whether a phone number is in the data.
pub const DEV_PII_KEY: &str = "omnistream-development-key-not-secret";

/// The key for personal data from the environment, or the development key; and whether it
/// was configured.
pub fn pii_key_from_env() -> (Vec<u8>, bool) {
    match std::env::var(PII_KEY_ENV) {
        Ok(k) if !k.is_empty() => (k.into_bytes(), true),
        _ => (DEV_PII_KEY.as_bytes().to_vec(), false),
    }
}

/// The hasher for personal data, keyed from the environment or the development key.
pub fn pii_from_env() -> (Pii, bool) {
    let (key, configured) = pii_key_from_env();
    (Pii::new(&key), configured)
}
