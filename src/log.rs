//! One line per event on stderr: `<UTC time> <LEVEL> <message>`.
//!
//! Like the lab's `logging.warning(f"connection from ...")`, but with levels, so that a busy
//! server can be told (`--quiet`, that is `JAM_LOG=notice`) to keep its start, its stop and what
//! needs a person's attention, without a line per connection.
//! Each line is formatted first and written with one call, so lines from several threads never
//! interleave.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// How much is logged: each level includes those before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing.
    Off = 0,
    /// What failed.
    Error = 1,
    /// What a person should look at: refused clients, limits reached.
    Warn = 2,
    /// The server's life: start (with the address and limits), signals, shutdown, stop.
    Notice = 3,
    /// Every connection opened and closed.
    Info = 4,
    /// Details for a developer.
    Debug = 5,
}

impl Level {
    /// Parses a `JAM_LOG` value.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "notice" => Level::Notice,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    /// The level's name as `JAM_LOG` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Off => "OFF",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Notice => "NOTE",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Where lines go when not to stderr: `jam lab` writes the server's log into its transcript on
/// stdout, each line after the machine's name.
static TRANSCRIPT: OnceLock<String> = OnceLock::new();

/// Sends every later line to stdout, after `prefix`. Only the first call has an effect.
pub fn to_stdout(prefix: &str) {
    let _ = TRANSCRIPT.set(prefix.to_string());
}

/// Sets the most detailed level written, for the whole process.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether lines of `level` are written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line; use the macros, which skip the formatting when the level is off.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    // Not `Timestamp::now()`, which panics on a clock before 1970 or past 9999 and so links
    // jiff's error messages (and the float printing they use) into the binary: 20 KB.
    let time = jiff::Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    // Nowhere to report a failed write to the log; dropping the line is all that is left.
    let _ = match TRANSCRIPT.get() {
        Some(prefix) => {
            let line = format!("{prefix}{time:.3} {:<5} {args}\n", level.label());
            std::io::stdout().lock().write_all(line.as_bytes())
        }
        None => {
            let line = format!("{time:.3} {:<5} {args}\n", level.label());
            std::io::stderr().lock().write_all(line.as_bytes())
        }
    };
}

/// Logs a line at [`Level::Error`](crate::log::Level::Error).
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Error) { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } };
}
/// Logs a line at [`Level::Warn`](crate::log::Level::Warn).
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Warn) { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } };
}
/// Logs a line at [`Level::Notice`](crate::log::Level::Notice).
#[macro_export]
macro_rules! notice {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Notice) { $crate::log::write($crate::log::Level::Notice, format_args!($($t)*)) } };
}
/// Logs a line at [`Level::Info`](crate::log::Level::Info).
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Info) { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } };
}
/// Logs a line at [`Level::Debug`](crate::log::Level::Debug).
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Debug) { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } };
}
