//! The application the CLI runs on each node: it answers requests with the node's
//! own address and passes every other event on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use grapevine_driver::{Event, Printable, RecvTimeoutError};

use crate::runtime::Node;

/// The payload a node answers every request with: `served by ADDR`.
pub fn answer(node: &Node) -> Vec<u8> {
    format!("served by {}", node.local_addr()).into_bytes()
}

/// A thread serving one node's events until stopped.
#[derive(Debug)]
pub struct App {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl App {
    /// Subscribes to `node`'s events; answers each [`Event::Request`] and hands every
    /// other event to `on_event`.
    pub fn start(node: &Node, mut on_event: impl FnMut(Event) + Send + 'static) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let events = node.events();
        let node = node.clone();
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("app {}", node.local_addr()))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match events.recv_timeout(Duration::from_millis(50)) {
                        Ok(Event::Request { id, key, .. }) => {
                            tracing::debug!(%id, key = %Printable(&key), "serving request");
                            if let Err(e) = node.respond(id, answer(&node)).wait() {
                                tracing::debug!(%id, error = %e, "could not respond");
                            }
                        }
                        Ok(event) => on_event(event),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Closed) => break,
                    }
                }
            })
            .ok();
        App { stop, thread }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
