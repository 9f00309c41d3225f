//! Readiness and deadlines for the server's client sockets, registered once, edge-triggered.
//!
//! async-io registers a socket in one-shot mode: every wait for readiness arms it again with an
//! `epoll_ctl`, so under request-response every request costs one. At 5,000 active connections
//! that was about 6% of the server's CPU (perf, docs/PERFORMANCE.md). Here each client socket is
//! added once to an epoll set of our own, edge-triggered, and that set's descriptor is itself
//! watched through async-io: one `epoll_ctl` per batch of events instead of one per request,
//! while the listener and the executor stay smol's.
//!
//! Edge-triggered readiness is kept per socket as two flags. The kernel reports an edge once, so
//! a flag is cleared only by an operation that met `WouldBlock`, and only if no edge arrived
//! while that operation was under way (each edge bumps a counter the operation compares).
//!
//! Every wait also has a deadline (the idle and line timeouts, the linger after a close), kept
//! here rather than in an async-io timer per connection: registering one of those writes to
//! async-io's eventfd to wake its reactor, and a short session (connect, TIME, QUIT) did that
//! about twice, each write costing a turn of that reactor as well. Here a deadline is a field in
//! the socket's slot and, when it is the socket's earliest, an entry in one heap; the driver
//! keeps a single async-io timer at the heap's top, rounded up to [`DEADLINE_GRAIN`] so that it
//! is moved at most once per grain. A deadline that moves later (a request on a busy connection)
//! costs nothing: the old entry is looked at when it comes due, and queued again for the new
//! time. Entries of sockets that closed before their deadline are dropped in bulk once they
//! outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use smol::{Async, Timer};

/// Events taken from the kernel per `epoll_wait`; more are taken on the next turn.
const EVENTS_PER_WAIT: usize = 256;

/// How late a deadline may be met. Deadlines in the same step share one timer wake-up; the
/// server's shortest is the two-second linger, so 10 ms is lost in it.
pub const DEADLINE_GRAIN: Duration = Duration::from_millis(10);

/// Heap entries kept before stale ones (of sockets closed before their deadline) are swept out.
const HEAP_SWEEP_MIN: usize = 1024;

/// The epoll set, and what each registered socket is waiting for.
#[derive(Debug)]
pub struct Reactor {
    epoll: Epoll,
    state: Mutex<State>,
    /// Deadlines are rounded up to [`DEADLINE_GRAIN`] steps counted from here.
    epoch: Instant,
    /// In the set under [`NOTIFY_KEY`]: written to wake the thread waiting in the set in
    /// [`Reactor::block_on`].
    notify: EventFd,
    /// Taken by the thread that waits in the set in [`Reactor::block_on`].
    polling: AtomicBool,
}

/// The key of [`Reactor::notify`] in the set; sockets' keys are indices into the slots.
const NOTIFY_KEY: u64 = u64::MAX;

#[derive(Debug, Default)]
struct State {
    /// Each socket's slot, indexed by its key; `None` when free.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Deadlines by time: at most one live entry per socket, the one its `queued` names.
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Sockets with a live entry in `heap`; the rest of its entries are stale.
    queued: usize,
    /// When the driver's timer fires, if it is set.
    armed: Option<Instant>,
    /// A deadline earlier than `armed` was queued: the driver must set its timer again.
    rearm: bool,
    /// The driver's task, woken for `rearm`.
    driver: Option<Waker>,
    /// The time the driver last looked at the heap: deadlines up to it have passed.
    now: Option<Instant>,
    /// The driver stopped on this error: every wait fails with it.
    failed: Option<(io::ErrorKind, String)>,
}

#[derive(Debug)]
struct Slot {
    dirs: [Direction; 2],
    /// The deadline of the socket's current wait.
    deadline: Option<Instant>,
    /// The time of the socket's live heap entry.
    queued: Option<Instant>,
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

/// How a wait with a deadline ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The operation may not meet `WouldBlock`.
    Now,
    /// The deadline passed first.
    TimedOut,
}

impl State {
    /// The deadline `when` rounded up to the driver's next step.
    fn step(epoch: Instant, when: Instant) -> Instant {
        let grain = DEADLINE_GRAIN.as_nanos();
        let since = when.saturating_duration_since(epoch).as_nanos();
        let steps = since.div_ceil(grain);
        epoch + Duration::from_nanos((steps * grain).min(u64::MAX as u128) as u64)
    }

    /// Pops the deadlines that have passed by `now` and collects the wakers they are for.
    fn expire(&mut self, now: Instant, wake: &mut Vec<Waker>) {
        self.now = Some(now);
        while let Some(&Reverse((when, key))) = self.heap.peek() {
            if when > now {
                break;
            }
            self.heap.pop();
            let Some(Some(slot)) = self.slots.get_mut(key) else { continue };
            if slot.queued != Some(when) {
                continue; // stale: the socket is gone, or an earlier entry replaced it
            }
            slot.queued = None;
            self.queued -= 1;
            match slot.deadline {
                Some(deadline) if deadline <= now => {
                    wake.extend(slot.dirs.iter_mut().filter_map(|d| d.waker.take()));
                }
                // Moved later since it was queued: queued again, for its new time.
                Some(deadline) => {
                    slot.queued = Some(deadline);
                    self.queued += 1;
                    self.heap.push(Reverse((deadline, key)));
                }
                None => {}
            }
        }
        if self.heap.len() > HEAP_SWEEP_MIN && self.heap.len() > 2 * self.queued {
            let slots = &self.slots;
            self.heap.retain(|&Reverse((when, key))| {
                slots.get(key).is_some_and(|s| s.as_ref().is_some_and(|s| s.queued == Some(when)))
            });
        }
    }
}

impl Reactor {
    /// A new, empty epoll set.
    pub fn new() -> io::Result<Arc<Reactor>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let notify = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&notify, EpollEvent::new(EpollFlags::EPOLLIN, NOTIFY_KEY))?;
        Ok(Arc::new(Reactor {
            epoll,
            state: Mutex::new(State::default()),
            epoch: Instant::now(),
            notify,
            polling: AtomicBool::new(false),
        }))
    }

    /// The error the reactor stopped on, if it did.
    pub fn check(&self) -> io::Result<()> {
        match &self.state().failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `stream` (a client's socket or the listener, which must be non-blocking) to the
    /// set, once for its whole life.
    pub fn register<T: AsFd>(self: &Arc<Reactor>, stream: T) -> io::Result<Socket<T>> {
        let key = {
            let mut s = self.state();
            // Not yet readable: adding a socket to an edge-triggered set reports what is already
            // waiting as a first edge, so no read is tried before there is something to read
            // (a client that connects and then sends would otherwise cost a read that finds
            // nothing). Writable: a new socket's send buffer is empty.
            let fresh = Slot {
                dirs: [Direction::default(), Direction { ready: true, ..Direction::default() }],
                deadline: None,
                queued: None,
            };
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
        let mut s = self.state();
        if let Some(Some(Slot { queued: Some(_), .. })) = s.slots.get(key) {
            s.queued -= 1;
        }
        s.slots[key] = None;
        s.free.push(key);
    }

    /// Delivers the set's events and the passing of deadlines to the sockets' wakers, for as
    /// long as the server runs: a task on the server's executor. It sleeps in async-io until the
    /// set has events or its timer fires. If it fails, every wait fails from then on, so that no
    /// connection waits for ever.
    pub async fn drive(self: Arc<Reactor>) -> io::Result<()> {
        let result = self.run().await;
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    /// Records that the reactor cannot go on, and wakes every waiting socket to meet the error.
    fn fail(&self, e: &io::Error) {
        let mut wake = Vec::new();
        {
            let mut s = self.state();
            s.failed = Some((e.kind(), e.to_string()));
            for slot in s.slots.iter_mut().flatten() {
                wake.extend(slot.dirs.iter_mut().filter_map(|d| d.waker.take()));
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    async fn run(self: &Arc<Reactor>) -> io::Result<()> {
        let set = Async::new(SetFd(self.clone()))?;
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        let mut wake = Vec::with_capacity(EVENTS_PER_WAIT);
        let mut timer = Timer::never();
        loop {
            loop {
                let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                self.deliver(&events[..n], &mut wake);
                // Woken outside the lock: a woken task may run at once on another thread.
                wake.drain(..).for_each(Waker::wake);
                if n < events.len() {
                    break;
                }
            }
            {
                let mut s = self.state();
                s.expire(Instant::now(), &mut wake);
                let next = s.heap.peek().map(|&Reverse((when, _))| State::step(self.epoch, when));
                s.rearm = false;
                if next != s.armed {
                    s.armed = next;
                    if let Some(at) = next {
                        timer.set_at(at);
                    }
                }
            }
            wake.drain(..).for_each(Waker::wake);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = set.poll_readable(cx) {
                    return Poll::Ready(result);
                }
                let mut s = self.state();
                if s.armed.is_some() && Pin::new(&mut timer).poll(cx).is_ready() || s.rearm {
                    return Poll::Ready(Ok(()));
                }
                match &s.driver {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.driver = Some(cx.waker().clone()),
                }
                Poll::Pending
            })
            .await?;
        }
    }

    /// Marks the sockets named by `events` ready and collects the wakers to wake.
    fn deliver(&self, events: &[EpollEvent], wake: &mut Vec<Waker>) {
        let mut s = self.state();
        for event in events {
            if event.data() == NOTIFY_KEY {
                let _ = self.notify.read();
                continue;
            }
            let Some(Some(slot)) = s.slots.get_mut(event.data() as usize) else { continue };
            let flags = event.events();
            for dir in [READ, WRITE] {
                if flags.intersects(WAKES[dir]) {
                    let d = &mut slot.dirs[dir];
                    d.ready = true;
                    d.closed |= flags.intersects(CLOSES[dir]);
                    d.edges = d.edges.wrapping_add(1);
                    wake.extend(d.waker.take());
                }
            }
        }
    }
}

impl Reactor {
    /// Runs `future` to completion on this thread, waiting in the reactor's own set whenever it
    /// has nothing to do: `jam serve`'s executor threads, in place of `smol::block_on`.
    ///
    /// Under [`Reactor::drive`], each wait goes through async-io, whose every turn sets its
    /// timer descriptor, re-arms it, waits, reads its eventfd and re-arms that, then re-arms the
    /// set's descriptor and asks the set: seven system calls where one `epoll_wait` does. Here
    /// the thread waits in the set itself, with the next deadline as its timeout. Sources still
    /// in async-io (the signal-driven shutdown, the few timers outside connections) are driven by
    /// async-io's own thread, and their wakers reach this one through [`Reactor::notify`]. With
    /// several threads, one waits in the set and the others park until a task is theirs.
    pub fn block_on<T>(self: &Arc<Reactor>, future: impl Future<Output = T>) -> T {
        let parker = Arc::new(Parker {
            thread: std::thread::current(),
            notified: AtomicBool::new(true),
            state: AtomicU8::new(RUNNING),
            reactor: Arc::downgrade(self),
        });
        let waker = Waker::from(parker.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        let mut wake = Vec::with_capacity(EVENTS_PER_WAIT);
        loop {
            if parker.notified.swap(false, SeqCst) {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
                continue;
            }
            let failed = self.state().failed.is_some();
            if failed || self.polling.compare_exchange(false, true, SeqCst, SeqCst).is_err() {
                // Another thread waits in the set (or none can): park until woken.
                parker.state.store(PARKED, SeqCst);
                if !parker.notified.load(SeqCst) {
                    std::thread::park();
                }
                parker.state.store(RUNNING, SeqCst);
                continue;
            }
            // Deadlines that have passed first; their tasks are woken while this thread still
            // counts as running, so that waking them costs no write to the eventfd.
            let timeout = {
                let mut s = self.state();
                let now = Instant::now();
                s.expire(now, &mut wake);
                let next = s.heap.peek().map(|&Reverse((when, _))| State::step(self.epoch, when));
                s.armed = next;
                s.rearm = false;
                match &s.driver {
                    Some(w) if w.will_wake(&waker) => {}
                    _ => s.driver = Some(waker.clone()),
                }
                next.map(|at| at.saturating_duration_since(now))
            };
            let result = if wake.is_empty() {
                parker.state.store(POLLING, SeqCst);
                // A wake that came before the state said so has set `notified` instead.
                let result = if parker.notified.load(SeqCst) {
                    Ok(0)
                } else {
                    let timeout = timeout.map_or(EpollTimeout::NONE, |t| {
                        // Rounded up: epoll counts in milliseconds, and waking early would spin.
                        EpollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(EpollTimeout::MAX)
                    });
                    self.epoll.wait(&mut events, timeout)
                };
                parker.state.store(RUNNING, SeqCst);
                result
            } else {
                self.epoll.wait(&mut events, EpollTimeout::ZERO)
            };
            self.polling.store(false, SeqCst);
            match result {
                Ok(n) => self.deliver(&events[..n], &mut wake),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    let e = io::Error::from(e);
                    crate::error!("cannot wait for the clients' sockets any more: {e}; closing them");
                    self.fail(&e);
                }
            }
            wake.drain(..).for_each(Waker::wake);
        }
    }
}

/// What a thread in [`Reactor::block_on`] is doing, for its waker.
const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const POLLING: u8 = 2;

/// A thread in [`Reactor::block_on`], and how to wake it.
struct Parker {
    thread: std::thread::Thread,
    /// Woken since the thread last polled its future.
    notified: AtomicBool,
    /// [`RUNNING`], [`PARKED`] or [`POLLING`].
    state: AtomicU8,
    /// Weak: the reactor keeps this waker for its deadlines, and must not keep itself alive.
    reactor: std::sync::Weak<Reactor>,
}

impl std::task::Wake for Parker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.notified.swap(true, SeqCst) {
            return; // already woken, by whoever set the flag
        }
        match self.state.load(SeqCst) {
            PARKED => self.thread.unpark(),
            POLLING => {
                if let Some(reactor) = self.reactor.upgrade() {
                    let _ = reactor.notify.write(1);
                }
            }
            _ => {} // running: it polls its future again before it waits
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

/// What a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable: data, the peer's FIN, or a client to accept.
    Read = READ as isize,
    /// Writable: room in the send buffer.
    Write = WRITE as isize,
}

/// A client socket in a [`Reactor`]'s set. Its reads and writes clear its readiness when they
/// meet `WouldBlock`; [`Socket::poll_wait`] waits for the next edge or a deadline.
pub struct Socket<T: AsFd = TcpStream> {
    stream: T,
    reactor: Arc<Reactor>,
    key: usize,
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
        let Some(edges) = self.with(dir, |d| (d.ready || force).then_some(d.edges)) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let result = f(&self.stream);
        if drained(&result) {
            self.with(dir, |d| {
                if d.edges == edges && !d.closed {
                    d.ready = false;
                }
            });
        }
        result
    }

    fn with<R>(&self, dir: usize, f: impl FnOnce(&mut Direction) -> R) -> R {
        let mut s = self.reactor.state();
        f(&mut s.slots[self.key].as_mut().expect("a registered socket").dirs[dir])
    }

    /// Ready when an operation of `interest` may not meet `WouldBlock`, or once `deadline` (if
    /// any) has passed, up to [`DEADLINE_GRAIN`] late. Readiness wins over a passed deadline.
    pub fn poll_wait(
        &self,
        interest: Interest,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Ready>> {
        let mut wake_driver = None;
        {
            let mut guard = self.reactor.state();
            let State { slots, heap, queued, armed, rearm, driver, now, failed, .. } = &mut *guard;
            if let Some((kind, message)) = failed {
                return Poll::Ready(Err(io::Error::new(*kind, message.clone())));
            }
            let slot = slots[self.key].as_mut().expect("a registered socket");
            let d = &mut slot.dirs[interest as usize];
            if d.ready {
                return Poll::Ready(Ok(Ready::Now));
            }
            if deadline.is_some_and(|deadline| now.is_some_and(|now| deadline <= now)) {
                return Poll::Ready(Ok(Ready::TimedOut));
            }
            match &d.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => d.waker = Some(cx.waker().clone()),
            }
            slot.deadline = deadline;
            if let Some(deadline) = deadline.filter(|&dl| slot.queued.is_none_or(|q| dl < q)) {
                if slot.queued.is_none() {
                    *queued += 1;
                }
                slot.queued = Some(deadline);
                heap.push(Reverse((deadline, self.key)));
                // The driver's timer is set for later than this (or not at all): it must move.
                let step = State::step(self.reactor.epoch, deadline);
                if armed.is_none_or(|at| step < at) && !*rearm {
                    *rearm = true;
                    wake_driver = driver.clone();
                }
            }
        }
        if let Some(w) = wake_driver {
            w.wake();
        }
        Poll::Pending
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
#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use futures_lite::future;

    use super::*;

    /// Whether `socket` is readable now, without waiting.
    fn readable_now(socket: &Socket) -> bool {
        future::block_on(future::poll_once(socket.wait(Interest::Read, None))).is_some()
    }

    /// A connected pair on loopback: the client, and the server's end in `reactor`.
    fn pair(reactor: &Arc<Reactor>) -> (TcpStream, Socket) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = listener.accept().unwrap().0;
        accepted.set_nonblocking(true).unwrap();
        (client, reactor.register(accepted).unwrap())
    }

    /// Runs `body` beside the reactor's driver.
    fn with_driver(reactor: &Arc<Reactor>, body: impl Future<Output = ()>) {
        smol::block_on(future::or(body, async {
            reactor.clone().drive().await.unwrap();
            unreachable!("the driver runs until dropped")
        }));
    }

    #[test]
    fn readiness_is_cleared_by_a_drained_read_and_set_again_by_the_next_edge() {
        let reactor = Reactor::new().unwrap();
        let (mut client, socket) = pair(&reactor);
        let body = async {
            // Fresh: not readable until an edge says so, and no read is tried.
            assert!(!readable_now(&socket));
            let mut buf = [0u8; 64];
            assert_eq!(socket.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
            // Writable at once.
            assert!(future::block_on(future::poll_once(socket.wait(Interest::Write, None))).is_some());
            for round in 0..3 {
                client.write_all(b"TIME\r\n").unwrap();
                // The edge reaches the waiting task through the driver.
                future::or(socket.wait(Interest::Read, None), async {
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
            socket.wait(Interest::Read, None).await.unwrap();
            assert_eq!(socket.read(&mut buf).unwrap(), 64);
            assert!(readable_now(&socket));
            assert_eq!(socket.read(&mut buf).unwrap(), 36);
            // The last request and the FIN together, their one edge delivered before the read:
            // the read is short, yet the end is still to be read.
            client.write_all(b"TIME\r\n").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            socket.wait(Interest::Read, None).await.unwrap();
            smol::future::yield_now().await;
            assert_eq!(socket.read(&mut buf).unwrap(), 6);
            assert!(readable_now(&socket), "the FIN that came with the request was forgotten");
            assert_eq!(socket.read(&mut buf).unwrap(), 0);
        };
        with_driver(&reactor, body);
    }

    #[test]
    fn a_deadline_ends_a_wait_and_one_moved_later_is_kept_to_its_new_time() {
        let reactor = Reactor::new().unwrap();
        let (mut client, socket) = pair(&reactor);
        let mut buf = [0u8; 64];
        with_driver(&reactor, async {
            assert_eq!(socket.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
            // Nothing comes: the wait ends at its deadline, not before, and not much after.
            let start = Instant::now();
            let ready = socket.wait(Interest::Read, Some(start + Duration::from_millis(100))).await.unwrap();
            assert_eq!(ready, Ready::TimedOut);
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(100), "ended early, after {waited:?}");
            assert!(waited < Duration::from_secs(5), "ended late, after {waited:?}");
            // A wait with a later deadline than the one queued: the first entry comes due,
            // finds the new time, and is queued again for it.
            let start = Instant::now();
            let first = socket.wait(Interest::Read, Some(start + Duration::from_millis(50)));
            assert!(future::poll_once(first).await.is_none());
            let ready = socket.wait(Interest::Read, Some(start + Duration::from_millis(300))).await.unwrap();
            assert_eq!(ready, Ready::TimedOut);
            assert!(start.elapsed() >= Duration::from_millis(300), "ended after {:?}", start.elapsed());
            // An earlier deadline than the one queued moves the driver's timer forward.
            let start = Instant::now();
            let far = socket.wait(Interest::Read, Some(start + Duration::from_secs(3600)));
            assert!(future::poll_once(far).await.is_none());
            let ready = socket.wait(Interest::Read, Some(start + Duration::from_millis(100))).await.unwrap();
            assert_eq!(ready, Ready::TimedOut);
            assert!(start.elapsed() < Duration::from_secs(5), "the earlier deadline was not kept");
            // Readiness wins over a deadline.
            client.write_all(b"TIME\r\n").unwrap();
            let ready =
                socket.wait(Interest::Read, Some(Instant::now() + Duration::from_secs(10))).await.unwrap();
            assert_eq!(ready, Ready::Now);
            assert_eq!(socket.read(&mut buf).unwrap(), 6);
        });
    }

    #[test]
    fn entries_of_closed_sockets_are_swept_out_of_the_heap() {
        let reactor = Reactor::new().unwrap();
        let far = Instant::now() + Duration::from_secs(3600);
        // Each socket waits with a deadline an hour away, then closes, leaving its entry behind.
        for _ in 0..3 * HEAP_SWEEP_MIN {
            let (_client, socket) = pair(&reactor);
            let _ = socket.read(&mut [0u8; 8]);
            assert!(future::block_on(future::poll_once(socket.wait(Interest::Read, Some(far)))).is_none());
        }
        let mut wake = Vec::new();
        let mut s = reactor.state();
        assert_eq!(s.queued, 0);
        s.expire(Instant::now(), &mut wake);
        assert!(s.heap.len() <= HEAP_SWEEP_MIN, "{} stale entries kept", s.heap.len());
        assert!(wake.is_empty());
    }
}
