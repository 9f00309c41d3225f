//! The checks TCP asks for where the sheet is silent: split, joined and half-closed requests,
//! unknown and bare-LF lines, an over-long line, a client that never reads, an idle crowd.

use smol::Timer;

use crate::settings::show;

use super::*;

impl<F: FnMut(&Outcome)> Grader<'_, F> {
    /// The framing checks: `sent` on one connection, in `pieces` writes, must get `replies` lines
    /// like the reply to a plain TIME, and nothing more.
    pub(super) async fn framing(
        &mut self,
        pieces: &[&[u8]],
        replies: usize,
        half_close: bool,
    ) -> Result<Found, Broke> {
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

    pub(super) async fn split_request(&mut self) -> Result<Found, Broke> {
        self.framing(&[b"T", b"I", b"M", b"E", b"\r", b"\n"], 1, false).await
    }

    pub(super) async fn joined_requests(&mut self) -> Result<Found, Broke> {
        self.framing(&[b"TIME\r\nTIME\r\n"], 2, false).await
    }

    pub(super) async fn half_close(&mut self) -> Result<Found, Broke> {
        self.framing(&[b"TIME\r\n"], 1, true).await
    }

    pub(super) async fn unknown_request(&mut self) -> Result<Found, Broke> {
        let mut peer = self.connect().await?;
        peer.send(b"HELLO\r\n").await;
        let answer = match peer.line().await {
            Heard::Line(line) if line == b"HELLO\r\n" => {
                return Ok(fail(
                    "sent \"HELLO\\r\\n\"; got it back: an echo of the request is not an answer to it",
                ));
            }
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
            heard if heard.served() => pass(),
            other => fail(format!(
                "sent \"HELLO\\r\\n\", got \"{}\"; then {}",
                shown(&answer),
                other.describe(b"TIME\r\n", self.args.timeout)
            )),
        })
    }

    pub(super) async fn bare_lf(&mut self) -> Result<Found, Broke> {
        let mut peer = self.connect().await?;
        peer.send(b"TIME\n").await;
        Ok(match peer.line().await {
            Heard::Line(got) | Heard::Silent(got) if got == b"TIME\n" => {
                fail("sent \"TIME\\n\"; got it back: an echo of the request is not an answer to it")
            }
            Heard::Line(_) => pass(),
            Heard::Silent(got) if !got.is_empty() => pass(),
            other => fail(other.describe(b"TIME\n", self.args.timeout)),
        })
    }

    pub(super) async fn long_line(&mut self) -> Result<Found, Broke> {
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

    pub(super) async fn never_reads(&mut self) -> Result<Found, Broke> {
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
    pub(super) async fn unserved(&self, peer: &mut Peer) -> Option<String> {
        peer.send(b"TIME\r\n").await;
        match peer.line().await {
            heard if heard.served() => None,
            read => Some(read.describe(b"TIME\r\n", self.args.timeout)),
        }
    }

    pub(super) async fn idle_crowd(&mut self) -> Result<Found, Broke> {
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
}

/// The reply with its digits made alike: replies to TIME at different times compare equal.
pub(super) fn shape(line: &[u8]) -> Vec<u8> {
    line.iter().map(|&b| if b.is_ascii_digit() { b'9' } else { b }).collect()
}
