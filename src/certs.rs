//! The TLS certificates the daemon serves: configured PEM files, or a self-signed
//! certificate generated on first start (kept under `data_dir/certs` and reused).

use crate::config::resolve;
use rustls::sign::CertifiedKey;
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
    #[error(
        "private key {0} can be read or written by others (mode {1:o}) and cannot be \
         tightened ({2}): run chmod 600 on it, as its owner"
    )]
    KeyExposed(String, u32, std::io::Error),
}

/// Build the TLS context for `settings`; relative paths are taken from `base`. Every
/// private key file is checked first ([`private_key_file`]).
pub fn tls_context(
    settings: &Settings,
    base: &Path,
    log: &slog::Logger,
) -> Result<TlsContext, CertError> {
    let (default, per_domain) = load(settings, base, log)?;
    Ok(TlsContext::new(default, per_domain)?)
}

/// A reload: read the certificate and key files of `settings` again (global `[tls]`
/// and per domain, also of domains added since) and serve them to new connections;
/// connections up already keep theirs. When a file cannot be read or a key does not
/// fit, nothing changes and the error says which file. Returns whether any certificate
/// served differs from before (a renewal in place included).
pub fn reload(
    tls: &TlsContext,
    settings: &Settings,
    base: &Path,
    log: &slog::Logger,
) -> Result<bool, CertError> {
    let (default, per_domain) = load(settings, base, log)?;
    Ok(tls.replace_certificates(default, per_domain)?)
}

type Loaded = (CertifiedKey, Vec<(String, CertifiedKey)>);

/// The default certificate and those of the domains that have their own.
fn load(settings: &Settings, base: &Path, log: &slog::Logger) -> Result<Loaded, CertError> {
    let load = |cert: &Path, key: &Path| -> Result<_, CertError> {
        private_key_file(key, log)?;
        Ok(tls::load_certified_key(cert, key)?)
    };
    let default = if settings.tls.certificate.is_empty() {
        let (cert, key) = self_signed(settings)?;
        load(&cert, &key)?
    } else {
        load(
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
            load(&resolve(base, &d.certificate), &resolve(base, &d.key))?,
        ));
    }
    Ok((default, per_domain))
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

/// A private key file must be readable by its owner only. One that is open to the
/// group or others is tightened to 0600 (and the change logged); if that is not
/// possible (another owner, a read-only file system) the daemon refuses to start.
pub fn private_key_file(path: &Path, log: &slog::Logger) -> Result<(), CertError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| CertError::Io(path.display().to_string(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => {
            slog::warn!(log, "private key was open to others: now 0600"; "file" => %path.display(), "was" => format!("{mode:o}"));
            Ok(())
        }
        Err(e) => Err(CertError::KeyExposed(path.display().to_string(), mode, e)),
    }
}
