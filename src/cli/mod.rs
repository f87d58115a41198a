//! Command implementations behind the `omnistream` subcommands.

pub mod demo;
pub mod diff;
pub mod replay;
pub mod validate;

use omnistream_schemas::Pii;

/// A line on standard error that never panics: `eprintln!` does when the stream is closed
/// (`omnistream run ... 2>&1 | head`), and a panic on the main thread left the service
/// serving with nobody to stop it on SIGTERM.
pub fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Environment variable holding the secret key for hashing personal identity values.
pub const PII_KEY_ENV: &str = "OMNISTREAM_PII_KEY";

/// A key used when none is configured: fine for trying omnistream out, never for production,
/// because anyone who knows it can test whether a phone number is in the data.
pub const DEV_PII_KEY: &str = "omnistream-development-key-not-secret";

/// Environment variable naming a file that holds that key (a mounted secret); the file's
/// content, without its trailing newline, is the key.
pub const PII_KEY_FILE_ENV: &str = "OMNISTREAM_PII_KEY_FILE";

/// Shortest key accepted from a file or the environment, in bytes.
pub const MIN_PII_KEY_BYTES: usize = 16;

/// The key for personal data from the environment (the variable, or the file it names), or
/// the development key; and whether it was configured. Both set, an unreadable file or a key
/// under [`MIN_PII_KEY_BYTES`] is an error naming the variable (the key itself is never shown).
pub fn pii_key_from_env() -> anyhow::Result<(Vec<u8>, bool)> {
    let var = std::env::var(PII_KEY_ENV).ok().filter(|k| !k.is_empty());
    let file = std::env::var(PII_KEY_FILE_ENV)
        .ok()
        .filter(|f| !f.is_empty());
    let (key, from) = match (var, file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("{PII_KEY_ENV} and {PII_KEY_FILE_ENV} are both set: set one")
        }
        (Some(k), None) => (k.into_bytes(), PII_KEY_ENV.to_string()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| anyhow::anyhow!("{PII_KEY_FILE_ENV}: cannot read {f}: {e}"))?;
            let k = text.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
            (k, format!("{PII_KEY_FILE_ENV} ({f})"))
        }
        (None, None) => return Ok((DEV_PII_KEY.as_bytes().to_vec(), false)),
    };
    if key.len() < MIN_PII_KEY_BYTES {
        anyhow::bail!(
            "{from}: the key has {} bytes; at least {MIN_PII_KEY_BYTES} are needed",
            key.len()
        );
    }
    Ok((key, true))
}

/// The hasher for personal data, keyed from the environment or the development key.
pub fn pii_from_env() -> anyhow::Result<(Pii, bool)> {
    let (key, configured) = pii_key_from_env()?;
    Ok((Pii::new(&key), configured))
}
