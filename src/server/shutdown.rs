//! The stop signal: set once, heard by the accept loop and by every connection.
//!
//! Injected into [`crate::server::serve`], so a test stops a server by calling [`Shutdown::trigger`]
//! where the real binary's signal thread does it on SIGTERM or SIGINT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use event_listener::{Event, EventListener};
use nix::sys::signal::Signal;

use crate::{Error, notice, sys};

/// A stop that is set once and heard by everyone who listens; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    event: Event,
}

impl Shutdown {
    /// A shutdown not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the shutdown; later calls do nothing. Returns whether this call started it.
    pub fn trigger(&self) -> bool {
        let first = !self.0.triggered.swap(true, Ordering::SeqCst);
        if first {
            self.0.event.notify(usize::MAX);
        }
        first
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(Ordering::SeqCst)
    }

    /// A listener that completes on [`trigger`](Self::trigger), or `None` if that already
    /// happened. Polling one listener repeatedly costs nothing, unlike a new future per wait.
    pub fn listen(&self) -> Option<EventListener> {
        let listener = self.0.event.listen();
        // Checked after listening, so that a trigger between the two cannot be missed.
        (!self.is_triggered()).then_some(listener)
    }

    /// Blocks SIGTERM and SIGINT and starts a thread, named `thread_name`, that triggers this
    /// shutdown when one arrives (and logs it, before the trigger, so that the line comes before
    /// what the stop sets off). Must be called before any other thread starts (see
    /// `sys::block_signals`).
    pub fn on_signals(&self, thread_name: &str) -> Result<(), Error> {
        let signals = sys::block_signals(&[Signal::SIGTERM, Signal::SIGINT])?;
        let stop = self.clone();
        std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                while let Some(signal) = sys::wait_for_signal(&signals) {
                    if stop.is_triggered() {
                        notice!("received {signal} again: already stopping");
                    } else {
                        notice!("received {signal}: stopping");
                    }
                    stop.trigger();
                }
            })
            .map_err(|e| Error::new(format!("cannot start the signal thread: {e}")))?;
        Ok(())
    }

    /// Completes once the shutdown has started.
    pub async fn wait(&self) {
        if let Some(listener) = self.listen() {
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_after_listening_is_heard() {
        let s = Shutdown::new();
        let listener = s.listen().expect("not yet triggered");
        assert!(s.trigger());
        // The listener taken before the trigger completes.
        smol::block_on(listener);
        assert!(!s.trigger(), "only the first trigger starts the shutdown");
    }

    #[test]
    fn listening_after_the_trigger_says_so_instead_of_waiting() {
        let s = Shutdown::new();
        s.clone().trigger();
        // A listener made now would never be notified: listen() must see the flag.
        assert!(s.listen().is_none());
        smol::block_on(s.wait());
    }
}
