//! The one layer that touches a client's socket.
//!
//! A connection waits until its socket is readable, reads what is there into a per-thread
//! scratch buffer, lets [`protocol::respond`] answer the complete lines, and writes all the
//! replies with one `write`. Only what cannot be handled at once is kept per connection: the
//! start of an unfinished line (at most the line limit) and replies the client has not yet
//! accepted (at most [`OUTPUT_BUDGET`] and one batch). Both are freed when empty, so an idle
//! connection holds no buffer at all.
//!
//! Backpressure: while replies are owed, the connection does not read. A client that never reads
//! stalls only its own connection, and is closed once it has made no progress for the idle
//! timeout.
//!
//! Every wait is bounded: by the idle timeout, by the time to finish a started line, and by the
//! server's shutdown. Each wait hands the reactor its deadline, the earliest that could apply;
//! the reactor keeps the deadlines of all connections (see [`crate::server::reactor`]), and one
//! that moves later as the client makes progress costs nothing on the per-request path.
//!
//! `Connection` stays one type in one file on purpose: its methods are the steps of one loop
//! (wait, read and answer, send, flush, close) over the same few fields, read top to bottom in
//! the order they run. Split by step, a reader would jump between files to follow one request.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::Shutdown as Direction;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::server::clock::Clock;
use crate::server::metrics::Metrics;
use crate::server::protocol::{self, Flow};
use crate::server::reactor::{Interest, Ready, Socket};
use crate::server::shutdown::Shutdown;

/// How long a connection may send nothing (and take no reply) before it is closed. Five minutes
/// leaves a person typing into `nc` all the time they need.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a client may take to finish a line it has started (against slow-loris clients that
/// trickle a byte at a time to keep a connection forever).
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits on what one client can make its connection hold or wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, CR LF included.
    pub max_line: usize,
    /// Closes a connection that sends nothing and takes no reply for this long.
    pub idle_timeout: Duration,
    /// Closes a connection that takes longer than this to finish a line it has started.
    pub line_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: protocol::DEFAULT_MAX_LINE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            line_timeout: DEFAULT_LINE_TIMEOUT,
        }
    }
}

/// Bytes read from a socket at a time. Many pipelined requests fit in one read; the buffer is
/// per thread, not per connection.
pub const READ_CHUNK: usize = 16 * 1024;

/// Replies owed to one client before it must read some: past this, the connection stops
/// answering (and reading) until the kernel takes the replies.
pub const OUTPUT_BUDGET: usize = 16 * 1024;

/// How long a closing connection waits for its last replies to be taken and for the client to
/// close its side. Waiting for the client's FIN before closing is what makes the close orderly:
/// closing with unread input makes the kernel send RST, which can destroy replies in flight.
pub const LINGER: Duration = Duration::from_secs(2);

/// Input discarded while lingering, at most.
const LINGER_DISCARD: usize = 64 * 1024;

/// Why a connection ended, as the server logs it.
#[derive(Debug)]
pub enum Closed {
    Quit,
    ByClient,
    ByClientMidLine,
    TooLong,
    IdleTimeout,
    LineTimeout,
    StoppedReading,
    Shutdown,
    Error(io::Error),
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Quit => f.write_str("client sent QUIT"),
            Closed::ByClient => f.write_str("client closed the connection"),
            Closed::ByClientMidLine => f.write_str("client closed the connection in mid-line"),
            Closed::TooLong => f.write_str("line too long"),
            Closed::IdleTimeout => f.write_str("idle timeout"),
            Closed::LineTimeout => f.write_str("line not finished in time"),
            Closed::StoppedReading => f.write_str("client stopped reading replies"),
            Closed::Shutdown => f.write_str("server shutting down"),
            Closed::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// What a connection did, for the log.
#[derive(Debug)]
pub struct Summary {
    pub closed: Closed,
    pub requests: u64,
}

/// Per-thread buffers: every connection on a thread shares them, one at a time.
struct Scratch {
    input: Box<[u8]>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: vec![0; READ_CHUNK].into_boxed_slice(),
        out: Vec::with_capacity(OUTPUT_BUDGET + READ_CHUNK),
    });
}

/// Serves one client until it quits, breaks a rule, goes quiet, or the server stops.
pub async fn serve(
    stream: Socket,
    clock: &Clock,
    limits: &Limits,
    shutdown: &Shutdown,
    metrics: &Metrics,
) -> Summary {
    let mut conn = Connection {
        stream: &stream,
        clock,
        limits,
        metrics,
        pending: Vec::new(),
        owed: Vec::new(),
        requests: 0,
        last_progress: Instant::now(),
        line_started: None,
        shutdown,
    };
    let closed = if shutdown.is_triggered() { Closed::Shutdown } else { conn.run().await };
    // Boxed: the closing steps (the final flush, the linger) are needed once, at the end, and
    // would otherwise make every connection's task as large as they are for all of its life.
    Box::pin(conn.close(&closed)).await;
    metrics.closed(&closed);
    Summary { closed, requests: conn.requests }
}

struct Connection<'a> {
    stream: &'a Socket,
    clock: &'a Clock,
    limits: &'a Limits,
    metrics: &'a Metrics,
    /// The start of a line not yet complete (or lines not yet answered for lack of budget).
    pending: Vec<u8>,
    /// Replies not yet taken by the kernel.
    owed: Vec<u8>,
    requests: u64,
    /// The last time the client sent a byte or took a reply.
    last_progress: Instant,
    /// When the unfinished line in `pending` began.
    line_started: Option<Instant>,
    /// The server's stop: seen here by a connection that is busy, and through the reactor
    /// (which the server stops too) by one that waits.
    shutdown: &'a Shutdown,
}

enum Event {
    Ready,
    Deadline,
    Shutdown,
}

impl Connection<'_> {
    async fn run(&mut self) -> Closed {
        // No read before the first wait: the reactor reports a request that is already waiting
        // as the socket's first edge, and one that is not yet here would cost a read for nothing.
        loop {
            // Replies owed go out before anything more is read: that is the backpressure.
            if !self.owed.is_empty() {
                match self.wait(Interest::Write).await {
                    Ok(Event::Ready) => match self.flush() {
                        Ok(()) => continue,
                        Err(e) => return Closed::Error(e),
                    },
                    Ok(Event::Deadline) => return self.timeout(),
                    Ok(Event::Shutdown) => return Closed::Shutdown,
                    Err(e) => return Closed::Error(e),
                }
            }
            // Lines left unanswered when the budget ran out are answered now that it is free.
            if !self.pending.is_empty() {
                match self.answer(&[]) {
                    Ok(Some(closed)) => return closed,
                    Ok(None) if !self.owed.is_empty() => continue,
                    Ok(None) => {}
                    Err(e) => return Closed::Error(e),
                }
            }
            match self.wait(Interest::Read).await {
                Ok(Event::Ready) => match self.read_and_answer() {
                    Ok(Some(closed)) => return closed,
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Closed::Error(e),
                },
                Ok(Event::Deadline) => return self.timeout(),
                Ok(Event::Shutdown) => return Closed::Shutdown,
                Err(e) => return Closed::Error(e),
            }
        }
    }

    /// Waits until the socket is ready for `interest`, a deadline passes, or the server stops.
    async fn wait(&mut self, interest: Interest) -> io::Result<Event> {
        let deadline = self.deadline();
        if self.shutdown.is_triggered() {
            return Ok(Event::Shutdown);
        }
        future::poll_fn(|cx| {
            // Readiness wins: it is progress, except for a line that is not finished in time,
            // which is checked here instead.
            self.stream.poll_wait_or_stop(interest, Some(deadline), cx).map_ok(|ready| match ready {
                Ready::Now if !self.line_late() => Event::Ready,
                Ready::Now | Ready::TimedOut => Event::Deadline,
                Ready::Stopped => Event::Shutdown,
            })
        })
        .await
    }

    /// The earliest moment the connection may be closed for a timeout.
    fn deadline(&self) -> Instant {
        let idle = self.last_progress + self.limits.idle_timeout;
        match self.line_started {
            Some(started) => idle.min(started + self.limits.line_timeout),
            None => idle,
        }
    }

    /// Whether the line under way has taken longer than the line timeout.
    fn line_late(&self) -> bool {
        self.line_started.is_some_and(|started| Instant::now() >= started + self.limits.line_timeout)
    }

    /// Which timeout a passed deadline was.
    fn timeout(&self) -> Closed {
        if self.line_late() {
            Closed::LineTimeout
        } else if !self.owed.is_empty() {
            Closed::StoppedReading
        } else {
            Closed::IdleTimeout
        }
    }

    /// Reads once and answers what arrived. `Ok(Some(_))` ends the connection.
    fn read_and_answer(&mut self) -> io::Result<Option<Closed>> {
        self.read_and_answer_with(Socket::read)
    }

    fn read_and_answer_with(
        &mut self,
        read: fn(&Socket, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Option<Closed>> {
        SCRATCH.with_borrow_mut(|scratch| {
            let n = read(self.stream, &mut scratch.input)?;
            if n == 0 {
                return Ok(Some(if self.pending.is_empty() {
                    Closed::ByClient
                } else {
                    Closed::ByClientMidLine
                }));
            }
            self.last_progress = Instant::now();
            self.metrics.received(n);
            self.answer_with(&scratch.input[..n], &mut scratch.out)
        })
    }

    /// Answers `fresh` input after whatever is pending.
    fn answer(&mut self, fresh: &[u8]) -> io::Result<Option<Closed>> {
        SCRATCH.with_borrow_mut(|scratch| self.answer_with(fresh, &mut scratch.out))
    }

    fn answer_with(&mut self, fresh: &[u8], out: &mut Vec<u8>) -> io::Result<Option<Closed>> {
        let limits = self.limits;
        let now = self.clock.now();
        out.clear();
        // The common case, a whole request in one read, is answered straight from the scratch
        // buffer; only an unfinished line is copied into the connection's own buffer.
        let answered = if self.pending.is_empty() {
            let a = protocol::respond(fresh, now, limits.max_line, OUTPUT_BUDGET, out);
            if a.flow == Flow::Continue {
                self.pending.extend_from_slice(&fresh[a.consumed..]);
            }
            a
        } else {
            self.pending.extend_from_slice(fresh);
            let a = protocol::respond(&self.pending, now, limits.max_line, OUTPUT_BUDGET, out);
            self.pending.drain(..a.consumed);
            a
        };
        self.requests += answered.lines as u64;
        self.metrics.answered(&answered);
        self.send(out)?;
        self.track_pending();
        Ok(match answered.flow {
            Flow::Continue => None,
            Flow::Quit => Some(Closed::Quit),
            Flow::TooLong => Some(Closed::TooLong),
        })
    }

    /// Keeps the line's start and the buffer's memory in step with `pending`.
    fn track_pending(&mut self) {
        if self.pending.is_empty() {
            self.line_started = None;
            // An idle connection parks no buffer.
            self.pending = Vec::new();
        } else if self.line_started.is_none() {
            self.line_started = Some(Instant::now());
        }
    }

    /// Writes `out` now if the client keeps up, and owes what it does not take.
    fn send(&mut self, out: &[u8]) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if !self.owed.is_empty() {
            self.owed.extend_from_slice(out);
            return Ok(());
        }
        let written = match self.stream.write(out) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        self.metrics.sent(written);
        self.owed.extend_from_slice(&out[written..]);
        Ok(())
    }

    /// Writes as much of what is owed as the kernel takes.
    fn flush(&mut self) -> io::Result<()> {
        match self.stream.write(&self.owed) {
            Ok(n) => {
                self.metrics.sent(n);
                self.owed.drain(..n);
                self.last_progress = Instant::now();
                if self.owed.is_empty() {
                    self.owed = Vec::new();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ends the connection in order: a last error line where one is due, the replies owed,
    /// our FIN, and a short wait for the client's FIN.
    async fn close(&mut self, closed: &Closed) {
        let farewell: &[u8] = match closed {
            Closed::Error(_) | Closed::StoppedReading => return,
            // Requests that reached us before the stop are owed a reply, then the reason.
            // The stop may have woken this task before the edge of their arrival.
            Closed::Shutdown => match self.read_and_answer_with(Socket::read_now) {
                Ok(None) => protocol::SHUTTING_DOWN,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => protocol::SHUTTING_DOWN,
                Ok(Some(_)) | Err(_) => b"",
            },
            Closed::IdleTimeout => protocol::IDLE_TIMEOUT,
            Closed::LineTimeout => protocol::LINE_TIMEOUT,
            Closed::Quit | Closed::ByClient | Closed::ByClientMidLine | Closed::TooLong => b"",
        };
        if self.send(farewell).is_err() {
            return;
        }
        // Whatever happens while lingering, the connection is closed when this returns.
        let until = Instant::now() + LINGER;
        while !self.owed.is_empty() {
            match self.stream.wait(Interest::Write, Some(until)).await {
                Ok(Ready::Now) if self.flush().is_ok() => {}
                _ => return,
            }
        }
        let _ = finish(self.stream, until).await;
    }
}

/// Sends our FIN and discards input until the client's FIN (bounded by [`LINGER_DISCARD`]) or
/// `until`.
///
/// It reads before it waits: a client that sent QUIT and closed, or that closed first, has
/// usually delivered its FIN already, and then the close needs no wait.
async fn finish(stream: &Socket, until: Instant) -> io::Result<()> {
    stream.get_ref().shutdown(Direction::Write)?;
    let mut discarded = 0;
    while discarded < LINGER_DISCARD {
        match SCRATCH.with_borrow_mut(|s| stream.read(&mut s.input)) {
            Ok(0) => break,
            Ok(n) => discarded += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stream.wait(Interest::Read, Some(until)).await? == Ready::TimedOut {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Turns a client away with `line` (`ERROR server busy`, ...), closing in order within [`LINGER`].
pub async fn refuse(stream: Socket, line: &'static [u8]) {
    // A fresh socket's send buffer is empty, so this short line is taken whole.
    if stream.write(line).is_err() {
        return;
    }
    let _ = finish(&stream, Instant::now() + LINGER).await;
}

/// Turns a client away with `line` without a task of its own: the line and our FIN now; the
/// socket is returned to be held a moment and then [`release`]d.
///
/// Input that has already arrived is read first, and again at the release: closing with unread
/// input makes the kernel send a reset instead of the FIN, which can destroy the line in flight.
/// A client whose request comes after the release still gets a reset for it, which is why the
/// server holds the socket ([`super::REFUSAL_HOLD`]) and prefers [`refuse`] while there is room.
pub fn refuse_and_hold(stream: Socket, line: &'static [u8]) -> Option<Socket> {
    if stream.write(line).is_err() {
        return None;
    }
    let _ = stream.get_ref().shutdown(Direction::Write);
    discard_now(&stream);
    Some(stream)
}

/// Closes a refused client's socket that was held, once what it sent meanwhile is read.
pub fn release(stream: Socket) {
    discard_now(&stream);
}

/// Reads and drops what has arrived, without waiting (bounded by [`LINGER_DISCARD`]).
fn discard_now(stream: &Socket) {
    let mut discarded = 0;
    while discarded < LINGER_DISCARD {
        // Asking the kernel: the reactor has not yet had a turn to report this fresh socket's
        // first edge, so its flag cannot say whether anything arrived.
        match SCRATCH.with_borrow_mut(|s| stream.read_now(&mut s.input)) {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;
    use crate::server::clock::Zone;

    /// Serves one connection on loopback with `limits`, while `client` runs on a thread against
    /// it; returns why the connection ended and what the client returned.
    fn serve_one<T: Send + 'static>(
        limits: Limits,
        client: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
    ) -> (Closed, T) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = thread::spawn(move || {
            let c = std::net::TcpStream::connect(addr).unwrap();
            // A hang fails the test instead of stalling it.
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            client(c)
        });
        let (stream, _) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let reactor = crate::server::reactor::Reactor::new().unwrap();
        let stream = reactor.register(stream).unwrap();
        let clock = Clock::new(Zone::utc());
        let summary = reactor.block_on(serve(stream, &clock, &limits, &Shutdown::new(), &Metrics::default()));
        (summary.closed, client.join().unwrap())
    }

    #[test]
    fn a_timer_that_fires_after_progress_is_set_again_for_the_new_deadline() {
        let idle = Duration::from_millis(400);
        let limits = Limits { idle_timeout: idle, ..Limits::default() };
        let (closed, since_last_request) = serve_one(limits, move |mut c| {
            // The timer is first set for 400 ms after the connection starts. A request at 250 ms
            // moves the idle deadline to 650 ms: the timer fires early at 400 ms and must be set
            // again rather than close the connection then.
            thread::sleep(Duration::from_millis(250));
            c.write_all(b"TIME\r\n").unwrap();
            let sent = Instant::now();
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            assert_eq!(&all[14..], protocol::IDLE_TIMEOUT, "{all:?}");
            sent.elapsed()
        });
        assert!(matches!(closed, Closed::IdleTimeout), "{closed}");
        assert!(since_last_request >= idle, "closed {since_last_request:?} after the last request");
    }

    #[test]
    fn a_line_started_sets_the_timer_earlier_than_the_idle_deadline() {
        let limits = Limits {
            idle_timeout: Duration::from_secs(60),
            line_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (closed, reply) = serve_one(limits, |mut c| {
            c.write_all(b"TI").unwrap();
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            all
        });
        assert!(matches!(closed, Closed::LineTimeout), "{closed}");
        assert_eq!(reply, protocol::LINE_TIMEOUT);
    }

    #[test]
    fn turned_away_at_once_a_client_whose_request_came_first_gets_the_line_and_no_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The request is in the server's socket before the reactor has seen it at all.
        client.write_all(b"TIME\r\n").unwrap();
        thread::sleep(Duration::from_millis(50));
        let (stream, _) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let reactor = crate::server::reactor::Reactor::new().unwrap();
        let held = refuse_and_hold(reactor.register(stream).unwrap(), protocol::BUSY).unwrap();
        release(held);
        let mut all = Vec::new();
        client.read_to_end(&mut all).expect("the line and an orderly close");
        assert_eq!(all, protocol::BUSY);
        // Closing with the request unread sends a reset after the FIN; Linux still hands over
        // what had arrived, but a reply still on its way would have been lost with it.
        assert!(client.take_error().unwrap().is_none(), "the server reset the connection");
    }
}
