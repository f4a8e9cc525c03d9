//! Secrets come from an environment variable or a file, never from the command line
//! (argv is readable by every user of the machine through `/proc`).

use anyhow::{bail, Context};
use std::path::Path;

/// The secret in environment variable `env`, else in `file`; `None` when neither is set.
/// A file's trailing newline is dropped; an empty secret is an error.
pub fn load(what: &str, env: &str, file: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    let secret = match (std::env::var_os(env), file) {
        (Some(_), Some(file)) => bail!("{what}: set either {env} or the file {}, not both", file.display()),
        (Some(value), None) => value.into_encoded_bytes(),
        (None, Some(file)) => {
            let mut bytes = std::fs::read(file).with_context(|| format!("{what}: reading {}", file.display()))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        }
        (None, None) => return Ok(None),
    };
    if secret.is_empty() {
        bail!("{what} is empty");
    }
    Ok(Some(secret))
}
