//! xmppd: the daemon and its administration commands.

mod certs;
mod http;
mod reload;

/// jemalloc: about a tenth less server CPU per delivered message than glibc malloc,
/// at the same memory per idle session (benches/RESULTS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc options, read at its start: return freed pages to the system after a
/// second instead of ten, so that memory freed after a burst (TLS handshakes, logins)
/// does not stay with the process.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

mod config;
mod logging;
mod storage;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use xmppd_actors::server::Server;
use xmppd_actors::storage::{Storage, StorageError};
use xmppd_proto::auth::scram::Credentials;
use xmppd_proto::config::{PasswordFormat, Settings};

#[derive(Parser)]
#[command(
    name = "xmppd",
    version,
    about = "An XMPP server built as a society of actix actors"
)]
struct Cli {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Serve this domain instead of the configured ones.
    #[arg(long, global = true)]
    domain: Option<String>,
    /// Keep data (database, generated certificates) here.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run,
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        action: AccountCmd,
    },
    /// Validate the configuration and print every problem with its line.
    CheckConfig,
    /// Write every account of the hosted domains (credentials, rosters, offline
    /// messages, vCards, private XML, blocklists) to FILE in the XEP-0227 format.
    Export { file: PathBuf },
    /// Read a XEP-0227 file (from xmppd, ejabberd's export_piefxis, Prosody...) into
    /// the database; existing accounts are updated.
    Import { file: PathBuf },
    /// Make the running daemon (found by the pid file in its data directory) re-read
    /// its configuration, and print what was applied and what needs a restart.
    Reload,
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Create an account: xmppd account add alice@example.org
    Add {
        jid: String,
        /// The password (for scripts); asked for at a prompt when absent.
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and everything stored for it.
    Del { jid: String },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List the accounts of a domain (all hosted domains when omitted).
    List { domain: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::CheckConfig)) {
        return check_config(cli.config.as_deref(), cli.data_dir.as_deref());
    }
    if let (Some(Command::Reload), Some(dir)) = (&cli.command, &cli.data_dir) {
        // the data directory is all it needs: a broken file is the daemon's to report
        return match reload::run(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xmppd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match loader(&cli).load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xmppd: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None | Some(Command::Run) => run(settings, loader(&cli)),
        Some(Command::Account { action }) => account(&settings, action),
        Some(Command::Export { file }) => export(&settings, &file),
        Some(Command::Import { file }) => import(&settings, &file),
        Some(Command::Reload) => {
            reload::run(&settings.data_dir).map_err(|e| CliError::Usage(e.to_string()))
        }
        Some(Command::CheckConfig) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmppd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn loader(cli: &Cli) -> config::Loader {
    config::Loader {
        config: cli.config.clone(),
        domain: cli.domain.clone(),
        data_dir: cli.data_dir.clone(),
    }
}

/// Check the file (problems with its lines), then the file with the WebAdmin's overlay
/// of its data directory merged over it: what the daemon would load.
fn check_config(path: Option<&Path>, data_dir: Option<&Path>) -> ExitCode {
    let text = match path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => config::DEFAULT.to_string(),
    };
    let name = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(embedded default)".into());
    let base = path.and_then(Path::parent).unwrap_or(Path::new(""));
    let (_, problems) = config::check_text(&text, base);
    if problems.is_empty() {
        let loader = config::Loader {
            config: path.map(Path::to_path_buf),
            domain: None,
            data_dir: data_dir.map(Path::to_path_buf),
        };
        if let Err(e) = loader.load() {
            println!("{e}");
            return ExitCode::from(1);
        }
        println!("{name}: OK");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            println!("{name}: {p}");
        }
        ExitCode::from(1)
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Pie(#[from] storage::xep0227::PieError),
}

/// Split `user@domain` and check both parts.
fn parse_account(jid: &str, s: &Settings) -> Result<(String, String), CliError> {
    let j = xmpp_parsers_jid(jid)
        .ok_or_else(|| CliError::Usage(format!("'{jid}' is not a valid user@domain")))?;
    if s.domain(&j.1).is_none() {
        return Err(CliError::Usage(format!("'{}' is not a hosted domain", j.1)));
    }
    Ok(j)
}

fn xmpp_parsers_jid(jid: &str) -> Option<(String, String)> {
    let b = xmpp_parsers::jid::BareJid::new(jid).ok()?;
    Some((b.node()?.to_string(), b.domain().to_string()))
}

fn read_password(given: Option<String>) -> Result<String, CliError> {
    if let Some(p) = given {
        return Ok(p);
    }
    let p = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Again: ")?;
    if p != again {
        return Err(CliError::Usage("the passwords differ".into()));
    }
    Ok(p)
}

/// Credentials for a new password (read at a prompt when not given).
fn new_credentials(s: &Settings, given: Option<String>) -> Result<Credentials, CliError> {
    let pw = read_password(given)?;
    if pw.is_empty() {
        return Err(CliError::Usage("empty password".into()));
    }
    let keep_plain = s.auth.password_format == PasswordFormat::Plain;
    Ok(Credentials::derive(
        &pw,
        s.auth.scram_iterations,
        keep_plain,
    ))
}

/// A storage error about one account, worded for the command line.
fn account_error(e: StorageError, user: &str, domain: &str) -> CliError {
    match e {
        StorageError::Exists => CliError::Usage(format!("{user}@{domain} already exists")),
        StorageError::NotFound => CliError::Usage(format!("no account {user}@{domain}")),
        e => e.into(),
    }
}

fn account(s: &Settings, action: AccountCmd) -> Result<(), CliError> {
    let db = storage::open(s, storage::quiet())?;
    match action {
        AccountCmd::Add { jid, password } => {
            let (user, domain) = parse_account(&jid, s)?;
            if xmppd_proto::xep::register::is_reserved(&user) {
                return Err(CliError::Usage(format!(
                    "names starting with {} are reserved for anonymous sessions",
                    xmppd_proto::xep::register::ANONYMOUS_PREFIX
                )));
            }
            let creds = new_credentials(s, password)?;
            db.create_account(&domain, &user, &creds)
                .map_err(|e| account_error(e, &user, &domain))?;
            println!("created {user}@{domain}");
        }
        AccountCmd::Del { jid } => {
            let (user, domain) = parse_account(&jid, s)?;
            db.delete_account(&domain, &user)
                .map_err(|e| account_error(e, &user, &domain))?;
            println!("deleted {user}@{domain}");
        }
        AccountCmd::Passwd { jid, password } => {
            let (user, domain) = parse_account(&jid, s)?;
            let creds = new_credentials(s, password)?;
            db.set_credentials(&domain, &user, &creds)
                .map_err(|e| account_error(e, &user, &domain))?;
            println!("password changed for {user}@{domain}");
        }
        AccountCmd::List { domain } => {
            let domains: Vec<String> = match domain {
                Some(d) => vec![d],
                None => s.domains.iter().map(|d| d.name.clone()).collect(),
            };
            for d in domains {
                for u in db.list_accounts(&d)? {
                    println!("{u}@{d}");
                }
            }
        }
    }
    Ok(())
}

/// Warn about each configured administrator of a hosted domain whose account does not
/// exist (at start and after a reload): self-registration refuses that name, but the
/// entry is likely a typo or a deleted account.
/// A list in the WebAdmin's overlay replaces the file's: say so when they differ.
fn warn_shadowed(loader: &config::Loader, s: &Settings, log: &slog::Logger) {
    for key in loader.shadowed(&s.data_dir) {
        slog::warn!(log, "the WebAdmin's overlay replaces this list of the configuration file (edit it in the WebAdmin, or remove the key from the overlay)";
            "key" => key, "overlay" => %config::overlay_file(&s.data_dir).display());
    }
}

fn warn_missing_admins(s: &Settings, db: &dyn xmppd_actors::storage::Backend, log: &slog::Logger) {
    for a in &s.admins {
        let Some((user, dom)) = a.split_once('@') else {
            continue;
        };
        if !s.domains.iter().any(|d| d.name.eq_ignore_ascii_case(dom)) {
            continue;
        }
        match db.account_exists(&dom.to_ascii_lowercase(), &user.to_lowercase()) {
            Ok(true) => {}
            Ok(false) => {
                slog::warn!(log, "a configured administrator account does not exist"; "admin" => a)
            }
            Err(e) => {
                slog::warn!(log, "cannot check a configured administrator account"; "admin" => a, "error" => %e)
            }
        }
    }
}

fn hosted(s: &Settings) -> Vec<String> {
    s.domains.iter().map(|d| d.name.clone()).collect()
}

/// `xmppd export FILE`: written beside FILE first, then renamed over it.
fn export(s: &Settings, file: &Path) -> Result<(), CliError> {
    let db = storage::open(s, storage::quiet())?;
    let tmp = file.with_extension("xml.partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let sum = storage::xep0227::export(&*db, &hosted(s), &mut out)?;
    use std::io::Write;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, file)?;
    db.flush()?;
    println!("exported {sum} to {}", file.display());
    Ok(())
}

/// `xmppd import FILE`.
fn import(s: &Settings, file: &Path) -> Result<(), CliError> {
    let db = storage::open(s, storage::quiet())?;
    let policy = storage::xep0227::PasswordPolicy {
        iterations: s.auth.scram_iterations,
        keep_plain: s.auth.password_format == PasswordFormat::Plain,
    };
    let sum = storage::xep0227::import(&*db, file, &hosted(s), policy);
    // what was imported before an error stays: finish writing it either way
    db.flush()?;
    let sum = sum?;
    for w in &sum.warnings {
        eprintln!("xmppd: import: {w}");
    }
    println!("imported {sum} from {}", file.display());
    Ok(())
}

/// Run the daemon until SIGTERM or SIGINT; SIGHUP reloads the live settings.
fn run(settings: Settings, loader: config::Loader) -> Result<(), CliError> {
    let ctl = logging::LogControl::new(settings.log_level, settings.log_tags.clone());
    let (log, guard) = logging::init(ctl.clone());
    let base = loader.base();
    // the database may live elsewhere (PostgreSQL); generated certificates and the
    // admin address still go here
    std::fs::create_dir_all(&settings.data_dir)?;
    {
        // certificates' keys, the database, the admin address: the daemon's user only
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&settings.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // one daemon a data directory: held until the process ends
    let pid_lock =
        reload::PidLock::acquire(&settings.data_dir).map_err(|e| CliError::Usage(e.to_string()))?;
    let db = storage::open(&settings, log.new(slog::o!("module" => "storage")))?;
    let tls = certs::tls_context(&settings, &base, &log)?;
    let storage = Storage::new(db.clone());
    warn_missing_admins(&settings, &*db, &log);
    warn_shadowed(&loader, &settings, &log);
    let admin_db = db.clone();
    let system = actix_rt::System::new();
    let pid_lock_held = &pid_lock;
    let res = system.block_on(async move {
        let server = match Server::start(settings, storage, tls, log.clone()).await {
            Ok(s) => s,
            Err(e) => return Err(CliError::Io(std::io::Error::other(e.to_string()))),
        };
        for (addr, tls) in &server.listening {
            println!("listening {} {addr}", if *tls == xmppd_proto::config::ListenerTls::Direct { "direct-tls" } else { "starttls" });
        }
        let admin = http::Admin { loader: loader.clone(), logs: ctl.clone(), reloading: Default::default() };
        let reloading = admin.clone();
        if let Err(e) = http::start(&server.ctx, &log, admin) {
            server.shutdown(Duration::from_secs(1)).await;
            return Err(CliError::Usage(e.to_string()));
        }
        let status_file = reload::status_file(&server.ctx.settings.get().data_dir);
        let mut generation = 0u64;
        // handlers first: a signal right after "ready" (or after the pid is published)
        // must not find the defaults, which end the process
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // an old report must not pass for this daemon's; then `xmppd reload` may find it
        let _ = std::fs::remove_file(&status_file);
        if let Err(e) = pid_lock_held.publish() {
            slog::warn!(log, "cannot write the pid file"; "file" => %reload::pid_file(&server.ctx.settings.get().data_dir).display(), "error" => %e);
        }
        println!("ready");
        slog::info!(log, "xmppd started"; "version" => env!("CARGO_PKG_VERSION"),
            "domains" => server.ctx.settings.get().domains.iter().map(|d| d.name.clone()).collect::<Vec<_>>().join(","));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    generation += 1;
                    // not while a WebAdmin change writes and applies the overlay
                    let result = {
                        let _one = reloading.reload_lock();
                        loader
                            .load()
                            .map_err(|e| e.to_string())
                            .and_then(|new| reload::apply(&server.ctx, &ctl, &base, new))
                    };
                    match &result {
                        Ok(_) => {
                            warn_missing_admins(&server.ctx.settings.get(), &*admin_db, &log);
                            warn_shadowed(&loader, &server.ctx.settings.get(), &log);
                        }
                        Err(e) => slog::error!(log, "configuration not reloaded"; "error" => %e),
                    }
                    if let Err(e) = reload::write_atomically(&status_file, reload::status_text(generation, &result).as_bytes(), 0o644) {
                        slog::warn!(log, "cannot write the reload status"; "file" => %status_file.display(), "error" => %e);
                    }
                }
            }
        }
        slog::info!(log, "shutting down");
        server.shutdown(Duration::from_secs(5)).await;
        Ok(())
    });
    if let Err(e) = db.flush() {
        eprintln!("xmppd: flushing storage: {e}");
    }
    drop(guard);
    drop(pid_lock);
    res
}
