//! The stop signal: set once, heard by the accept loop and by every connection.
//!
//! Injected into [`crate::server::serve`], so a test stops a server by calling [`Shutdown::trigger`]
//! where the real binary's signal thread does it on SIGTERM or SIGINT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use event_listener::{Event, EventListener};

#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    event: Event,
}

impl Shutdown {
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

    /// Completes once the shutdown has started.
    pub async fn wait(&self) {
        if let Some(listener) = self.listen() {
            listener.await;
        }
    }
}
