//! The reactor's executor: connections are tasks (async-task, the building block of smol's),
//! queued when woken and run by the loop of [`Reactor::block_on`], which waits in the epoll set
//! when there is nothing to run.

use std::cmp::Reverse;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_task::Runnable;
use nix::sys::epoll::{EpollEvent, EpollTimeout};

use super::*;

impl Reactor {
    /// Runs `future` as a task of this reactor's, on whichever thread in [`Reactor::block_on`]
    /// comes to it first, until it completes. Every task must complete on its own (the server
    /// waits for its connections, and cuts them off with [`Reactor::cut_off`]): one still
    /// pending when the threads leave is never run again.
    ///
    /// This and the loop in `block_on` are the server's executor, made of async-task, the
    /// building block of smol's: a task woken goes to the back of one queue, and the loop runs
    /// the queue between its looks at the epoll set. smol's `Executor` did the same with a
    /// work-stealing queue per thread, a list of sleeping threads to notify on every wake, and
    /// a lock taken on every spawn and every task's end, knowing nothing of this loop; without
    /// it a request costs 3.6% less CPU at 64 connections (docs/PERFORMANCE.md).
    pub fn spawn(self: &Arc<Reactor>, future: impl Future<Output = ()> + Send + 'static) {
        let reactor = self.clone();
        let (runnable, task) = async_task::spawn(future, move |runnable| reactor.schedule(runnable));
        task.detach();
        runnable.schedule();
    }

    /// Queues a woken task, and makes sure a thread will run it.
    fn schedule(&self, runnable: Runnable) {
        let queued = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.push_back(runnable);
            queue.len()
        };
        // Woken elsewhere (the signal thread, async-io's thread), the loop that picks it up may
        // be asleep; woken by this thread's loop, which runs it before it waits, nobody needs
        // waking unless there is work for another thread that has none.
        let elsewhere = CURRENT.get() != std::ptr::from_ref(self);
        if elsewhere || (queued > 1 && self.idle.load(Relaxed) > 0) {
            self.wake_a_thread();
        }
    }

    /// Wakes a thread in [`Reactor::block_on`] to look at the queue: a parked one if there is
    /// one, else the one waiting in the set, else any (which looks before it waits).
    fn wake_a_thread(&self) {
        let threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        let by_state = |state| threads.iter().find(|p| p.state.load(SeqCst) == state);
        if let Some(parker) = by_state(PARKED).or_else(|| by_state(POLLING)).or(threads.first()) {
            std::task::Wake::wake_by_ref(parker);
        }
    }

    /// Runs the tasks queued now, or with other threads half of them, leaving the rest to
    /// those; the tasks they queue in turn wait for the next round, after a look at the set.
    /// Returns whether there were any.
    fn run_queued(&self, batch: &mut Vec<Runnable>) -> bool {
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let share =
                if self.thread_count.load(Relaxed) > 1 { queue.len().div_ceil(2) } else { queue.len() };
            batch.extend(queue.drain(..share));
        }
        let ran = !batch.is_empty();
        batch.drain(..).for_each(|runnable| {
            runnable.run();
        });
        ran
    }

    fn queue_is_empty(&self) -> bool {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Runs `future` to completion on this thread, and with it the reactor's tasks, waiting in
    /// the reactor's epoll set whenever there is nothing to do: the server's threads run under
    /// it, in place of `smol::block_on` and an executor's `run`.
    ///
    /// async-io would cost, on every turn of its reactor, a `timerfd_settime`, two
    /// `epoll_ctl` (its timer descriptor and its eventfd, both one-shot), a read of the eventfd
    /// and the wait itself; the first version of this module, whose set async-io watched, a
    /// third `epoll_ctl` and a second wait besides. Here a turn is one `epoll_wait`, with the
    /// next deadline as its timeout. Wakers from other threads (the signal thread's shutdown,
    /// async-io's sources, such as `jam lab`'s clients, which async-io's own thread drives) reach
    /// the waiting thread through the set's eventfd. With several threads, one waits in the set
    /// and the others park until there is work for them.
    pub fn block_on<T>(self: &Arc<Reactor>, future: impl Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let mut output = None;
        self.run(&mut |cx| match future.as_mut().poll(cx) {
            Poll::Ready(value) => {
                output = Some(value);
                true
            }
            Poll::Pending => false,
        });
        output.expect("run returns once the future is ready")
    }

    /// [`Reactor::block_on`]'s loop, not generic, so that the binary holds it once: polls with
    /// `poll` until it says the future is done.
    fn run(self: &Arc<Reactor>, poll: &mut dyn FnMut(&mut Context<'_>) -> bool) {
        let parker = Arc::new(Parker {
            thread: std::thread::current(),
            notified: AtomicBool::new(true),
            state: AtomicU8::new(RUNNING_STATE),
            reactor: Arc::downgrade(self),
        });
        let waker = Waker::from(parker.clone());
        let mut cx = Context::from_waker(&waker);
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        let mut wake = Vec::with_capacity(EVENTS_PER_WAIT);
        let mut batch = Vec::new();
        // This thread runs the queue from here on; undone however the loop ends.
        struct Leave<'a>(&'a Reactor, &'a Arc<Parker>, *const Reactor);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                CURRENT.set(self.2);
                let mut threads = self.0.threads.lock().unwrap_or_else(PoisonError::into_inner);
                threads.retain(|p| !Arc::ptr_eq(p, self.1));
                self.0.thread_count.store(threads.len(), SeqCst);
            }
        }
        {
            let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
            threads.push(parker.clone());
            self.thread_count.store(threads.len(), SeqCst);
        }
        let _leave = Leave(self, &parker, CURRENT.replace(Arc::as_ptr(self)));
        // Rounds of work in a row without a look at the set: tasks that keep waking each other
        // (or a future that keeps yielding) must not keep the sockets' events waiting.
        let mut busy = 0;
        loop {
            let mut worked = false;
            if parker.notified.swap(false, SeqCst) {
                if poll(&mut cx) {
                    return;
                }
                worked = true;
            }
            worked |= self.run_queued(&mut batch);
            if worked && busy < BUSY_ROUNDS {
                busy += 1;
                continue;
            }
            busy = 0;
            let failed = self.state().failed.is_some();
            if failed || self.polling.compare_exchange(false, true, SeqCst, SeqCst).is_err() {
                if worked {
                    continue;
                }
                // Another thread waits in the set (or none can): park until woken.
                parker.state.store(PARKED, SeqCst);
                self.idle.fetch_add(1, SeqCst);
                if !parker.notified.load(SeqCst) && self.queue_is_empty() {
                    std::thread::park();
                }
                self.idle.fetch_sub(1, SeqCst);
                parker.state.store(RUNNING_STATE, SeqCst);
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
            let result = if !worked && wake.is_empty() && !parker.notified.load(SeqCst) {
                parker.state.store(POLLING, SeqCst);
                // A wake that came before the state said so has set `notified` instead; a task
                // queued by another thread has woken this one (`wake_a_thread`) the same way.
                let result = if parker.notified.load(SeqCst) || !self.queue_is_empty() {
                    Ok(0)
                } else {
                    let timeout = timeout.map_or(EpollTimeout::NONE, |t| {
                        // Rounded up: epoll counts in milliseconds, and waking early would spin.
                        EpollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(EpollTimeout::MAX)
                    });
                    self.idle.fetch_add(1, SeqCst);
                    let result = self.epoll.wait(&mut events, timeout);
                    self.idle.fetch_sub(1, SeqCst);
                    result
                };
                parker.state.store(RUNNING_STATE, SeqCst);
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

/// Rounds of work (the future polled, the queue run) in a row, after which the set is looked at
/// (without waiting) before the next.
const BUSY_ROUNDS: u32 = 16;

/// What a thread in [`Reactor::block_on`] is doing, for its waker.
pub(super) const RUNNING_STATE: u8 = 0;
pub(super) const PARKED: u8 = 1;
pub(super) const POLLING: u8 = 2;

/// A thread in [`Reactor::block_on`], and how to wake it.
#[derive(Debug)]
pub(super) struct Parker {
    thread: std::thread::Thread,
    /// Woken since the thread last polled its future.
    notified: AtomicBool,
    /// [`RUNNING_STATE`], [`PARKED`] or [`POLLING`].
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
