//! One connection to the server under test, each step bounded by the timeout, and how what
//! came back is described on the card.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::{Async, Timer};

use crate::server::protocol::escape;
use crate::settings::show;

use super::*;

/// Up to [`SHOWN`] bytes of `bytes`, escaped, with the rest counted.
pub(super) fn shown(bytes: &[u8]) -> String {
    if bytes.len() <= SHOWN {
        escape(bytes)
    } else {
        format!("{}...[{} bytes]", escape(&bytes[..SHOWN]), bytes.len())
    }
}

pub(super) fn got_suffix(got: &[u8]) -> String {
    match got.len() {
        0 => String::new(),
        n if n >= MAX_KEPT => {
            format!(", having sent {} KiB or more: \"{}...\"", MAX_KEPT / 1024, escape(&got[..SHOWN / 4]))
        }
        _ => format!(", having sent \"{}\"", shown(got)),
    }
}

/// What reading for a reply found.
pub(super) enum Heard {
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
    pub(super) fn describe(&self, sent: &[u8], timeout: Duration) -> String {
        format!("sent \"{}\"; {}", shown(sent), self.tail(timeout))
    }

    /// Whether this is an answer to `TIME`: a line with a time of day in it. A refusal such as
    /// `ERROR server busy`, or any other ERROR line, is not a client served.
    pub(super) fn served(&self) -> bool {
        matches!(self, Heard::Line(line) if !is_error(line) && super::sheet::find_time(line).is_some())
    }

    /// What happened, after what was sent: `no reply within 2s`, and the like.
    pub(super) fn tail(&self, timeout: Duration) -> String {
        match self {
            Heard::Line(line) if is_error(line) => {
                format!("got \"{}\": the server turned this client away, or refused the request", shown(line))
            }
            Heard::Line(line) => format!("got \"{}\"", shown(line)),
            Heard::Silent(got) if got.is_empty() => format!("no reply within {}", show(timeout)),
            Heard::Silent(got) => format!("got \"{}\" and no line end within {}", shown(got), show(timeout)),
            Heard::Closed(got) => format!("the server closed the connection{}", got_suffix(got)),
            Heard::Reset(got) => format!("the connection was reset{}", got_suffix(got)),
            Heard::Failed(e) => e.clone(),
        }
    }
}

/// Whether a line is an ERROR line (a refusal, or an error reply).
pub(super) fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"ERROR")
}

/// How waiting for the server to close ended.
pub(super) enum Closed {
    /// An orderly close, after these bytes.
    Fin(Vec<u8>),
    /// A reset.
    Reset,
    /// Still open at the time limit, after these bytes.
    Open(Vec<u8>),
}

/// One connection to the server under test, with the time limit for each step.
pub(super) struct Peer {
    stream: Async<TcpStream>,
    timeout: Duration,
    /// Bytes read and not yet returned as a line.
    pending: Vec<u8>,
}

impl Peer {
    pub(super) async fn open(addr: SocketAddr, timeout: Duration) -> Result<Peer, String> {
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
    pub(super) async fn send(&mut self, bytes: &[u8]) {
        let _ = self.send_within(bytes, self.timeout).await;
    }

    /// Sends as much of `bytes` as the server takes within `limit`; says how much that was.
    pub(super) async fn send_within(&mut self, bytes: &[u8], limit: Duration) -> String {
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
    pub(super) async fn flood(&mut self, request: &[u8], max: usize, stall: Duration) -> usize {
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

    pub(super) fn half_close(&self) {
        let _ = self.stream.get_ref().shutdown(Direction::Write);
    }

    /// Reads until a whole line has come, within the time limit.
    pub(super) async fn line(&mut self) -> Heard {
        self.line_by(Instant::now() + self.timeout).await
    }

    /// Reads until a whole line has come, or `deadline`.
    pub(super) async fn line_by(&mut self, deadline: Instant) -> Heard {
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
    pub(super) async fn within(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        while let Ok(Some(n)) = self.read_some(deadline).await {
            if n == 0 || self.pending.len() > MAX_KEPT {
                break;
            }
        }
        std::mem::take(&mut self.pending)
    }

    /// Reads until the server closes, within the time limit.
    pub(super) async fn until_close(&mut self) -> Closed {
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
    pub(super) async fn read_some(&mut self, deadline: Instant) -> io::Result<Option<usize>> {
        let mut buf = [0u8; 4096];
        let read = async { self.stream.read_with(|mut s| s.read(&mut buf)).await.map(Some) };
        let n = with_limit(deadline.saturating_duration_since(Instant::now()), read, || Ok(None)).await?;
        if let Some(n) = n {
            self.pending.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

pub(super) fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
    )
}

/// Runs `fut`, or gives `late()` once `limit` has passed.
pub(super) async fn with_limit<T>(
    limit: Duration,
    fut: impl Future<Output = T>,
    late: impl FnOnce() -> T,
) -> T {
    future::or(fut, async {
        Timer::after(limit).await;
        late()
    })
    .await
}
