//! A socket in the reactor's set, and the readiness it keeps: two edge-triggered flags, one a
//! direction, cleared only by an operation that found nothing more and saw no edge meanwhile.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::*;

/// What a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable: data, the peer's FIN, or a client to accept.
    Read = READ as isize,
    /// Writable: room in the send buffer.
    Write = WRITE as isize,
}

/// A socket in a [`Reactor`]'s set. Its reads and writes clear its readiness when they
/// meet `WouldBlock`; [`Socket::poll_wait`] waits for the next edge or a deadline.
pub struct Socket<T: AsFd = TcpStream> {
    pub(super) stream: T,
    pub(super) reactor: Arc<Reactor>,
    pub(super) key: usize,
    /// Per direction, what this socket last learned under the reactor's lock, and a clear its
    /// own operation left pending: [`HINT_READY`], [`HINT_CLEAR`], and the edge count in the
    /// upper half. Only the socket's own operations make a direction not ready (the event loop
    /// only makes it ready), so a ready hint is always true, and an operation on a ready
    /// socket, or a wait for one, needs no lock: under request-response, one lock a request
    /// instead of four. Touched only by the task that owns the socket; atomic so that the task may move
    /// between threads.
    pub(super) hints: [AtomicU64; 2],
}

/// A hint: the direction was ready when last looked at, and no operation has drained it since.
pub(super) const HINT_READY: u64 = 1;
/// A hint: an operation drained the direction; it is not ready unless an edge came since.
pub(super) const HINT_CLEAR: u64 = 2;

/// The edge count a hint was taken at.
fn hint_edges(hint: u64) -> u32 {
    (hint >> 32) as u32
}

impl Socket<TcpListener> {
    /// Accepts a client, as a non-blocking socket: `WouldBlock` when none is waiting.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.op(READ, false, crate::sys::accept_nonblocking, |result| {
            result.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
        })
    }
}

impl Socket<TcpStream> {
    /// A non-blocking read: `WouldBlock` when nothing is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.op(READ, false, |mut s| s.read(buf), drained(len))
    }

    /// [`Socket::read`], asking the kernel even when no edge has been seen since the last read
    /// drained it: for a last look at what a client sent just before the server stopped, whose
    /// edge may still be on its way.
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.op(READ, true, |mut s| s.read(buf), drained(len))
    }

    /// A non-blocking write: `WouldBlock` when the kernel's send buffer is full.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.op(WRITE, false, |mut s| s.write(buf), drained(buf.len()))
    }
}

/// Whether a read or a write of `len` bytes took all there was: see [`Socket::op`].
fn drained(len: usize) -> impl FnOnce(&io::Result<usize>) -> bool {
    move |result| match result {
        Ok(n) => *n > 0 && *n < len,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

impl<T: AsFd> Socket<T> {
    /// The socket itself, for what needs no readiness (shutdown, addresses).
    pub fn get_ref(&self) -> &T {
        &self.stream
    }

    /// Runs an operation in direction `dir` and keeps the readiness flag in step. The flag is
    /// cleared when `drained` says the operation took all there was: `WouldBlock`, and also a
    /// short transfer (some bytes, fewer than asked): a read that did not fill the buffer took
    /// everything the kernel had, and a write that did not empty it filled the send buffer, so
    /// the next attempt would only meet `WouldBlock` (a second system call per request).
    /// Whatever arrives or frees up after the operation raises a new edge, which sets the flag
    /// again.
    ///
    /// While the flag is clear, no system call is made at all (unless `force`): the kernel has
    /// nothing new, or an edge is on its way that will set the flag and wake the waiting task.
    /// For the listener that matters too: a failed `accept4` is not cheap (Linux allocates the
    /// new socket's file before it finds the queue empty).
    fn op<R>(
        &self,
        dir: usize,
        force: bool,
        f: impl FnOnce(&T) -> io::Result<R>,
        drained: impl FnOnce(&io::Result<R>) -> bool,
    ) -> io::Result<R> {
        let hint = self.hints[dir].load(Relaxed);
        let edges = if hint & HINT_READY != 0 {
            hint_edges(hint)
        } else {
            let mut s = self.reactor.state();
            let d = self.sync(&mut s, dir);
            if !(d.ready || force) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            d.edges
        };
        let result = f(&self.stream);
        if drained(&result) {
            // Cleared at the next look under the lock, if no edge came meanwhile.
            self.hints[dir].store(HINT_CLEAR | u64::from(edges) << 32, Relaxed);
        }
        result
    }

    /// The direction's state, with a clear that an operation left pending applied, and the
    /// socket's hint brought up to date.
    fn sync<'s>(&self, s: &'s mut State, dir: usize) -> &'s mut Direction {
        let d = &mut s.slots[self.key].as_mut().expect("a registered socket").dirs[dir];
        let hint = self.hints[dir].load(Relaxed);
        if hint & HINT_CLEAR != 0 && hint_edges(hint) == d.edges && !d.closed {
            d.ready = false;
        }
        let ready = if d.ready { HINT_READY } else { 0 };
        self.hints[dir].store(ready | u64::from(d.edges) << 32, Relaxed);
        d
    }

    /// Ready when an operation of `interest` may not meet `WouldBlock`, or once `deadline` (if
    /// any) has passed, up to [`DEADLINE_GRAIN`] late. Readiness wins over a passed deadline.
    pub fn poll_wait(
        &self,
        interest: Interest,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Ready>> {
        self.poll(interest, deadline, false, cx)
    }

    /// [`Socket::poll_wait`], which also ends with [`Ready::Stopped`] once the reactor is
    /// stopped (readiness still wins).
    pub fn poll_wait_or_stop(
        &self,
        interest: Interest,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Ready>> {
        self.poll(interest, deadline, true, cx)
    }

    fn poll(
        &self,
        interest: Interest,
        deadline: Option<Instant>,
        stoppable: bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Ready>> {
        // Readiness seen under the lock stays true until one of this socket's own operations
        // drains it, so the hint is enough to say so.
        if self.hints[interest as usize].load(Relaxed) & HINT_READY != 0 {
            return Poll::Ready(Ok(Ready::Now));
        }
        let mut wake_driver = None;
        let poll = {
            let mut guard = self.reactor.state();
            if let Some(e) = guard.failure() {
                return Poll::Ready(Err(e));
            }
            if self.sync(&mut guard, interest as usize).ready {
                return Poll::Ready(Ok(Ready::Now));
            }
            // Checked under the same lock as `stop` sets it: a wait cannot slip in between.
            if stoppable && guard.stopped {
                return Poll::Ready(Ok(Ready::Stopped));
            }
            guard.park(self.reactor.epoch, self.key, interest as usize, deadline, cx, &mut wake_driver)
        };
        wake_driver.into_iter().for_each(Waker::wake);
        poll.map(Ok)
    }

    /// Waits until an operation of `interest` may not meet `WouldBlock`, or `deadline` passes.
    pub fn wait(
        &self,
        interest: Interest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = io::Result<Ready>> + '_ {
        std::future::poll_fn(move |cx| self.poll_wait(interest, deadline, cx))
    }
}

impl<T: AsFd> Drop for Socket<T> {
    fn drop(&mut self) {
        // Closing the socket removes it from the set; the slot is freed for the next one.
        self.reactor.release(self.key);
    }
}
