//! Waiting without a runtime: a small state behind a mutex that a blocked thread
//! (through a [`Condvar`]) and a task (through its [`Waker`]) can both wait on.
//!
//! The handle's answers ([`Pending`](crate::Pending)) and event queues
//! ([`Events`](crate::Events)) are built on it, so one type serves std threads
//! (`.wait()`) and any executor (`.await`) alike.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A state `S` that changes under [`Shared::update`] and is waited on with
/// [`Shared::poll`] (async) or [`Shared::wait`] (blocking).
pub(crate) struct Shared<S> {
    state: Mutex<Guarded<S>>,
    changed: Condvar,
}

struct Guarded<S> {
    value: S,
    /// The tasks to wake on the next change.
    wakers: Vec<Waker>,
}

impl<S> Shared<S> {
    pub(crate) fn new(value: S) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(Guarded {
                value,
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
        })
    }

    /// A panic elsewhere never leaves `S` half-updated (every update is one small
    /// assignment), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Guarded<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state, then wakes every waiting thread and task.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut S) -> R) -> R {
        let (result, wakers) = {
            let mut guard = self.lock();
            let result = change(&mut guard.value);
            (result, std::mem::take(&mut guard.wakers))
        };
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
        result
    }

    /// `Ready` with what `ready` takes from the state, or `Pending` with the task
    /// registered for the next change.
    pub(crate) fn poll<R>(
        &self,
        cx: &mut Context<'_>,
        ready: impl FnOnce(&mut S) -> Option<R>,
    ) -> Poll<R> {
        let mut guard = self.lock();
        if let Some(result) = ready(&mut guard.value) {
            return Poll::Ready(result);
        }
        if !guard.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            guard.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Blocks the thread until `ready` takes something from the state, or `timeout`
    /// passes (`None`: no limit).
    #[allow(clippy::disallowed_methods, reason = "a blocking wait reads the clock")]
    pub(crate) fn wait<R>(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut(&mut S) -> Option<R>,
    ) -> Option<R> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut guard = self.lock();
        loop {
            if let Some(result) = ready(&mut guard.value) {
                return Some(result);
            }
            guard = match (timeout, deadline) {
                (Some(_), Some(at)) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(guard, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                // No limit, or one too far away to represent.
                _ => self
                    .changed
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}
