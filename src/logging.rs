//! Logging with live levels: Major / Problems / Low-Level / All Info, globally and per
//! tag (XMPPI for inbound connections, XMPPO for outbound server connections).
//!
//! Records map onto the levels by their slog level: `info!` is a Major event (message
//! transfer reports, logins), `error!`/`crit!` are fatal problems (also Major),
//! `warn!` a non-fatal Problem, `debug!` Low-Level, `trace!` the XML itself (All Info).

use slog::{Drain, Level, OwnedKVList, Record};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use xmppd_proto::config::LogLevel;

/// The level settings, changeable while the server runs.
#[derive(Debug)]
pub struct LogControl {
    global: AtomicU8,
    tags: RwLock<HashMap<String, LogLevel>>,
}

fn to_u8(l: LogLevel) -> u8 {
    l as u8
}

fn from_u8(v: u8) -> LogLevel {
    match v {
        0 => LogLevel::None,
        1 => LogLevel::Major,
        2 => LogLevel::Problems,
        3 => LogLevel::LowLevel,
        _ => LogLevel::AllInfo,
    }
}

/// The setting a record needs to be written.
fn needed(level: Level) -> LogLevel {
    match level {
        Level::Critical | Level::Error | Level::Info => LogLevel::Major,
        Level::Warning => LogLevel::Problems,
        Level::Debug => LogLevel::LowLevel,
        Level::Trace => LogLevel::AllInfo,
    }
}

/// Our name for a record's level, as printed.
fn label(level: Level) -> &'static str {
    match level {
        Level::Critical | Level::Error => "FATAL",
        Level::Info => "MAJOR",
        Level::Warning => "PROBLEM",
        Level::Debug => "LOW",
        Level::Trace => "ALL",
    }
}

impl LogControl {
    pub fn new(global: LogLevel, tags: impl IntoIterator<Item = (String, LogLevel)>) -> Arc<Self> {
        let ctl = Arc::new(LogControl {
            global: AtomicU8::new(to_u8(global)),
            tags: RwLock::new(HashMap::new()),
        });
        ctl.set(global, tags);
        ctl
    }

    /// Replace the global level and the per-tag overrides.
    pub fn set(&self, global: LogLevel, tags: impl IntoIterator<Item = (String, LogLevel)>) {
        self.global.store(to_u8(global), Ordering::Relaxed);
        if let Ok(mut t) = self.tags.write() {
            *t = tags.into_iter().collect();
        }
        let xml = ["XMPPI", "XMPPO"]
            .iter()
            .any(|tag| self.enabled(tag, Level::Trace));
        xmppd_proto::xml::log_mask::XML_LOGGED.store(xml, Ordering::Relaxed);
    }

    pub fn enabled(&self, tag: &str, level: Level) -> bool {
        let setting = if tag.is_empty() {
            None
        } else {
            self.tags.read().ok().and_then(|t| t.get(tag).copied())
        }
        .unwrap_or_else(|| from_u8(self.global.load(Ordering::Relaxed)));
        setting != LogLevel::None && needed(level) <= setting
    }
}

/// Filters on the caller's thread, before the async channel.
struct LiveFilter<D> {
    inner: D,
    ctl: Arc<LogControl>,
}

impl<D: Drain> Drain for LiveFilter<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;
    fn log(&self, r: &Record, kv: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        if self.ctl.enabled(r.tag(), r.level()) {
            self.inner.log(r, kv).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Build the root logger (to stderr) and its control. Keep the guard alive until exit
/// so that buffered records are flushed.
pub fn init(ctl: Arc<LogControl>) -> (slog::Logger, slog_async::AsyncGuard) {
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let term = slog_term::FullFormat::new(decorator)
        .use_custom_header_print(|ts, mut rd, r, _| {
            rd.start_timestamp()?;
            ts(&mut rd)?;
            rd.start_whitespace()?;
            write!(rd, " ")?;
            rd.start_level()?;
            write!(rd, "{:<7}", label(r.level()))?;
            rd.start_whitespace()?;
            write!(rd, " ")?;
            if !r.tag().is_empty() {
                rd.start_msg()?;
                write!(rd, "{} ", r.tag())?;
            }
            rd.start_msg()?;
            write!(rd, "{}", r.msg())?;
            Ok(true)
        })
        .build()
        .fuse();
    let (drain, guard) = slog_async::Async::new(term)
        .chan_size(8192)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build_with_guard();
    let root = slog::Logger::root(
        LiveFilter {
            inner: drain.fuse(),
            ctl,
        }
        .fuse(),
        slog::o!(),
    );
    (root, guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_nest_and_tags_override() {
        let ctl = LogControl::new(
            LogLevel::Problems,
            [("XMPPI".to_string(), LogLevel::AllInfo)],
        );
        assert!(ctl.enabled("", Level::Info));
        assert!(ctl.enabled("", Level::Warning));
        assert!(!ctl.enabled("", Level::Debug));
        assert!(ctl.enabled("XMPPI", Level::Trace));
        assert!(!ctl.enabled("XMPPO", Level::Trace));
        ctl.set(LogLevel::Major, []);
        assert!(!ctl.enabled("", Level::Warning));
        assert!(ctl.enabled("", Level::Error));
        assert!(!ctl.enabled("XMPPI", Level::Trace));
        ctl.set(LogLevel::None, []);
        assert!(!ctl.enabled("", Level::Critical));
    }
}
