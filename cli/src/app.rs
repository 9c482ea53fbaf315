//! The application the CLI runs on each node: it answers requests (with the node's
//! own address, or from its [`Store`]) and passes every other event on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use grapevine_driver::{Event, Printable, RecvTimeoutError};

use crate::runtime::Node;
use crate::store::Store;

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
    pub fn start(node: &Node, on_event: impl FnMut(Event) + Send + 'static) -> App {
        App::run(node, None, on_event)
    }

    /// Like [`App::start`], with `store` serving the requests and taking the
    /// answers to this node's own requests.
    pub fn with_store(
        node: &Node,
        store: Store,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> App {
        App::run(node, Some(store), on_event)
    }

    fn run(
        node: &Node,
        store: Option<Store>,
        mut on_event: impl FnMut(Event) + Send + 'static,
    ) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let events = node.events();
        let node = node.clone();
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("app {}", node.local_addr()))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match events.recv_timeout(Duration::from_millis(50)) {
                        Ok(Event::Request { id, key, payload }) => {
                            tracing::debug!(%id, key = %Printable(&key), "serving request");
                            let answer = match &store {
                                Some(store) => store.serve(&node, &key, &payload),
                                None => answer(&node),
                            };
                            if let Err(e) = node.respond(id, answer).wait() {
                                tracing::debug!(%id, error = %e, "could not respond");
                            }
                        }
                        Ok(event) => {
                            let event = match &store {
                                Some(store) => store.on_event(event),
                                None => Some(event),
                            };
                            if let Some(event) = event {
                                on_event(event);
                            }
                        }
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
