//! The checks the sheet asks for (1.a to 1.d): the reply to TIME, its time, several requests
//! on a connection, QUIT, and concurrent clients; and how a reply's time is judged.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::server::clock::Zone;
use crate::server::protocol::{self, WallTime};
use crate::settings::show;

use super::peer::is_error;
use super::*;

impl<F: FnMut(&Outcome)> Grader<'_, F> {
    pub(super) async fn time_reply(&mut self) -> Result<(Found, Found), Broke> {
        // The first request goes to the first connection of the check, alone: a server that
        // leaves its first client waiting until another comes would hang a student's first nc.
        let mut peer = match self.first.take() {
            Some(first) => first,
            None => self.connect().await?,
        };
        peer.send(b"TIME\r\n").await;
        let read = peer.line().await;
        let Heard::Line(line) = read else {
            let alone = if matches!(read, Heard::Silent(_)) {
                ": the first client, alone, was not answered"
            } else {
                ""
            };
            let why = read.describe(b"TIME\r\n", self.args.timeout) + alone;
            return Ok((fail(why), fail("not run: no reply to read a time from (see time-reply)")));
        };
        if is_error(&line) {
            let why = format!(
                "sent \"TIME\\r\\n\"; got \"{}\": the server turned the checker away, so nothing could be graded \
                 (a limit on connections, or on one address?)",
                shown(&line)
            );
            return Ok((fail(why), fail("not run: the server refused the checker (see time-reply)")));
        }
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

    pub(super) async fn many_requests(&mut self) -> Result<Found, Broke> {
        const N: usize = 5;
        let mut peer = self.connect().await?;
        for i in 0..N {
            peer.send(b"TIME\r\n").await;
            match peer.line().await {
                heard if heard.served() => {}
                other => {
                    let why = other.describe(b"TIME\r\n", self.args.timeout);
                    return Ok(fail(format!("request {} of {N} on one connection: {why}", i + 1)));
                }
            }
        }
        Ok(pass())
    }

    pub(super) async fn quit_closes(&mut self) -> Result<Found, Broke> {
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

    pub(super) async fn second_client(&mut self) -> Result<Found, Broke> {
        let _first = self.connect().await?;
        let mut second = self.connect().await?;
        second.send(b"TIME\r\n").await;
        Ok(match second.line().await {
            heard if heard.served() => pass(),
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

    pub(super) async fn many_clients(&mut self) -> Result<Found, Broke> {
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
        let served = reads.iter().filter(|r| r.served()).count();
        Ok(match reads.iter().find(|r| !r.served()) {
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
    pub(super) async fn ramp(&self, n: usize) -> Result<Result<Vec<Peer>, String>, Broke> {
        let mut peers = Vec::with_capacity(n);
        for i in 0..n {
            let mut peer = self.connect().await?;
            peer.send(b"TIME\r\n").await;
            match peer.line().await {
                heard if heard.served() => peers.push(peer),
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
}

/// What is wrong with a reply line that ends in CR LF but is not `JAM hh:mm:ss`.
pub(super) fn format_fault(line: &[u8]) -> &'static str {
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
pub(super) fn find_time(bytes: &[u8]) -> Option<WallTime> {
    bytes.windows(8).find_map(|w| {
        let reply = [b"JAM ", w].concat();
        protocol::parse_time_reply(&reply)
    })
}

/// This machine's time now.
pub(super) fn now() -> Timestamp {
    Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Whether `reply`, a time of day, is `now` in `zone` within `tolerance`; if not, whether it is
/// a whole number of quarter hours off, which is what a wrong zone looks like.
pub(super) fn judge_time(reply: WallTime, now: Timestamp, zone: &Zone, tolerance: Duration) -> Found {
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

pub(super) fn hours_minutes(secs: i64) -> String {
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, 0) => format!("{h} h {m} min"),
        (h, m, s) => format!("{h} h {m} min {s} s"),
    }
}

/// `+07:00`, `-03:30`, `+00:00`.
pub(super) fn utc_offset(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", secs.abs() / 3600, secs.abs() % 3600 / 60)
}
