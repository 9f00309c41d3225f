//! Setting values written as text, the same for a flag and for its `JAM_…` variable.
//!
//! A leaf that every command's parser (flags) and [`crate::server::Config::from_env`] (the
//! environment, also on the appliance's kernel command line) use, so a value means the same
//! wherever it is given, and a bad one is reported in one format: `--flag: why` or
//! `environment variable NAME: why`. The helpers at the end read flags with lexopt (ripgrep's
//! parser), for the commands' parsers beside each command.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use lexopt::ValueExt;

use crate::Error;
use crate::log::Level;
use crate::server::protocol::MIN_MAX_LINE;

/// Replaces `*slot` with the parsed value of the environment variable `name`, if it is set and
/// not empty.
pub fn env_override<T>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    slot: &mut T,
) -> Result<(), Error> {
    if let Some(value) = env(name).filter(|v| !v.is_empty()) {
        *slot = parse(&value).map_err(|why| Error::usage(format!("environment variable {name}: {why}")))?;
    }
    Ok(())
}

/// `ADDR:PORT`, `[IPv6]:PORT`, or a bare port (on all IPv4 addresses).
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.parse().map_err(|_| format!("{s:?} is not an address such as 0.0.0.0:45000 or [::]:45000"))
}

/// A port number, 0 (any free port) included.
pub fn port(s: &str) -> Result<u16, String> {
    s.parse().map_err(|_| format!("{s:?} is not a port number"))
}

/// A whole number, 0 included.
pub fn whole(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| format!("{s:?} is not a whole number"))
}

/// A whole number of at least 1.
pub fn count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("{s:?} is not a whole number of at least 1"))
}

/// A listen backlog: a count that fits the kernel's `int`.
pub fn backlog(s: &str) -> Result<u32, String> {
    match count(s)? {
        n if n > i32::MAX as usize => Err(format!("{n} is more than the kernel takes ({})", i32::MAX)),
        n => Ok(n as u32),
    }
}

/// Source addresses for `jam bench --sources`: 127.0.0.1 to 127.0.0.254 at most.
pub fn sources(s: &str) -> Result<usize, String> {
    match count(s)? {
        n if n > 254 => Err(format!("{n}: at most 254 (127.0.0.1 to 127.0.0.254)")),
        n => Ok(n),
    }
}

/// A line limit: a count that still admits `TIME` + CR LF.
pub fn line_limit(s: &str) -> Result<usize, String> {
    let n = count(s)?;
    if n < MIN_MAX_LINE {
        return Err(format!("{n} is too small: TIME plus CR LF needs {MIN_MAX_LINE} bytes"));
    }
    Ok(n)
}

/// A span of time greater than zero: seconds (`30`) or a span such as `500ms`, `30s`, `5m`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = duration_or_zero(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(d)
}

/// A span of time, zero included.
pub fn duration_or_zero(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a span of time such as 30, 500ms, 30s or 5m");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    // Whole numbers each with a unit, largest first or not: `1h`, `1m30s`, `250ms`. Read here
    // rather than by jiff's span parser, which costs 8 KB of the binary for forms (`PT5M`,
    // `5 minutes`) no one types at a flag.
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let letters = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
        let unit = match &rest[..letters] {
            "h" | "hr" | "hrs" | "hour" | "hours" => Duration::from_secs(3600),
            "m" | "min" | "mins" | "minute" | "minutes" => Duration::from_secs(60),
            "s" | "sec" | "secs" | "second" | "seconds" => Duration::from_secs(1),
            "ms" | "msec" | "msecs" => Duration::from_millis(1),
            "us" | "usec" | "usecs" => Duration::from_micros(1),
            "ns" | "nsec" | "nsecs" => Duration::from_nanos(1),
            _ => return Err(bad()),
        };
        rest = rest[letters..].trim_start();
        let part = unit.checked_mul(u32::try_from(n).map_err(|_| bad())?).ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// A duration as a person writes it, and as [`duration`] reads it back: `5s`, `250ms`.
pub fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A log level: `JAM_LOG`'s values.
pub fn log_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("{s:?}: expected error, warn, notice, info, debug or off"))
}

/// How a command's parser looks up an environment variable (passed in, so that every rule is a
/// unit test).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What a command's parser found: the command's arguments, or a request for its help.
#[derive(Debug, PartialEq)]
pub enum Parsed<T> {
    /// Run the command with these arguments.
    Run(T),
    /// `--help` was given: print the command's help instead.
    Help,
}

impl<T> Parsed<T> {
    /// The same request, its arguments turned into `U`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parsed<U> {
        match self {
            Parsed::Run(t) => Parsed::Run(f(t)),
            Parsed::Help => Parsed::Help,
        }
    }
}

/// A command-line error from lexopt, as a usage error (exit status 2).
pub fn usage(e: lexopt::Error) -> Error {
    Error::usage(e.to_string())
}

/// The next argument as text.
pub fn text(p: &mut lexopt::Parser) -> Result<String, Error> {
    p.value().map_err(usage)?.string().map_err(usage)
}

/// The value of `flag`, parsed; a bad one is reported as `--flag: why`.
pub fn value<T>(
    p: &mut lexopt::Parser,
    flag: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, Error> {
    parse(&text(p)?).map_err(|why| Error::usage(format!("{flag}: {why}")))
}

/// A command's one positional argument (the server, for most), parsed into `slot`; a second
/// one is an error.
pub fn positional<T>(
    slot: &mut Option<T>,
    v: OsString,
    parse: impl Fn(&str) -> Result<T, Error>,
) -> Result<(), Error> {
    if slot.is_some() {
        return Err(usage(lexopt::Arg::Value(v).unexpected()));
    }
    let text = v.string().map_err(usage)?;
    *slot = Some(parse(&text).map_err(|e| Error::usage(e.to_string()))?);
    Ok(())
}

/// The parser of a command that takes no arguments but `--help`.
pub fn no_arguments(p: &mut lexopt::Parser) -> Result<Parsed<()>, Error> {
    use lexopt::Arg::{Long, Short};
    match p.next().map_err(usage)? {
        None => Ok(Parsed::Run(())),
        Some(Short('h') | Long("help")) => Ok(Parsed::Help),
        Some(other) => Err(usage(other.unexpected())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_spans() {
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("1h 2m"), Ok(Duration::from_secs(3720)));
        assert_eq!(duration("10 seconds"), Ok(Duration::from_secs(10)));
        for bad in ["0", "-5s", "soon", "", "5x", "s", "1.5s", "99999999999h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert_eq!(duration_or_zero("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn shown_durations_read_back() {
        for d in [Duration::from_secs(5), Duration::from_millis(250), Duration::from_secs(300)] {
            assert_eq!(duration(&show(d)), Ok(d));
        }
    }

    #[test]
    fn every_variable_error_has_one_format() {
        let env = |_: &str| Some("later".to_string());
        let mut d = Duration::ZERO;
        let e = env_override(&env, "JAM_GRACE", duration, &mut d).unwrap_err();
        assert!(e.to_string().starts_with("environment variable JAM_GRACE: \"later\""), "{e}");
        let mut level = Level::Info;
        let e = env_override(&env, "JAM_LOG", log_level, &mut level).unwrap_err();
        assert!(e.to_string().starts_with("environment variable JAM_LOG: \"later\""), "{e}");
        assert!(e.is_usage());
        // Unset or empty: the slot keeps its value.
        env_override(&|_: &str| Some(String::new()), "JAM_LOG", log_level, &mut level).unwrap();
        assert_eq!(level, Level::Info);
    }
}
