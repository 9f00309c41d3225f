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

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use futures_lite::future;
use jiff::Timestamp;
use lexopt::prelude::*;
use smol::{Async, Timer};

use crate::server::clock::Zone;
use crate::server::protocol::{self, WallTime, escape};
use crate::settings::{self, Parsed, positional, show, text, usage, value};
use crate::tools::client::Target;
use crate::{Error, outln};

/// The zone replies are expected in unless `--tz` says otherwise: the sheet names none, and a
/// grader on another machine should not depend on that machine's zone.
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
    fn word(self) -> &'static str {
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

/// Every check's result, in the order they ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    fn count(&self, level: Option<Level>, status: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == status && level.is_none_or(|l| o.level == l)).count()
    }

    /// The outcome of the check called `name`.
    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }

    /// Whether every required check passed (or passed with a warning).
    pub fn meets_the_sheet(&self) -> bool {
        self.count(Some(Level::Required), Status::Fail) == 0
    }

    /// The last line of the report card.
    pub fn summary(&self) -> String {
        let of = |level| {
            let all = self.outcomes.iter().filter(|o| o.level == level).count();
            all - self.count(Some(level), Status::Fail)
        };
        let all = |level| self.outcomes.iter().filter(|o| o.level == level).count();
        let warned = self.count(None, Status::Warn);
        format!(
            "{} of {} required and {} of {} recommended checks met{}: {}",
            of(Level::Required),
            all(Level::Required),
            of(Level::Recommended),
            all(Level::Recommended),
            match warned {
                0 => String::new(),
                n => format!(" ({n} with a warning)"),
            },
            if self.meets_the_sheet() {
                "the server does what the sheet asks"
            } else {
                "the server does not do what the sheet asks"
            }
        )
    }

    /// The report as one JSON object.
    pub fn json(&self, target: &Target) -> String {
        let checks: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| {
                format!(
                    "{{\"name\":\"{}\",\"level\":\"{}\",\"status\":\"{}\",\"what\":{},\"detail\":{}}}",
                    o.name,
                    match o.level {
                        Level::Required => "required",
                        Level::Recommended => "recommended",
                    },
                    o.status.word(),
                    json_string(o.what),
                    json_string(&o.detail),
                )
            })
            .collect();
        format!(
            "{{\"target\":{},\"checks\":[{}],\"passed\":{},\"warned\":{},\"failed\":{},\"meets_the_sheet\":{}}}",
            json_string(&target.to_string()),
            checks.join(","),
            self.count(None, Status::Pass),
            self.count(None, Status::Warn),
            self.count(None, Status::Fail),
            self.meets_the_sheet(),
        )
    }
}

/// One report-card line (and its detail lines) for `o`.
pub fn card_line(o: &Outcome) -> String {
    let mut s = format!("  {:<4}  {:<16} {}\n", o.status.word().to_ascii_uppercase(), o.name, o.what);
    if o.status != Status::Pass || !o.detail.is_empty() {
        for line in o.detail.lines() {
            s.push_str(&format!("        {:<16} {line}\n", ""));
        }
    }
    s
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
pub fn grade(addr: SocketAddr, zone: &Zone, args: &CheckArgs, each: impl FnMut(&Outcome)) -> Report {
    smol::block_on(Grader { addr, zone, args, report: Report::default(), each, reference: None }.all())
}

struct Grader<'a, F> {
    addr: SocketAddr,
    zone: &'a Zone,
    args: &'a CheckArgs,
    report: Report,
    each: F,
    /// The reply to a plain `TIME`, which the framing checks compare theirs with.
    reference: Option<Vec<u8>>,
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
            Ok(_) => pass(),
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

    async fn time_reply(&mut self) -> Result<(Found, Found), Broke> {
        let mut peer = self.connect().await?;
        peer.send(b"TIME\r\n").await;
        let read = peer.line().await;
        let Heard::Line(line) = read else {
            let why = read.describe(b"TIME\r\n", self.args.timeout);
            return Ok((fail(why), fail("not run: no reply to read a time from (see time-reply)")));
        };
        self.reference = Some(line.clone());
        let exact = match line.strip_suffix(b"\r\n") {
            Some(body) if protocol::parse_time_reply(body).is_some() => pass(),
            Some(_) => {
                fail(format!("sent \"TIME\\r\\n\"; got \"{}\": {}", shown(&line), format_fault(&line)))
            }
            None => fail(format!(
                "sent \"TIME\\r\\n\"; got \"{}\": the line ends in a bare LF, not CR LF",
                shown(&line)
            )),
        };
        let current = match find_time(&line) {
            // Not `Timestamp::now()`, which can panic and so links jiff's error messages.
            Some(t) => judge_time(t, now(), self.zone, self.args.tolerance),
            None => fail(format!("no hh:mm:ss in the reply \"{}\"", shown(&line))),
        };
        Ok((exact, current))
    }

    async fn many_requests(&mut self) -> Result<Found, Broke> {
        const N: usize = 5;
        let mut peer = self.connect().await?;
        for i in 0..N {
            peer.send(b"TIME\r\n").await;
            match peer.line().await {
                Heard::Line(_) => {}
                other => {
                    let why = other.describe(b"TIME\r\n", self.args.timeout);
                    return Ok(fail(format!("request {} of {N} on one connection: {why}", i + 1)));
                }
            }
        }
        Ok(pass())
    }

    async fn quit_closes(&mut self) -> Result<Found, Broke> {
        let mut peer = self.connect().await?;
        peer.send(b"QUIT\r\n").await;
        Ok(match peer.until_close().await {
            Closed::Fin(after) if after.is_empty() => pass(),
            Closed::Fin(after) => (
                Status::Warn,
                format!("sent \"QUIT\\r\\n\"; the server closed, but sent \"{}\" first", shown(&after)),
            ),
            Closed::Reset => (
                Status::Warn,
                "sent \"QUIT\\r\\n\"; the server ended the connection with a reset, not a FIN: \
                 a reset can destroy replies still in flight"
                    .into(),
            ),
            Closed::Open(got) => fail(format!(
                "sent \"QUIT\\r\\n\"; the connection was still open {} later{}",
                show(self.args.timeout),
                got_suffix(&got)
            )),
        })
    }

    async fn second_client(&mut self) -> Result<Found, Broke> {
        let _first = self.connect().await?;
        let mut second = self.connect().await?;
        second.send(b"TIME\r\n").await;
        Ok(match second.line().await {
            Heard::Line(_) => pass(),
            other => fail(format!(
                "a second client, while a first one was connected and idle: {}{}",
                other.describe(b"TIME\r\n", self.args.timeout),
                // A server that answered a lone client and not this one serves one at a time.
                if matches!(other, Heard::Silent(_)) && self.reference.is_some() {
                    ": the server serves one client at a time"
                } else {
                    ""
                }
            )),
        })
    }

    async fn many_clients(&mut self) -> Result<Found, Broke> {
        let n = self.args.clients;
        let mut peers = match self.ramp(n).await? {
            Ok(peers) => peers,
            Err(why) => return Ok(fail(why)),
        };
        for peer in &mut peers {
            peer.send(b"TIME\r\n").await;
        }
        // One deadline for all: the replies arrive in their sockets while another is awaited.
        let deadline = Instant::now() + self.args.timeout;
        let mut reads = Vec::with_capacity(n);
        for peer in &mut peers {
            reads.push(peer.line_by(deadline).await);
        }
        let served = reads.iter().filter(|r| matches!(r, Heard::Line(_))).count();
        Ok(match reads.iter().find(|r| !matches!(r, Heard::Line(_))) {
            None => pass(),
            Some(first_bad) => fail(format!(
                "{n} clients connected, then each sent TIME at once: {served} answered; the first not answered: {}",
                first_bad.describe(b"TIME\r\n", self.args.timeout)
            )),
        })
    }

    /// Connects `n` clients one after another, each asking for the time once while those
    /// before it stay connected, and returns them all, still connected; or says which was not
    /// served. Each is served before the next connects, so that a small listen backlog (the
    /// sheet's `listen(1)`) is not mistaken for a server that cannot serve many clients.
    async fn ramp(&self, n: usize) -> Result<Result<Vec<Peer>, String>, Broke> {
        let mut peers = Vec::with_capacity(n);
        for i in 0..n {
            let mut peer = self.connect().await?;
            peer.send(b"TIME\r\n").await;
            match peer.line().await {
                Heard::Line(_) => peers.push(peer),
                other => {
                    return Ok(Err(format!(
                        "client {} of {n}, with {i} other(s) connected: {}",
                        i + 1,
                        other.describe(b"TIME\r\n", self.args.timeout)
                    )));
                }
            }
        }
        Ok(Ok(peers))
    }

    /// The framing checks: `sent` on one connection, in `pieces` writes, must get `replies` lines
    /// like the reply to a plain TIME, and nothing more.
    async fn framing(&mut self, pieces: &[&[u8]], replies: usize, half_close: bool) -> Result<Found, Broke> {
        let Some(reference) = self.reference.clone() else {
            return Ok(fail("not run: no reply to a plain TIME to compare with (see time-reply)"));
        };
        let sent: Vec<u8> = pieces.concat();
        // How it was sent, for the report: `"TIME\r\n" in 6 segments`.
        let how = match pieces.len() {
            1 => format!("\"{}\"", shown(&sent)),
            n => format!("\"{}\" in {n} segments", shown(&sent)),
        };
        let mut peer = self.connect().await?;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                Timer::after(SPLIT_PAUSE).await;
            }
            peer.send(piece).await;
        }
        if half_close {
            peer.half_close();
        }
        let mut lines = Vec::new();
        for _ in 0..replies {
            match peer.line().await {
                Heard::Line(line) => lines.push(line),
                other => {
                    let tail = other.tail(self.args.timeout);
                    return Ok(fail(match lines.len() {
                        0 => format!("sent {how}; {tail}"),
                        n => format!(
                            "sent {how}; got \"{}\" ({n} of {replies} replies), then {tail}",
                            shown(&lines.concat())
                        ),
                    }));
                }
            }
        }
        let extra = peer.within(SETTLE).await;
        let all: Vec<u8> = lines.concat();
        let unlike = lines.iter().find(|l| shape(l) != shape(&reference));
        Ok(match unlike {
            Some(_) => fail(format!(
                "sent {how}; got \"{}\", where a plain TIME got \"{}\"",
                shown(&[&all[..], &extra[..]].concat()),
                shown(&reference)
            )),
            None if !extra.is_empty() => fail(format!(
                "sent {how}; got \"{}\": {} bytes more than the {replies} line(s) expected",
                shown(&[&all[..], &extra[..]].concat()),
                extra.len()
            )),
            None => pass(),
        })
    }

    async fn split_request(&mut self) -> Result<Found, Broke> {
        self.framing(&[b"T", b"I", b"M", b"E", b"\r", b"\n"], 1, false).await
    }

    async fn joined_requests(&mut self) -> Result<Found, Broke> {
        self.framing(&[b"TIME\r\nTIME\r\n"], 2, false).await
    }

    async fn half_close(&mut self) -> Result<Found, Broke> {
        self.framing(&[b"TIME\r\n"], 1, true).await
    }

    async fn unknown_request(&mut self) -> Result<Found, Broke> {
        let mut peer = self.connect().await?;
        peer.send(b"HELLO\r\n").await;
        let answer = match peer.line().await {
            Heard::Line(line) => line,
            other => return Ok(fail(other.describe(b"HELLO\r\n", self.args.timeout))),
        };
        let extra = peer.within(SETTLE).await;
        if !extra.is_empty() {
            return Ok(fail(format!(
                "sent \"HELLO\\r\\n\"; got \"{}\": more than one line",
                shown(&[&answer[..], &extra[..]].concat())
            )));
        }
        peer.send(b"TIME\r\n").await;
        Ok(match peer.line().await {
            Heard::Line(_) => pass(),
            other => fail(format!(
                "sent \"HELLO\\r\\n\", got \"{}\"; then {}",
                shown(&answer),
                other.describe(b"TIME\r\n", self.args.timeout)
            )),
        })
    }

    async fn bare_lf(&mut self) -> Result<Found, Broke> {
        let mut peer = self.connect().await?;
        peer.send(b"TIME\n").await;
        Ok(match peer.line().await {
            Heard::Line(_) => pass(),
            Heard::Silent(got) if !got.is_empty() => pass(),
            other => fail(other.describe(b"TIME\n", self.args.timeout)),
        })
    }

    async fn long_line(&mut self) -> Result<Found, Broke> {
        let mut peer = self.connect().await?;
        let line = vec![b'A'; LONG_LINE];
        let took = peer.send_within(&line, self.args.timeout).await;
        let cut = match peer.until_close().await {
            Closed::Fin(_) | Closed::Reset => None,
            Closed::Open(got) => Some(format!(
                "sent {} bytes with no line end (the server took {took}); the connection was still open {} later{}",
                LONG_LINE,
                show(self.args.timeout),
                got_suffix(&got)
            )),
        };
        drop(peer);
        let mut other = self.connect().await?;
        let others = self.unserved(&mut other).await.map(|why| format!("then another client: {why}"));
        Ok(match (cut, others) {
            (None, None) => pass(),
            (Some(a), None) => fail(format!("{a}: the line was not cut off")),
            (None, Some(b)) => fail(b),
            (Some(a), Some(b)) => fail(format!("{a}\n{b}")),
        })
    }

    async fn never_reads(&mut self) -> Result<Found, Broke> {
        let mut hog = self.connect().await?;
        let sent = hog.flood(b"TIME\r\n", NEVER_READS_BYTES, SETTLE).await;
        let mut other = self.connect().await?;
        Ok(match self.unserved(&mut other).await {
            None => pass(),
            Some(why) => fail(format!(
                "a client sent {sent} bytes of TIME requests and read nothing; then another client: {why}"
            )),
        })
    }

    /// Asks for the time on `peer`: `None` when a line comes back, else what happened instead.
    async fn unserved(&self, peer: &mut Peer) -> Option<String> {
        peer.send(b"TIME\r\n").await;
        match peer.line().await {
            Heard::Line(_) => None,
            read => Some(read.describe(b"TIME\r\n", self.args.timeout)),
        }
    }

    async fn idle_crowd(&mut self) -> Result<Found, Broke> {
        let _idle = match self.ramp(IDLE_CONNECTIONS).await? {
            Ok(peers) => peers,
            Err(why) => return Ok(fail(format!("while opening {IDLE_CONNECTIONS} connections: {why}"))),
        };
        let mut other = self.connect().await?;
        Ok(match self.unserved(&mut other).await {
            None => pass(),
            Some(why) => fail(format!("with {IDLE_CONNECTIONS} idle connections open, a new client: {why}")),
        })
    }

    async fn connect(&self) -> Result<Peer, Broke> {
        Peer::open(self.addr, self.args.timeout).await.map_err(Broke::Connect)
    }
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

/// Up to [`SHOWN`] bytes of `bytes`, escaped, with the rest counted.
fn shown(bytes: &[u8]) -> String {
    if bytes.len() <= SHOWN {
        escape(bytes)
    } else {
        format!("{}...[{} bytes]", escape(&bytes[..SHOWN]), bytes.len())
    }
}

fn got_suffix(got: &[u8]) -> String {
    match got.len() {
        0 => String::new(),
        n if n >= MAX_KEPT => {
            format!(", having sent {} KiB or more: \"{}...\"", MAX_KEPT / 1024, escape(&got[..SHOWN / 4]))
        }
        _ => format!(", having sent \"{}\"", shown(got)),
    }
}

/// What is wrong with a reply line that ends in CR LF but is not `JAM hh:mm:ss`.
fn format_fault(line: &[u8]) -> &'static str {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    if !body.starts_with(b"JAM ") {
        "the reply must begin with \"JAM \""
    } else if find_time(body).is_some() && body.len() > 12 {
        "nothing but hh:mm:ss may follow \"JAM \" (no date)"
    } else {
        "the time must be hh:mm:ss, two digits each, 24-hour"
    }
}

/// The first `hh:mm:ss` in `bytes`.
fn find_time(bytes: &[u8]) -> Option<WallTime> {
    bytes.windows(8).find_map(|w| {
        let reply = [b"JAM ", w].concat();
        protocol::parse_time_reply(&reply)
    })
}

/// The reply with its digits made alike: replies to TIME at different times compare equal.
fn shape(line: &[u8]) -> Vec<u8> {
    line.iter().map(|&b| if b.is_ascii_digit() { b'9' } else { b }).collect()
}

/// This machine's time now.
fn now() -> Timestamp {
    Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Whether `reply`, a time of day, is `now` in `zone` within `tolerance`; if not, whether it is
/// a whole number of quarter hours off, which is what a wrong zone looks like.
fn judge_time(reply: WallTime, now: Timestamp, zone: &Zone, tolerance: Duration) -> Found {
    let offset = zone.tz.to_offset(now).seconds();
    let expected = (now.as_second() + i64::from(offset)).rem_euclid(86_400);
    let got = i64::from(reply.hour) * 3600 + i64::from(reply.minute) * 60 + i64::from(reply.second);
    // The difference as the shortest way round the clock: -12 h to +12 h.
    let diff = (got - expected + 43_200).rem_euclid(86_400) - 43_200;
    let tol = tolerance.as_secs() as i64;
    if diff.abs() <= tol {
        return pass();
    }
    let shown_now = WallTime::from_seconds_of_day(expected as u32);
    // To the nearest quarter hour, halves away from zero.
    let quarters = (diff + diff.signum() * 450) / 900;
    let said = format!(
        "the reply says {:02}:{:02}:{:02}; it is {:02}:{:02}:{:02} in {}",
        reply.hour, reply.minute, reply.second, shown_now.hour, shown_now.minute, shown_now.second, zone.name
    );
    if quarters != 0 && (diff - quarters * 900).abs() <= tol {
        let server = i64::from(offset) + quarters * 900;
        fail(format!(
            "{said}: {} {}, as if the server's zone were UTC{} (give --tz if that is the zone the lab uses)",
            hours_minutes(quarters.abs() * 900),
            if quarters > 0 { "ahead" } else { "behind" },
            utc_offset(server)
        ))
    } else {
        fail(format!("{said}: {} off, more than the {} allowed", hours_minutes(diff.abs()), show(tolerance)))
    }
}

fn hours_minutes(secs: i64) -> String {
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, 0) => format!("{h} h {m} min"),
        (h, m, s) => format!("{h} h {m} min {s} s"),
    }
}

/// `+07:00`, `-03:30`, `+00:00`.
fn utc_offset(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", secs.abs() / 3600, secs.abs() % 3600 / 60)
}

/// What reading for a reply found.
enum Heard {
    /// A line, its LF included.
    Line(Vec<u8>),
    /// Nothing more within the time limit; what had come before.
    Silent(Vec<u8>),
    /// The server closed; what had come before.
    Closed(Vec<u8>),
    /// The connection was reset; what had come before.
    Reset(Vec<u8>),
    /// Another error.
    Failed(String),
}

impl Heard {
    /// `sent "…"; no reply within 2s`, and the like.
    fn describe(&self, sent: &[u8], timeout: Duration) -> String {
        format!("sent \"{}\"; {}", shown(sent), self.tail(timeout))
    }

    /// What happened, after what was sent: `no reply within 2s`, and the like.
    fn tail(&self, timeout: Duration) -> String {
        match self {
            Heard::Line(line) => format!("got \"{}\"", shown(line)),
            Heard::Silent(got) if got.is_empty() => format!("no reply within {}", show(timeout)),
            Heard::Silent(got) => format!("got \"{}\" and no line end within {}", shown(got), show(timeout)),
            Heard::Closed(got) => format!("the server closed the connection{}", got_suffix(got)),
            Heard::Reset(got) => format!("the connection was reset{}", got_suffix(got)),
            Heard::Failed(e) => e.clone(),
        }
    }
}

/// How waiting for the server to close ended.
enum Closed {
    /// An orderly close, after these bytes.
    Fin(Vec<u8>),
    /// A reset.
    Reset,
    /// Still open at the time limit, after these bytes.
    Open(Vec<u8>),
}

/// One connection to the server under test, with the time limit for each step.
struct Peer {
    stream: Async<TcpStream>,
    timeout: Duration,
    /// Bytes read and not yet returned as a line.
    pending: Vec<u8>,
}

impl Peer {
    async fn open(addr: SocketAddr, timeout: Duration) -> Result<Peer, String> {
        let connect = async {
            Async::<TcpStream>::connect(addr).await.map_err(|e| match e.kind() {
                io::ErrorKind::ConnectionRefused => format!("connection to {addr} refused"),
                _ => format!("cannot connect to {addr}: {e}"),
            })
        };
        let stream = with_limit(timeout, connect, || {
            Err(format!(
                "no answer to a connection within {} (the server's listen queue is full?)",
                show(timeout)
            ))
        })
        .await?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok(Peer { stream, timeout, pending: Vec::new() })
    }

    /// Sends `bytes`; a server that has gone away shows in what is read next.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.send_within(bytes, self.timeout).await;
    }

    /// Sends as much of `bytes` as the server takes within `limit`; says how much that was.
    async fn send_within(&mut self, bytes: &[u8], limit: Duration) -> String {
        let mut written = 0;
        let deadline = Instant::now() + limit;
        while written < bytes.len() {
            let step = self.stream.write_with(|mut s| s.write(&bytes[written..]));
            match with_limit(deadline.saturating_duration_since(Instant::now()), step, || {
                Err(io::ErrorKind::TimedOut.into())
            })
            .await
            {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        if written == bytes.len() { "all".into() } else { format!("{written} of them") }
    }

    /// Sends `request` again and again without reading, until `max` bytes or until the server
    /// has taken nothing for `stall`; returns the bytes sent.
    async fn flood(&mut self, request: &[u8], max: usize, stall: Duration) -> usize {
        let burst = request.repeat(8 * 1024 / request.len());
        let mut sent = 0;
        while sent < max {
            let chunk = &burst[..burst.len().min(max - sent)];
            let step = self.stream.write_with(|mut s| s.write(chunk));
            match with_limit(stall, step, || Err(io::ErrorKind::TimedOut.into())).await {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    }

    fn half_close(&self) {
        let _ = self.stream.get_ref().shutdown(Direction::Write);
    }

    /// Reads until a whole line has come, within the time limit.
    async fn line(&mut self) -> Heard {
        self.line_by(Instant::now() + self.timeout).await
    }

    /// Reads until a whole line has come, or `deadline`.
    async fn line_by(&mut self, deadline: Instant) -> Heard {
        loop {
            if let Some(lf) = self.pending.iter().position(|&b| b == b'\n') {
                let rest = self.pending.split_off(lf + 1);
                return Heard::Line(std::mem::replace(&mut self.pending, rest));
            }
            if self.pending.len() > MAX_KEPT {
                return Heard::Silent(std::mem::take(&mut self.pending));
            }
            match self.read_some(deadline).await {
                Ok(Some(0)) => return Heard::Closed(std::mem::take(&mut self.pending)),
                Ok(Some(_)) => {}
                Ok(None) => return Heard::Silent(std::mem::take(&mut self.pending)),
                Err(e) if is_reset(&e) => return Heard::Reset(std::mem::take(&mut self.pending)),
                Err(e) => return Heard::Failed(format!("reading failed: {e}")),
            }
        }
    }

    /// Whatever arrives within `wait`.
    async fn within(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        while let Ok(Some(n)) = self.read_some(deadline).await {
            if n == 0 || self.pending.len() > MAX_KEPT {
                break;
            }
        }
        std::mem::take(&mut self.pending)
    }

    /// Reads until the server closes, within the time limit.
    async fn until_close(&mut self) -> Closed {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.read_some(deadline).await {
                Ok(Some(0)) => return Closed::Fin(std::mem::take(&mut self.pending)),
                Ok(Some(_)) => {
                    // Keep the first bytes for the report; drop the rest of a flood.
                    self.pending.truncate(MAX_KEPT);
                }
                Ok(None) => return Closed::Open(std::mem::take(&mut self.pending)),
                Err(_) => return Closed::Reset,
            }
        }
    }

    /// Reads once into `pending`: `Some(n)` bytes (0 at the end), `None` at the deadline.
    async fn read_some(&mut self, deadline: Instant) -> io::Result<Option<usize>> {
        let mut buf = [0u8; 4096];
        let read = async { self.stream.read_with(|mut s| s.read(&mut buf)).await.map(Some) };
        let n = with_limit(deadline.saturating_duration_since(Instant::now()), read, || Ok(None)).await?;
        if let Some(n) = n {
            self.pending.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
    )
}

/// Runs `fut`, or gives `late()` once `limit` has passed.
async fn with_limit<T>(limit: Duration, fut: impl Future<Output = T>, late: impl FnOnce() -> T) -> T {
    future::or(fut, async {
        Timer::after(limit).await;
        late()
    })
    .await
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
                          [default: {zone}]
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
pub fn parse(p: &mut lexopt::Parser) -> Result<Parsed<CheckArgs>, Error> {
    let mut args = CheckArgs::default();
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
    use super::*;

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
}
