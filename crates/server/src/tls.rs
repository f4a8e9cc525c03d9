//! TLS for the web server: a certificate from files, or one generated at start.
//! Browsers open cameras only on https or localhost, so a phone joining over the LAN
//! needs one of these.

use crate::config::ServeArgs;
use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;

pub async fn load(args: &ServeArgs) -> anyhow::Result<Option<RustlsConfig>> {
    // Several crates in the tree enable rustls backends; pick one explicitly.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let config = RustlsConfig::from_pem_file(cert, key)
            .await
            .with_context(|| format!("loading TLS certificate {} and key {}", cert.display(), key.display()))?;
        return Ok(Some(config));
    }
    if !args.tls_self_signed {
        return Ok(None);
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let bind_ip = args.bind.ip();
    names.extend((!bind_ip.is_unspecified()).then(|| bind_ip.to_string()));
    names.extend(args.tls_names.iter().cloned());
    names.sort();
    names.dedup();
    let generated =
        rcgen::generate_simple_self_signed(names.clone()).context("generating a self-signed certificate")?;
    tracing::warn!("serving https with a self-signed certificate for {names:?}; browsers will ask to trust it");
    let config =
        RustlsConfig::from_pem(generated.cert.pem().into_bytes(), generated.key_pair.serialize_pem().into_bytes())
            .await
            .context("using the self-signed certificate")?;
    Ok(Some(config))
}
