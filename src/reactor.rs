//! Readiness for the server's client sockets, registered once, edge-triggered.
//!
//! async-io registers a socket in one-shot mode: every wait for readiness arms it again with an
//! `epoll_ctl`, so under request-response every request costs one. At 5,000 active connections
//! that was about 6% of the server's CPU (perf, docs/PERFORMANCE.md). Here each client socket is
//! added once to an epoll set of our own, edge-triggered, and that set's descriptor is itself
//! watched through async-io: one `epoll_ctl` per batch of events instead of one per request,
//! while the listener, the timers and the executor stay smol's.
//!
//! Edge-triggered readiness is kept per socket as two flags. The kernel reports an edge once, so
//! a flag is cleared only by an operation that met `WouldBlock`, and only if no edge arrived
//! while that operation was under way (each edge bumps a counter the operation compares).

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use smol::Async;

/// Events taken from the kernel per `epoll_wait`; more are taken on the next turn.
const EVENTS_PER_WAIT: usize = 256;

/// The epoll set, and what each registered socket is waiting for.
#[derive(Debug)]
pub struct Reactor {
    epoll: Epoll,
    slots: Mutex<Slots>,
}

/// A socket's two directions, indexed by its key.
#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Option<[Direction; 2]>>,
    free: Vec<usize>,
}

const READ: usize = 0;
const WRITE: usize = 1;

const HANGUP: EpollFlags = EpollFlags::EPOLLHUP.union(EpollFlags::EPOLLERR);
/// The events that make each direction ready: a hang-up or an error too, so that the operation
/// that follows meets it.
const WAKES: [EpollFlags; 2] =
    [HANGUP.union(EpollFlags::EPOLLIN).union(EpollFlags::EPOLLRDHUP), HANGUP.union(EpollFlags::EPOLLOUT)];
/// The events after which a direction stays closed for good.
const CLOSES: [EpollFlags; 2] = [HANGUP.union(EpollFlags::EPOLLRDHUP), HANGUP];

#[derive(Debug, Default)]
struct Direction {
    /// The last operation did not meet `WouldBlock`, or an edge came since.
    ready: bool,
    /// The peer has shut this direction (or the socket has failed): for good, so a short
    /// transfer no longer clears `ready`. A client's FIN that came with its last request raises
    /// one edge for both; the read that takes the request is short, and only the next read
    /// returns the end, for which no edge will come again.
    closed: bool,
    /// Edges seen, to tell whether one came while an operation was under way.
    edges: u32,
    waker: Option<Waker>,
}

impl Reactor {
    /// A new, empty epoll set.
    pub fn new() -> io::Result<Arc<Reactor>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(Arc::new(Reactor { epoll, slots: Mutex::new(Slots::default()) }))
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `stream` (non-blocking from here on) to the set, once for its whole life.
    pub fn register(self: &Arc<Reactor>, stream: TcpStream) -> io::Result<Socket> {
        stream.set_nonblocking(true)?;
        let key = {
            let mut s = self.slots();
            let fresh = [
                Direction { ready: true, ..Direction::default() },
                Direction { ready: true, ..Direction::default() },
            ];
            match s.free.pop() {
                Some(key) => {
                    s.slots[key] = Some(fresh);
                    key
                }
                None => {
                    s.slots.push(Some(fresh));
                    s.slots.len() - 1
                }
            }
        };
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if let Err(e) = self.epoll.add(&stream, EpollEvent::new(flags, key as u64)) {
            self.release(key);
            return Err(e.into());
        }
        Ok(Socket { stream, reactor: self.clone(), key })
    }

    fn release(&self, key: usize) {
        let mut s = self.slots();
        s.slots[key] = None;
        s.free.push(key);
    }

    /// Delivers the set's events to the sockets' wakers, for as long as the server runs: a task
    /// on the server's executor. It sleeps in async-io until the set has events.
    pub async fn drive(self: Arc<Reactor>) -> io::Result<()> {
        let set = Async::new(SetFd(self.clone()))?;
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        let mut wake = Vec::with_capacity(EVENTS_PER_WAIT);
        loop {
            set.readable().await?;
            loop {
                let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                {
                    let mut s = self.slots();
                    for event in &events[..n] {
                        let Some(Some(slot)) = s.slots.get_mut(event.data() as usize) else { continue };
                        let flags = event.events();
                        for dir in [READ, WRITE] {
                            if flags.intersects(WAKES[dir]) {
                                let d = &mut slot[dir];
                                d.ready = true;
                                d.closed |= flags.intersects(CLOSES[dir]);
                                d.edges = d.edges.wrapping_add(1);
                                wake.extend(d.waker.take());
                            }
                        }
                    }
                }
                // Woken outside the lock: a woken task may run at once on another thread.
                wake.drain(..).for_each(Waker::wake);
                if n < events.len() {
                    break;
                }
            }
        }
    }
}

/// The epoll set's descriptor, for async-io to watch.
struct SetFd(Arc<Reactor>);

impl AsFd for SetFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.epoll.0.as_fd()
    }
}

/// A client socket in a [`Reactor`]'s set. Its reads and writes clear its readiness when they
/// meet `WouldBlock`; [`Socket::poll_readable`] and [`Socket::poll_writable`] wait for the next edge.
pub struct Socket {
    stream: TcpStream,
    reactor: Arc<Reactor>,
    key: usize,
}

impl Socket {
    /// The socket itself, for what needs no readiness (shutdown, addresses).
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// A non-blocking read: `WouldBlock` when nothing is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.op(READ, len, false, |mut s| s.read(buf))
    }

    /// [`Socket::read`], asking the kernel even when no edge has been seen since the last read
    /// drained it: for a last look at what a client sent just before the server stopped, whose
    /// edge may still be on its way.
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.op(READ, len, true, |mut s| s.read(buf))
    }

    /// A non-blocking write: `WouldBlock` when the kernel's send buffer is full.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.op(WRITE, buf.len(), false, |mut s| s.write(buf))
    }

    /// Runs a read or a write of `len` bytes and keeps the readiness flag in step. The flag is
    /// cleared by `WouldBlock`, and also by a short transfer (some bytes, fewer than asked): a
    /// read that did not fill the buffer took everything the kernel had, and a write that did
    /// not empty it filled the send buffer, so the next attempt would only meet `WouldBlock`
    /// (a second system call per request). Whatever arrives or frees up after the transfer
    /// raises a new edge, which sets the flag again.
    ///
    /// While the flag is clear, no system call is made at all (unless `force`): the kernel has
    /// nothing new, or an edge is on its way that will set the flag and wake the waiting task.
    fn op(
        &self,
        dir: usize,
        len: usize,
        force: bool,
        f: impl FnOnce(&TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let Some(edges) = self.with(dir, |d| (d.ready || force).then_some(d.edges)) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let result = f(&self.stream);
        let drained = match &result {
            Ok(n) => *n > 0 && *n < len,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        if drained {
            self.with(dir, |d| {
                if d.edges == edges && !d.closed {
                    d.ready = false;
                }
            });
        }
        result
    }

    fn with<T>(&self, dir: usize, f: impl FnOnce(&mut Direction) -> T) -> T {
        let mut s = self.reactor.slots();
        f(&mut s.slots[self.key].as_mut().expect("a registered socket")[dir])
    }

    fn poll_ready(&self, dir: usize, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(dir, |d| {
            if d.ready {
                return Poll::Ready(Ok(()));
            }
            match &d.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => d.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    /// Ready when a read may not meet `WouldBlock`.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_ready(READ, cx)
    }

    /// Ready when a write may not meet `WouldBlock`.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_ready(WRITE, cx)
    }

    /// Waits until a read may not meet `WouldBlock`.
    pub fn readable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(|cx| self.poll_readable(cx))
    }

    /// Waits until a write may not meet `WouldBlock`.
    pub fn writable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(|cx| self.poll_writable(cx))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Closing the socket removes it from the set; the slot is freed for the next one.
        self.reactor.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use futures_lite::future;

    use super::*;

    /// Whether `socket` is readable now, without waiting.
    fn readable_now(socket: &Socket) -> bool {
        future::block_on(future::poll_once(socket.readable())).is_some()
    }

    #[test]
    fn readiness_is_cleared_by_a_drained_read_and_set_again_by_the_next_edge() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let reactor = Reactor::new().unwrap();
        let socket = reactor.register(listener.accept().unwrap().0).unwrap();
        let body = async {
            // Fresh: ready, so the first read is tried; it finds nothing and clears the flag.
            assert!(readable_now(&socket));
            let mut buf = [0u8; 64];
            assert_eq!(socket.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
            assert!(!readable_now(&socket));
            for round in 0..3 {
                client.write_all(b"TIME\r\n").unwrap();
                // The edge reaches the waiting task through the driver.
                future::or(socket.readable(), async {
                    smol::Timer::after(Duration::from_secs(10)).await;
                    panic!("round {round}: no edge")
                })
                .await
                .unwrap();
                // A read that does not fill the buffer took everything: no second read needed.
                assert_eq!(socket.read(&mut buf).unwrap(), 6);
                assert!(!readable_now(&socket), "round {round}: still ready after a drained read");
            }
            // Data whose edge the driver has not yet delivered (it cannot run until this task
            // waits): `read` trusts the flag and makes no call, `read_now` asks the kernel.
            client.write_all(b"QUIT\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(socket.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
            assert_eq!(socket.read_now(&mut buf).unwrap(), 6);
            // A read that fills the buffer may have left more: still ready.
            client.write_all(&[b'x'; 100]).unwrap();
            socket.readable().await.unwrap();
            assert_eq!(socket.read(&mut buf).unwrap(), 64);
            assert!(readable_now(&socket));
            assert_eq!(socket.read(&mut buf).unwrap(), 36);
            // The last request and the FIN together, their one edge delivered before the read:
            // the read is short, yet the end is still to be read.
            client.write_all(b"TIME\r\n").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            socket.readable().await.unwrap();
            smol::future::yield_now().await;
            assert_eq!(socket.read(&mut buf).unwrap(), 6);
            assert!(readable_now(&socket), "the FIN that came with the request was forgotten");
            assert_eq!(socket.read(&mut buf).unwrap(), 0);
        };
        smol::block_on(future::or(body, async {
            reactor.clone().drive().await.unwrap();
            unreachable!("the driver runs until dropped")
        }));
    }
}
