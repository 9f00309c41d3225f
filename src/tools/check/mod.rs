//! `jam check`: grades any time server, jam or a student's, against the lab sheet.
//!
//! It connects to the server, runs a fixed series of checks, each with its own time limit, and
//! reports one line per check: PASS, FAIL or WARN, and for anything but a pass, what was sent
//! and the exact bytes that came back (escaped), or what did not happen.
//!
//! The checks come in two levels. *Required* are what the sheet asks (sections 1.a to 1.d):
//! connections accepted, `TIME` answered with exactly `JAM hh:mm:ss` CR LF at the current time,
//! several requests per connection, `QUIT` closing, and concurrent clients. *Recommended* are
//! what TCP asks of any line server although the sheet is silent: a request split over
//! segments, requests joined in one, a half-closed client, unknown and bare-LF lines, an
//! over-long line, a client that never reads, and many idle connections.
//!
//! How it counts: a check not met is a FAIL at either level; a WARN is a check met in a way a
//! client could trip over (bytes after `QUIT`, a reset instead of a close). The exit status is 0
//! when every *required* check passes or warns, 1 otherwise. Checks are independent where they
//! can be, so that one fault fails the check that names it and those that follow from it, not
//! everything after: only the reply check looks at the reply's format; the framing checks
//! compare their replies with the reply to a plain `TIME` (digits aside); the concurrency
//! checks count reply lines.
//!
//! It is gentle enough for a student's server on a lab network: at most
//! [`IDLE_CONNECTIONS`] + 1 connections at once, at most [`NEVER_READS_BYTES`] sent by any
//! check, and a server that hangs still gets its full report in about half a minute.
//!
//! The checks are grouped as the sheet is: `sheet.rs` holds what it asks (1.a to 1.d) and how a
//! reply's time is judged, `tcp.rs` what TCP asks where the sheet is silent. `peer.rs` is one
//! connection to the server under test, each step bounded; `report.rs` is the card and its
//! JSON. This file holds the settings, the order the checks run in, and `jam check` itself.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use lexopt::prelude::*;

use crate::server::clock::Zone;
use crate::settings::{self, Env, Parsed, positional, show, text, usage, value};
use crate::tools::client::Target;
use crate::{Error, outln};

mod peer;
mod report;
mod sheet;
mod tcp;

use peer::{Closed, Heard, Peer, got_suffix, shown};
pub use report::{Report, card_line};

/// The zone replies are expected in unless `--tz` or `TZ` says otherwise. `TZ` is read as
/// `jam serve` reads it, so that in the labs, whose machines all run with the lab's `TZ`
/// (Asia/Jakarta), a grader on a client machine expects what the server there gives; the card
/// always names the zone it assumed. Without either, UTC: the sheet names no zone.
pub const DEFAULT_ZONE: &str = "UTC";
/// How long each step of a check waits for the server: a connection, a reply, a close.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How far the server's time may be from this machine's and still count as current. Lab
/// machines keep time with NTP; a few seconds allow for one that does not, and for the round trip.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5);
/// Clients served at once in the concurrency check.
pub const DEFAULT_CLIENTS: usize = 20;
/// Idle connections held open while a new client asks for the time.
pub const IDLE_CONNECTIONS: usize = 64;
/// The over-long line: far over any sensible line limit (jam's is 1 KiB), far under a flood.
pub const LONG_LINE: usize = 32 * 1024;
/// The most a client that never reads sends before it stops.
pub const NEVER_READS_BYTES: usize = 1024 * 1024;
/// Pause between the bytes of a split request, so that each goes in its own segment.
const SPLIT_PAUSE: Duration = Duration::from_millis(20);
/// How long to listen for stray bytes after an answer (a second line where one was due).
const SETTLE: Duration = Duration::from_millis(200);
/// Bytes of one reply kept for the report.
const MAX_KEPT: usize = 4096;
/// Bytes of a reply shown in a detail line.
const SHOWN: usize = 120;

/// Settings of `jam check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckArgs {
    /// The server to grade.
    pub target: Target,
    /// The zone the replies should be in: an IANA name or a POSIX rule.
    pub zone: String,
    /// How long each step waits.
    pub timeout: Duration,
    /// How far the time may be off.
    pub tolerance: Duration,
    /// Clients served at once in the concurrency check.
    pub clients: usize,
    /// Print one JSON object instead of the report card.
    pub json: bool,
}

impl Default for CheckArgs {
    fn default() -> CheckArgs {
        CheckArgs {
            target: Target::default(),
            zone: DEFAULT_ZONE.into(),
            timeout: DEFAULT_TIMEOUT,
            tolerance: DEFAULT_TOLERANCE,
            clients: DEFAULT_CLIENTS,
            json: false,
        }
    }
}

/// Whether the sheet asks for a check or only TCP does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// What the lab sheet asks.
    Required,
    /// What any line server on TCP should do.
    Recommended,
}

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Met.
    Pass,
    /// Met, in a way a client could trip over.
    Warn,
    /// Not met, or could not be run.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`, as the JSON object says it.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Short, stable name (`time-reply`), for scripts.
    pub name: &'static str,
    /// Required or recommended.
    pub level: Level,
    /// Pass, warn or fail.
    pub status: Status,
    /// What was checked, in words.
    pub what: &'static str,
    /// What happened, for anything but a plain pass.
    pub detail: String,
}

/// `jam check`: grades the server, prints the report card (each line as its check ends) or
/// the JSON object, and fails when a required check failed.
pub fn run(args: &CheckArgs) -> Result<(), Error> {
    let zone = Zone::named(&args.zone)?;
    let addr = smol::block_on(async_net::resolve((args.target.host.as_str(), args.target.port)))
        .ok()
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| Error::new(format!("cannot resolve {}", args.target)))?;
    if !args.json {
        outln!(
            "jam check {}: the lab sheet's time server (1.a to 1.d), replies expected in {}",
            args.target,
            zone.name
        )?;
    }
    let mut level = None;
    let mut printed = Ok(());
    let report = grade(addr, &zone, args, |o| {
        if args.json || printed.is_err() {
            return;
        }
        if level != Some(o.level) {
            level = Some(o.level);
            let heading = match o.level {
                Level::Required => "\nrequired: what the sheet asks",
                Level::Recommended => "\nrecommended: what TCP asks, where the sheet is silent",
            };
            printed = outln!("{heading}");
        }
        if printed.is_ok() {
            printed = crate::print(&card_line(o));
        }
    });
    printed?;
    if args.json {
        outln!("{}", report.json(&args.target))?;
    } else {
        outln!("\n{}", report.summary())?;
    }
    if report.meets_the_sheet() {
        Ok(())
    } else {
        Err(Error::new("the server does not do what the sheet asks").silent())
    }
}

/// Runs every check against `addr`, calling `each` with every outcome as it is known.
pub fn grade(addr: SocketAddr, zone: &Zone, args: &CheckArgs, mut each: impl FnMut(&Outcome)) -> Report {
    // Through a trait object: the grader is compiled once, not once per caller's closure (each
    // copy of it is some 40 KB of the binary).
    let each: &mut dyn FnMut(&Outcome) = &mut each;
    smol::block_on(
        Grader { addr, zone, args, report: Report::default(), each, reference: None, first: None }.all(),
    )
}

struct Grader<'a, F> {
    addr: SocketAddr,
    zone: &'a Zone,
    args: &'a CheckArgs,
    report: Report,
    each: F,
    /// The reply to a plain `TIME`, which the framing checks compare theirs with.
    reference: Option<Vec<u8>>,
    /// The check's first connection, opened by the connect check and kept for the first
    /// request, so that it is asked alone.
    first: Option<Peer>,
}

/// What a check found: its status and the detail.
type Found = (Status, String);

fn pass() -> Found {
    (Status::Pass, String::new())
}

fn fail(detail: impl Into<String>) -> Found {
    (Status::Fail, detail.into())
}

impl<F: FnMut(&Outcome)> Grader<'_, F> {
    fn record(&mut self, name: &'static str, (status, detail): Found) {
        let &(name, level, what) = CHECKS.iter().find(|(n, ..)| *n == name).expect("a check in CHECKS");
        let o = Outcome { name, level, status, what, detail };
        (self.each)(&o);
        self.report.outcomes.push(o);
    }

    async fn all(mut self) -> Report {
        let accepts = match Peer::open(self.addr, self.args.timeout).await {
            Ok(first) => {
                self.first = Some(first);
                pass()
            }
            Err(e) => fail(e),
        };
        let up = accepts.0 == Status::Pass;
        self.record("connect", accepts);
        if !up {
            for (name, ..) in &CHECKS[1..] {
                self.record(name, fail("not run: nothing accepts connections (see connect)"));
            }
            return self.report;
        }
        let (exact, current) = self.run(Self::time_reply).await;
        self.record("time-reply", exact);
        self.record("time-current", current);
        let found = self.run(Self::many_requests).await;
        self.record("many-requests", found);
        let found = self.run(Self::quit_closes).await;
        self.record("quit-closes", found);
        let found = self.run(Self::second_client).await;
        self.record("second-client", found);
        let found = self.run(Self::many_clients).await;
        self.record("many-clients", found);
        let found = self.run(Self::split_request).await;
        self.record("split-request", found);
        let found = self.run(Self::joined_requests).await;
        self.record("joined-requests", found);
        let found = self.run(Self::half_close).await;
        self.record("half-close", found);
        let found = self.run(Self::unknown_request).await;
        self.record("unknown-request", found);
        let found = self.run(Self::bare_lf).await;
        self.record("bare-lf", found);
        let found = self.run(Self::long_line).await;
        self.record("long-line", found);
        let found = self.run(Self::never_reads).await;
        self.record("never-reads", found);
        let found = self.run(Self::idle_crowd).await;
        self.record("idle-crowd", found);
        self.report
    }

    /// Runs one check; a check that cannot connect says that the server stopped accepting.
    async fn run<'s, T: NotRun, Fut: Future<Output = Result<T, Broke>>>(
        &'s mut self,
        check: impl FnOnce(&'s mut Self) -> Fut,
    ) -> T {
        let last = self.report.outcomes.last().map_or("", |o| o.name);
        let last =
            format!("not run: the server no longer accepts connections; it did before the {last} check");
        match check(self).await {
            Ok(found) => found,
            Err(Broke::Connect(e)) => T::not_run(format!("{last} ({e})")),
        }
    }

    async fn connect(&self) -> Result<Peer, Broke> {
        Peer::open(self.addr, self.args.timeout).await.map_err(Broke::Connect)
    }
}

/// Every check's name and level, in the order they run.
pub fn checks() -> impl Iterator<Item = (&'static str, Level)> {
    CHECKS.iter().map(|&(name, level, _)| (name, level))
}

/// Every check, in the order they run: name, level, what is checked.
const CHECKS: [(&str, Level, &str); 15] = [
    ("connect", Level::Required, "accepts TCP connections on the port"),
    ("time-reply", Level::Required, "TIME CR LF gets exactly JAM hh:mm:ss CR LF"),
    ("time-current", Level::Required, "the time is the current time in the zone asked for"),
    ("many-requests", Level::Required, "several requests on one connection are each answered"),
    ("quit-closes", Level::Required, "QUIT CR LF ends the session: the server closes"),
    ("second-client", Level::Required, "a second client is served while a first is connected and idle"),
    ("many-clients", Level::Required, "clients connected at once are each served, also all at once"),
    ("split-request", Level::Recommended, "a request split over segments, byte by byte, gets one reply"),
    ("joined-requests", Level::Recommended, "two requests in one segment get two replies"),
    ("half-close", Level::Recommended, "a client that half-closes after its request (nc -N) gets the reply"),
    ("unknown-request", Level::Recommended, "an unknown request gets one line, and TIME still works"),
    ("bare-lf", Level::Recommended, "a line ending in a bare LF gets an answer, not silence"),
    ("long-line", Level::Recommended, "an over-long line is cut off, and others are still served"),
    ("never-reads", Level::Recommended, "a client that never reads does not stall others"),
    ("idle-crowd", Level::Recommended, "many connections left idle do not keep a new client out"),
];

/// Why a check could not run.
enum Broke {
    /// The server no longer accepts connections.
    Connect(String),
}

/// A result a check returns, which can also say that it was not run.
trait NotRun {
    fn not_run(why: String) -> Self;
}

impl NotRun for Found {
    fn not_run(why: String) -> Found {
        fail(why)
    }
}

impl NotRun for (Found, Found) {
    fn not_run(why: String) -> (Found, Found) {
        (fail(why.clone()), fail(why))
    }
}

// The command line: arguments, help and parser.

/// `jam check --help`.
pub fn help() -> String {
    let d = CheckArgs::default();
    format!(
        "jam check: grade a time server, jam or any other, against the lab sheet

Usage: jam check [OPTIONS] [HOST[:PORT]]

Runs a series of checks against the server and prints a report card: PASS, FAIL or WARN per
check, and for anything but a pass what was sent and the exact bytes that came back. Required
checks are what the sheet asks (1.a to 1.d): connections, TIME answered with exactly
JAM hh:mm:ss CR LF at the current time, several requests per connection, QUIT, concurrent
clients. Recommended checks are what TCP asks where the sheet is silent: split and joined
requests, half-close, unknown and bare-LF lines, an over-long line, a client that never reads,
many idle connections. Exits 0 when every required check is met, 1 when one is not.

Arguments:
  [HOST[:PORT]]           server to grade [default: {target}]

Options:
      --tz ZONE           the zone the replies should be in: an IANA name or a POSIX rule
                          [env: TZ] [default: {zone}]
  -t, --timeout DUR       how long each step waits: a connection, a reply, a close
                          [default: {timeout}]
      --tolerance DUR     how far the server's time may be from this machine's [default: {tolerance}]
  -c, --clients N         clients connected at once in the concurrency check [default: {clients}]
      --json              print one JSON object instead of the report card
  -h, --help              print this help

At most {idle} connections at once and 1 MiB sent per check: gentle enough for a student's server.
",
        target = d.target,
        zone = d.zone,
        timeout = show(d.timeout),
        tolerance = show(d.tolerance),
        clients = d.clients,
        idle = crate::tools::check::IDLE_CONNECTIONS + 1,
    )
}

/// Parses `jam check`'s arguments.
pub fn parse(p: &mut lexopt::Parser, env: Env) -> Result<Parsed<CheckArgs>, Error> {
    let zone = env("TZ").filter(|z| !z.is_empty()).unwrap_or_else(|| DEFAULT_ZONE.into());
    let mut args = CheckArgs { zone, ..CheckArgs::default() };
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Long("tz") => args.zone = text(p)?,
            Short('t') | Long("timeout") => args.timeout = value(p, "--timeout", settings::duration)?,
            Long("tolerance") => args.tolerance = value(p, "--tolerance", settings::duration_or_zero)?,
            Short('c') | Long("clients") => args.clients = value(p, "--clients", settings::count)?,
            Long("json") => args.json = true,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) => positional(&mut server, v, Target::parse)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Parsed::Run(args))
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::sheet::{find_time, format_fault, judge_time};
    use super::tcp::shape;
    use super::*;
    use crate::json_string;
    use crate::server::protocol::WallTime;

    fn at(h: u8, m: u8, s: u8) -> WallTime {
        WallTime { hour: h, minute: m, second: s }
    }

    /// 2026-12-02 16:37:26 UTC.
    fn noon() -> Timestamp {
        "2026-12-02T16:37:26Z".parse().unwrap()
    }

    #[test]
    fn the_time_is_judged_round_the_clock() {
        let utc = Zone::utc();
        let tol = Duration::from_secs(5);
        assert_eq!(judge_time(at(16, 37, 26), noon(), &utc, tol).0, Status::Pass);
        assert_eq!(judge_time(at(16, 37, 30), noon(), &utc, tol).0, Status::Pass);
        assert_eq!(judge_time(at(16, 37, 40), noon(), &utc, tol).0, Status::Fail);
        // Just past midnight against just before it is seconds apart, not a day.
        let late: Timestamp = "2026-12-02T23:59:58Z".parse().unwrap();
        assert_eq!(judge_time(at(0, 0, 1), late, &utc, tol).0, Status::Pass);
    }

    #[test]
    fn a_wrong_zone_is_named_by_its_offset() {
        let utc = Zone::utc();
        let tol = Duration::from_secs(5);
        let (status, detail) = judge_time(at(23, 37, 27), noon(), &utc, tol);
        assert_eq!(status, Status::Fail);
        assert!(detail.contains("7 h ahead, as if the server's zone were UTC+07:00"), "{detail}");
        let jakarta = Zone::named("Asia/Jakarta").unwrap();
        let (_, detail) = judge_time(at(16, 37, 26), noon(), &jakarta, tol);
        assert!(detail.contains("7 h behind, as if the server's zone were UTC+00:00"), "{detail}");
        let (_, detail) = judge_time(at(22, 7, 26), noon(), &utc, tol);
        assert!(detail.contains("5 h 30 min ahead, as if the server's zone were UTC+05:30"), "{detail}");
        let (_, detail) = judge_time(at(16, 40, 0), noon(), &utc, tol);
        assert!(detail.contains("2 min 34 s off, more than the 5s allowed"), "{detail}");
    }

    #[test]
    fn a_time_is_found_anywhere_in_a_reply() {
        assert_eq!(find_time(b"JAM 09 05 25 16:37:26\r\n"), Some(at(16, 37, 26)));
        assert_eq!(find_time(b"TIME 01:02:03"), Some(at(1, 2, 3)));
        assert_eq!(find_time(b"JAM 25:00:00"), None);
    }

    #[test]
    fn reply_faults_are_named() {
        assert!(format_fault(b"JAM 09 05 25 16:37:26\r\n").contains("no date"));
        assert!(format_fault(b"TIME 16:37:26\r\n").contains("begin with \"JAM \""));
        assert!(format_fault(b"JAM 4:37:26\r\n").contains("two digits"));
    }

    #[test]
    fn replies_at_different_times_have_one_shape() {
        assert_eq!(shape(b"JAM 16:37:26\r\n"), shape(b"JAM 01:02:03\r\n"));
        assert_ne!(shape(b"JAM 16:37:26\r\n"), shape(b"JAM 16:37:26\n"));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn the_zone_is_the_flag_then_tz_then_utc() {
        let parse_with = |args: &[&str], tz: Option<&str>| {
            let mut p = lexopt::Parser::from_args(args.iter().map(std::ffi::OsString::from));
            let env = |name: &str| (name == "TZ").then(|| tz.map(String::from)).flatten();
            match parse(&mut p, &env).unwrap() {
                Parsed::Run(a) => a.zone,
                Parsed::Help => panic!("help"),
            }
        };
        assert_eq!(parse_with(&[], None), "UTC");
        assert_eq!(parse_with(&[], Some("")), "UTC");
        assert_eq!(parse_with(&[], Some("Asia/Jakarta")), "Asia/Jakarta");
        assert_eq!(parse_with(&["--tz", "UTC"], Some("Asia/Jakarta")), "UTC");
    }
}
