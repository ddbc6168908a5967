//! The TLS certificates the daemon serves: configured PEM files, or a self-signed
//! certificate generated on first start (kept under `data_dir/certs` and reused).

use crate::config::resolve;
use std::path::Path;
use xmppd_proto::config::Settings;
use xmppd_proto::net::tls::{self, TlsContext, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("generating a certificate: {0}")]
    Generate(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Build the TLS context for `settings`; relative paths are taken from `base`.
pub fn tls_context(settings: &Settings, base: &Path) -> Result<TlsContext, CertError> {
    let default = if settings.tls.certificate.is_empty() {
        let (cert, key) = self_signed(settings)?;
        tls::load_certified_key(&cert, &key)?
    } else {
        tls::load_certified_key(
            &resolve(base, &settings.tls.certificate),
            &resolve(base, &settings.tls.key),
        )?
    };
    let mut per_domain = Vec::new();
    for d in settings
        .domains
        .iter()
        .filter(|d| !d.certificate.is_empty())
    {
        per_domain.push((
            d.name.clone(),
            tls::load_certified_key(&resolve(base, &d.certificate), &resolve(base, &d.key))?,
        ));
    }
    Ok(TlsContext::new(default, per_domain)?)
}

/// The generated certificate for the configured domains: made on first start, and again
/// when the domain list changes.
fn self_signed(settings: &Settings) -> Result<(std::path::PathBuf, std::path::PathBuf), CertError> {
    let dir = settings.data_dir.join("certs");
    let io = |p: &Path, e| CertError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let (cert, key, names_file) = (
        dir.join("selfsigned.crt"),
        dir.join("selfsigned.key"),
        dir.join("selfsigned.names"),
    );
    let mut names: Vec<String> = Vec::new();
    for d in &settings.domains {
        names.push(d.name.clone());
        names.push(format!("*.{}", d.name));
    }
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_file).unwrap_or_default();
    if current != wanted || !cert.exists() || !key.exists() {
        let (c, k) =
            tls::self_signed_pem(&names).map_err(|e| CertError::Generate(e.to_string()))?;
        std::fs::write(&cert, c).map_err(|e| io(&cert, e))?;
        write_private(&key, k.as_bytes()).map_err(|e| io(&key, e))?;
        std::fs::write(&names_file, wanted).map_err(|e| io(&names_file, e))?;
    }
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
