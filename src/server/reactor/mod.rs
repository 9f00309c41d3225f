//! The server's event loop: readiness and deadlines for its sockets, and the loop its executor
//! threads run in ([`Reactor::block_on`]).
//!
//! smol's async-io registers a socket in one-shot mode: every wait for readiness arms it again
//! with an `epoll_ctl`, so under request-response every request costs one (about 6% of the
//! server's CPU at 5,000 active connections). And every turn of its reactor costs five system
//! calls besides the wait (a timer descriptor set and re-armed, an eventfd read and re-armed).
//! Here each socket (the clients' and the listener) is added once to an epoll set of our own,
//! edge-triggered, and the executor's threads wait in that set directly: one `epoll_wait` a
//! turn, as the floor (bench/floor.c) does. docs/PERFORMANCE.md has the measurements.
//!
//! Edge-triggered readiness is kept per socket as two flags. The kernel reports an edge once, so
//! a flag is cleared only by an operation that found nothing more (see `Socket::op`), and only
//! if no edge arrived while that operation was under way (each edge bumps a counter the
//! operation compares).
//!
//! Every wait also has a deadline (the idle and line timeouts, the linger after a close), kept
//! here rather than in an async-io timer per connection, whose registration writes to
//! async-io's eventfd to wake its reactor. A deadline is a field in the socket's slot and, when
//! it is the socket's earliest, an entry in one heap; the waiting thread's timeout is the heap's
//! top, rounded up to [`DEADLINE_GRAIN`]. A deadline that moves later (a request on a busy
//! connection) costs nothing: the old entry is looked at when it comes due, and queued again for
//! the new time. Entries of sockets that closed before their deadline are dropped in bulk once
//! they outnumber the live ones.
//!
//! Three parts, each read on its own: this file is the set and the deadlines (registering,
//! waiting, delivering edges, expiring deadlines, stopping); `socket.rs` is a registered
//! socket and the readiness it keeps; `executor.rs` is the task queue and the loop of
//! [`Reactor::block_on`] that runs it.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_task::Runnable;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

mod executor;
mod socket;

use executor::Parker;
use socket::HINT_READY;
pub use socket::{Interest, Socket};

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
    /// Tasks woken and not yet run, oldest first (see [`Reactor::spawn`]).
    queue: Mutex<VecDeque<Runnable>>,
    /// The threads in [`Reactor::block_on`], for a wake that comes from none of them.
    threads: Mutex<Vec<Arc<Parker>>>,
    /// How many there are: with more than one, each takes half the queue at a time.
    thread_count: AtomicUsize,
    /// Of those, the ones asleep (parked, or waiting in the set): tasks queued by a busy thread
    /// wake one of them.
    idle: AtomicUsize,
}

thread_local! {
    /// The reactor whose [`Reactor::block_on`] this thread is running, if any: a task it wakes
    /// is run by the same loop before that waits again, so nobody needs waking.
    static CURRENT: Cell<*const Reactor> = const { Cell::new(std::ptr::null()) };
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
    /// When the thread waiting in the set wakes for the next deadline, if there is one.
    armed: Option<Instant>,
    /// A deadline earlier than `armed` was queued: the waiting thread must look again.
    rearm: bool,
    /// The waker of the thread that last waited in the set, woken for `rearm`.
    driver: Option<Waker>,
    /// The time the heap was last looked at: deadlines up to it have passed.
    now: Option<Instant>,
    /// Waiting in the set failed with this error: every wait fails with it.
    failed: Option<(io::ErrorKind, String)>,
    /// [`Reactor::stop`] was called.
    stopped: bool,
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
    /// The reactor was stopped ([`Reactor::stop`]); only [`Socket::poll_wait_or_stop`] says so.
    Stopped,
}

impl State {
    /// The error waiting in the set failed with, for every wait after it.
    fn failure(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    /// The deadline `when` rounded up to the next step of the waiting thread's timeout.
    fn step(epoch: Instant, when: Instant) -> Instant {
        let grain = DEADLINE_GRAIN.as_nanos();
        let since = when.saturating_duration_since(epoch).as_nanos();
        let steps = since.div_ceil(grain);
        epoch + Duration::from_nanos((steps * grain).min(u64::MAX as u128) as u64)
    }

    /// Readies slot `key`'s direction `dir` to be woken by its next edge or by `deadline`:
    /// `TimedOut` if that has passed already, else pending, with the task's waker kept and the
    /// deadline queued. When the deadline is earlier than the waiting thread's timeout,
    /// `wake_driver` receives the waker that makes it look again.
    fn park(
        &mut self,
        epoch: Instant,
        key: usize,
        dir: usize,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
        wake_driver: &mut Option<Waker>,
    ) -> Poll<Ready> {
        if deadline.is_some_and(|deadline| self.now.is_some_and(|now| deadline <= now)) {
            return Poll::Ready(Ready::TimedOut);
        }
        let slot = self.slots[key].as_mut().expect("a registered slot");
        let d = &mut slot.dirs[dir];
        match &d.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => d.waker = Some(cx.waker().clone()),
        }
        slot.deadline = deadline;
        if let Some(deadline) = deadline.filter(|&dl| slot.queued.is_none_or(|q| dl < q)) {
            if slot.queued.is_none() {
                self.queued += 1;
            }
            slot.queued = Some(deadline);
            self.heap.push(Reverse((deadline, key)));
            // The waiting thread's timeout is later than this (or there is none): it must look
            // again.
            let step = State::step(epoch, deadline);
            if self.armed.is_none_or(|at| step < at) && !self.rearm {
                self.rearm = true;
                *wake_driver = self.driver.clone();
            }
        }
        Poll::Pending
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
            queue: Mutex::new(VecDeque::new()),
            threads: Mutex::new(Vec::new()),
            thread_count: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        }))
    }

    /// The error the reactor stopped on, if it did.
    pub fn check(&self) -> io::Result<()> {
        self.state().failure().map_or(Ok(()), Err)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `stream` (a client's socket or the listener, which must be non-blocking) to the
    /// set, once for its whole life.
    pub fn register<T: AsFd>(self: &Arc<Reactor>, stream: T) -> io::Result<Socket<T>> {
        // Not yet readable: adding a socket to an edge-triggered set reports what is already
        // waiting as a first edge, so no read is tried before there is something to read (a
        // client that connects and then sends would otherwise cost a read that finds nothing).
        // Writable: a new socket's send buffer is empty.
        let key = self.allocate([Direction::default(), Direction { ready: true, ..Direction::default() }]);
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if let Err(e) = self.epoll.add(&stream, EpollEvent::new(flags, key as u64)) {
            self.release(key);
            return Err(e.into());
        }
        // As the slot starts: not readable, writable.
        let hints = [AtomicU64::new(0), AtomicU64::new(HINT_READY)];
        Ok(Socket { stream, reactor: self.clone(), key, hints })
    }

    /// A slot for a new socket (or a sleep), its directions starting as `dirs`.
    fn allocate(&self, dirs: [Direction; 2]) -> usize {
        let mut s = self.state();
        let fresh = Slot { dirs, deadline: None, queued: None };
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
    }

    /// Completes at `when` (up to [`DEADLINE_GRAIN`] late), or at once if the reactor has
    /// failed: a deadline with no socket, for the server's own pauses, so that it needs no
    /// timer of async-io's (whose reactor would otherwise have to be started, with descriptors
    /// of its own, at the very moment the server has run out of them).
    pub async fn sleep_until(self: &Arc<Reactor>, when: Instant) {
        struct Release<'a>(&'a Reactor, usize);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.release(self.1);
            }
        }
        let slot = Release(self, self.allocate([Direction::default(), Direction::default()]));
        std::future::poll_fn(|cx| {
            let mut wake_driver = None;
            let poll = {
                let mut s = self.state();
                if s.failed.is_some() {
                    return Poll::Ready(());
                }
                s.park(self.epoch, slot.1, READ, Some(when), cx, &mut wake_driver)
            };
            wake_driver.into_iter().for_each(Waker::wake);
            poll.map(drop)
        })
        .await
    }

    fn release(&self, key: usize) {
        let mut s = self.state();
        if let Some(Some(Slot { queued: Some(_), .. })) = s.slots.get(key) {
            s.queued -= 1;
        }
        s.slots[key] = None;
        s.free.push(key);
    }

    /// Ends every wait made with [`Socket::poll_wait_or_stop`], now and later, with
    /// [`Ready::Stopped`]: the server's stop, heard by every connection without each holding a
    /// listener of its own (which costs an allocation and two locks a connection). Other waits
    /// (a connection's last replies and linger) go on.
    pub fn stop(&self) {
        self.mark_and_wake_all(|s| s.stopped = true);
    }

    /// Makes every wait fail from now on, and wakes every waiting socket to meet that: the end of
    /// the server's grace period, after which its connections close at their next step.
    pub fn cut_off(&self) {
        self.fail(&io::Error::other("the server's grace period is over"));
    }

    /// Records that the reactor cannot go on, and wakes every waiting socket to meet the error.
    fn fail(&self, e: &io::Error) {
        self.mark_and_wake_all(|s| s.failed = Some((e.kind(), e.to_string())));
    }

    /// Changes the state with `mark` and, under the same lock, takes every waiting socket's
    /// wakers; wakes them once the lock is released. A wait checks the mark under that lock,
    /// so none can begin between the two unseen.
    fn mark_and_wake_all(&self, mark: impl FnOnce(&mut State)) {
        let mut wake = Vec::new();
        {
            let mut s = self.state();
            mark(&mut s);
            for slot in s.slots.iter_mut().flatten() {
                wake.extend(slot.dirs.iter_mut().filter_map(|d| d.waker.take()));
            }
        }
        wake.into_iter().for_each(Waker::wake);
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::Ordering::SeqCst;
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
                // The edge reaches the waiting task through the event loop.
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
            // Data whose edge the loop has not yet delivered (it cannot run until this task
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
        reactor.block_on(body);
    }

    /// Completes once `count` reaches `n`, polled through `event`.
    async fn counted(count: &AtomicUsize, event: &event_listener::Event, n: usize) {
        loop {
            let listener = event.listen();
            if count.load(SeqCst) >= n {
                return;
            }
            listener.await;
        }
    }

    #[test]
    fn tasks_run_on_the_loop_woken_by_sockets_by_each_other_and_by_other_threads() {
        let reactor = Reactor::new().unwrap();
        let done = Arc::new((AtomicUsize::new(0), event_listener::Event::new()));
        let finish = |done: &Arc<(AtomicUsize, event_listener::Event)>| {
            done.0.fetch_add(1, SeqCst);
            done.1.notify(usize::MAX);
        };
        // Woken by a socket's edge: a task that reads a request.
        let (mut client, socket) = pair(&reactor);
        let d = done.clone();
        reactor.spawn(async move {
            let mut buf = [0u8; 16];
            socket.wait(Interest::Read, None).await.unwrap();
            assert_eq!(socket.read(&mut buf).unwrap(), 6);
            finish(&d);
        });
        // Woken by another task: one spawns a second and waits for it to yield back.
        let (d, r) = (done.clone(), reactor.clone());
        reactor.spawn(async move {
            let inner = Arc::new(AtomicUsize::new(0));
            let i = inner.clone();
            r.spawn(async move {
                for _ in 0..3 {
                    futures_lite::future::yield_now().await;
                }
                i.store(1, SeqCst);
            });
            while inner.load(SeqCst) == 0 {
                futures_lite::future::yield_now().await;
            }
            finish(&d);
        });
        // Woken from a thread that is not the loop's, while the loop waits in the set: the
        // wake must reach it through the eventfd, or this test hangs.
        let signal = Arc::new(event_listener::Event::new());
        let (d, s) = (done.clone(), signal.clone());
        let listener = signal.listen();
        reactor.spawn(async move {
            listener.await;
            finish(&d);
        });
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            s.notify(usize::MAX);
        });
        client.write_all(b"TIME\r\n").unwrap();
        let r = reactor.clone();
        // A task queued unseen would still run once the loop woke for something else (here,
        // at the latest, this 10 s timeout), so what tells is how long it took.
        let started = Instant::now();
        reactor.block_on(future::or(counted(&done.0, &done.1, 3), async {
            r.sleep_until(started + Duration::from_secs(10)).await;
        }));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} of 3 tasks ran, in {:?}",
            done.0.load(SeqCst),
            started.elapsed()
        );
        waker.join().unwrap();
    }

    #[test]
    fn with_two_threads_a_burst_of_tasks_is_shared() {
        let reactor = Reactor::new().unwrap();
        let done = Arc::new((AtomicUsize::new(0), event_listener::Event::new()));
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let stop = Arc::new(event_listener::Event::new());
        let helper = {
            let (reactor, listener) = (reactor.clone(), stop.listen());
            std::thread::spawn(move || reactor.block_on(listener))
        };
        const TASKS: usize = 100;
        let r = reactor.clone();
        reactor.block_on(async {
            // Once the other thread sleeps, a burst queued by this busy one must wake it, and it
            // must find half the queue left for it.
            while r.idle.load(SeqCst) == 0 {
                futures_lite::future::yield_now().await;
            }
            for _ in 0..TASKS {
                let (d, t) = (done.clone(), threads.clone());
                r.spawn(async move {
                    std::thread::sleep(Duration::from_millis(2));
                    t.lock().unwrap().insert(std::thread::current().id());
                    d.0.fetch_add(1, SeqCst);
                    d.1.notify(usize::MAX);
                });
            }
            counted(&done.0, &done.1, TASKS).await;
        });
        stop.notify(usize::MAX);
        helper.join().unwrap();
        assert_eq!(threads.lock().unwrap().len(), 2, "one thread ran every task");
    }

    #[test]
    fn a_deadline_ends_a_wait_and_one_moved_later_is_kept_to_its_new_time() {
        let reactor = Reactor::new().unwrap();
        let (mut client, socket) = pair(&reactor);
        let mut buf = [0u8; 64];
        reactor.block_on(async {
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
            // An earlier deadline than the one queued shortens the waiting thread's timeout.
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
    fn stop_ends_the_waits_that_ask_for_it_and_only_those() {
        let reactor = Reactor::new().unwrap();
        let (_client, socket) = pair(&reactor);
        let far = Some(Instant::now() + Duration::from_secs(3600));
        let or_stop = || std::future::poll_fn(|cx| socket.poll_wait_or_stop(Interest::Read, far, cx));
        let stopper = {
            let reactor = reactor.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                reactor.stop();
            })
        };
        reactor.block_on(async {
            // Waiting in the set when the stop comes from another thread: woken, and told.
            let hang = async {
                reactor.sleep_until(Instant::now() + Duration::from_secs(10)).await;
                panic!("the stop did not end the wait");
            };
            // (The check for a hang first: the flag alone would satisfy the wait once polled.)
            assert_eq!(future::or(hang, or_stop()).await.unwrap(), Ready::Stopped);
            // Waiting after it: told at once.
            assert_eq!(or_stop().await.unwrap(), Ready::Stopped);
            // A wait that does not ask for it goes on.
            assert!(future::poll_once(socket.wait(Interest::Read, far)).await.is_none());
        });
        stopper.join().unwrap();
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
