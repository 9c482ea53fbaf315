//! The client side every runtime hands out: [`Handle`], its answers ([`Pending`]) and
//! its event subscriptions ([`Events`]). Written once, for threads and executors alike.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use grapevine::RequestId;

use crate::sync::Shared;
use crate::{
    Command, Delivery, Driver, Event, EventFilter, EventSink, Key, KeyChange, KeysSnapshot, Member,
    NodeId, RecvTimeoutError, Reply, RingSnapshot, Route, RuntimeError, StateEntry, StatsSnapshot,
};

/// How a runtime delivers a command to its loop (and wakes the loop if it must).
/// An error means the loop has stopped; the command is dropped, and with it its reply.
type SendCommand = dyn Fn(Command) -> Result<(), RuntimeError> + Send + Sync;

struct Inner {
    id: NodeId,
    name: String,
    event_capacity: usize,
    send: Box<SendCommand>,
}

/// A handle to a running node, the same type on every runtime. Cheap to clone; when
/// every clone is dropped the node stops gracefully in the background (as
/// [`Handle::shutdown`]: it keeps its ranges).
///
/// Right after `spawn`, the node is still joining: wait for [`Handle::ready`] before
/// sending requests.
///
/// Each question or change is sent to the node's loop when the method is called and
/// returns a [`Pending`] answer: `.await` it in async code, or `.wait()` for it on a
/// thread.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle to the node `driver` drives, for a runtime to return from its `spawn`.
    /// `send` delivers a command to the loop that owns `driver` (and wakes the loop if
    /// needed), or fails with [`RuntimeError::Stopped`] once the loop has ended.
    ///
    /// The loop must treat "every sender is gone" as [`Driver::handle_commands_closed`]:
    /// that is how dropping the last handle makes the node leave.
    pub fn new(
        driver: &Driver,
        send: impl Fn(Command) -> Result<(), RuntimeError> + Send + Sync + 'static,
    ) -> Self {
        Handle {
            inner: Arc::new(Inner {
                id: driver.id().clone(),
                name: driver.name().to_owned(),
                event_capacity: driver.event_capacity(),
                send: Box::new(send),
            }),
        }
    }

    fn send(&self, command: Command) -> Result<(), RuntimeError> {
        (self.inner.send)(command)
    }

    /// Sends the command `make` builds around a reply, and returns the pending answer.
    fn call<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Pending<T> {
        self.try_call(|reply: Reply<Result<T, RuntimeError>>| {
            make(Reply::new(move |value| reply.send(Ok(value))))
        })
    }

    /// Like [`Handle::call`], for commands whose answer may be a refusal.
    fn try_call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<Result<T, RuntimeError>>) -> Command,
    ) -> Pending<T> {
        let (reply, pending) = Pending::channel(|| Err(RuntimeError::Stopped));
        // If the loop has stopped, the command and its reply are dropped, and the
        // answer is `Stopped`.
        let _ = self.send(make(reply));
        pending
    }

    /// The node's identity (its bound address and generation).
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// The node's stable name (host ID): the one saved in its data directory, the
    /// one given in [`Options::name`](crate::Options::name), or one derived from its address.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node's bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.id.addr
    }

    /// Joins more seeds.
    pub fn join(&self, seeds: impl IntoIterator<Item = SocketAddr>) -> Result<(), RuntimeError> {
        self.send(Command::Join(seeds.into_iter().collect()))
    }

    /// Sets `key` in this node's state; gossip spreads it.
    pub fn set(&self, key: &str, value: &[u8]) -> Pending<()> {
        self.try_call(|reply| Command::Set {
            key: key.to_owned(),
            value: value.to_vec(),
            reply,
        })
    }

    /// Deletes `key` from this node's state.
    pub fn delete(&self, key: &str) -> Pending<()> {
        self.try_call(|reply| Command::Delete {
            key: key.to_owned(),
            reply,
        })
    }

    /// Reads `key` of the node at `node`, as this node knows it.
    pub fn get(&self, node: SocketAddr, key: &str) -> Pending<Option<Vec<u8>>> {
        self.call(|reply| Command::Get {
            node,
            key: key.to_owned(),
            reply,
        })
    }

    /// The live keys of the state of the node at `node`, as this node knows it
    /// (reserved `gv.` keys included), sorted by key.
    pub fn keys(&self, node: SocketAddr) -> Pending<Vec<StateEntry>> {
        self.call(|reply| Command::Keys { node, reply })
    }

    /// Sends a client request for `key` through this node. The answer arrives on the
    /// event subscribers as [`Event::Response`] (or [`Event::RequestFailed`]) with the
    /// returned id.
    pub fn request(&self, key: &[u8], payload: Vec<u8>) -> Pending<RequestId> {
        self.try_call(|reply| Command::Request {
            key: key.to_vec(),
            payload,
            reply,
        })
    }

    /// Sends a request for `key` to one chosen replica, natural or pending (as
    /// [`Handle::route`] names them): how a store writes every replica of a key. No
    /// fail-over; the answer (or [`Event::RequestFailed`]) arrives on the event
    /// subscribers with the returned id.
    pub fn request_to(&self, key: &[u8], to: NodeId, payload: Vec<u8>) -> Pending<RequestId> {
        self.try_call(|reply| Command::RequestTo {
            key: key.to_vec(),
            to,
            payload,
            reply,
        })
    }

    /// Answers an [`Event::Request`] this node received.
    pub fn respond(&self, id: RequestId, payload: Vec<u8>) -> Pending<()> {
        self.try_call(|reply| Command::Respond { id, payload, reply })
    }

    /// Every member this node knows, itself and tombstones included.
    pub fn members(&self) -> Pending<Vec<Member>> {
        self.call(Command::Members)
    }

    /// The node's counters.
    pub fn stats(&self) -> Pending<StatsSnapshot> {
        self.call(Command::Stats)
    }

    /// The token ring as this node sees it: tokens and each node's exact share.
    pub fn ring(&self) -> Pending<RingSnapshot> {
        self.call(Command::Ring)
    }

    /// Where `key` routes, as this node sees the ring.
    pub fn route(&self, key: &[u8]) -> Pending<Route> {
        self.call(|reply| Command::Route {
            key: key.to_vec(),
            reply,
        })
    }

    /// Subscribes to the node's events from now on ([`EventFilter::all`]: every
    /// event, but state changes of application keys only, not of the core's reserved
    /// `gv.` keys). The first subscriber also gets the events raised since the node
    /// started, so nothing is missed between the runtime's `spawn` and the first
    /// call. Each subscriber has its own bounded queue
    /// ([`Options::event_capacity`](crate::Options::event_capacity)); when it is full,
    /// new events are dropped for that subscriber and counted in
    /// [`StatsSnapshot::events_dropped`].
    pub fn events(&self) -> Events {
        self.subscribe(EventFilter::all())
    }

    /// Subscribes to the events that pass `filter`, as [`Handle::events`] does:
    /// [`EventFilter::keys`] for the changes of keys with a prefix (on any node),
    /// [`EventFilter::members`] for members' liveness.
    ///
    /// The subscription starts when the node handles it, in order with this handle's
    /// other calls (only the node's first subscriber gets the events before it): once
    /// a later call is answered (say [`Handle::keys`]), it is in place.
    ///
    /// ```no_run
    /// # fn f(node: grapevine_driver::Handle) {
    /// use grapevine_driver::{Event, EventFilter};
    /// for event in node.subscribe(EventFilter::keys("config/")) {
    ///     if let Event::StateChanged { node, key, value } = event {
    ///         println!("{} set {key} to {value:?}", node.addr);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self, filter: EventFilter) -> Events {
        let queue = Shared::new(Queue {
            events: VecDeque::new(),
            capacity: self.inner.event_capacity,
            sender_gone: false,
            receiver_gone: false,
        });
        let sender = QueueSender(queue.clone());
        // If the node has stopped, the sink is dropped and the subscription ends at once.
        let sink = EventSink::new(move |event: &Event| sender.push(event)).filtered(filter);
        let _ = self.send(Command::Subscribe(sink));
        Events { queue }
    }

    /// Answered once this node is ready to serve: it is Normal (holds its tokens)
    /// and every live member holds the same ring ([`grapevine::Node::is_ready`]).
    /// A request sent before that may fail with `NoReplica` (no ring yet) or go to a
    /// replica set that is still changing. On a thread, bound the wait:
    ///
    /// ```no_run
    /// # fn f(node: grapevine_driver::Handle) -> Result<(), grapevine_driver::RuntimeError> {
    /// use std::time::Duration;
    /// match node.ready().wait_timeout(Duration::from_secs(30)) {
    ///     Some(result) => result?,
    ///     None => eprintln!("not ready after 30 s"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn ready(&self) -> Pending<()> {
        self.try_call(Command::Ready)
    }

    /// Answered once this node has joined its cluster: it has a live member, or it
    /// has no seed (it is the first node). Until then the node keeps trying its seeds
    /// (see [`crate::join`]); bound the wait to give up, as `grapevine node
    /// --join-timeout` does.
    pub fn joined(&self) -> Pending<()> {
        self.try_call(Command::Joined)
    }

    /// The encryption keys installed on this node, by fingerprint ([`crate::keys::fingerprint`]),
    /// the primary first. Refused with [`RuntimeError::NotEncrypted`] on a node that
    /// runs without a keyring.
    pub fn keyring(&self) -> Pending<KeysSnapshot> {
        self.change_keys(None)
    }

    /// Installs `key` for opening datagrams. Rotation, as serf's `keys` command: install
    /// the new key on every node, then [`Handle::use_key`] on every node, then
    /// [`Handle::remove_key`] the old one on every node; at each step every node opens
    /// what every other seals.
    pub fn install_key(&self, key: Key) -> Pending<KeysSnapshot> {
        self.change_keys(Some(KeyChange::Install(key)))
    }

    /// Makes an installed key the primary: this node seals with it from now on.
    /// Refused (nothing changes) if the key is not installed.
    pub fn use_key(&self, key: Key) -> Pending<KeysSnapshot> {
        self.change_keys(Some(KeyChange::Use(key)))
    }

    /// Removes an installed key. Refused (nothing changes) if it is the primary or is
    /// not installed.
    pub fn remove_key(&self, key: Key) -> Pending<KeysSnapshot> {
        self.change_keys(Some(KeyChange::Remove(key)))
    }

    fn change_keys(&self, change: Option<KeyChange>) -> Pending<KeysSnapshot> {
        self.try_call(|reply| Command::Keyring { change, reply })
    }

    /// Decommissions this node: it turns Leaving, its ranges move to the other
    /// members, it turns Left, and its loop stops. Answered once the node reports
    /// Left, or with [`RuntimeError::Timeout`] after
    /// [`Options::decommission_timeout`](crate::Options::decommission_timeout)
    /// (the node keeps leaving). To stop without giving up ranges, use
    /// [`Handle::shutdown`].
    pub fn decommission(&self) -> Pending<()> {
        self.try_call(Command::Decommission)
    }

    /// Removes the dead member called `name` from the ring (Cassandra's
    /// `removenode`), from this node: its ranges move to the others. Refused with
    /// [`RuntimeError::Remove`] when the member is alive, unknown, already gone, or
    /// this node itself.
    pub fn remove_node(&self, name: &str) -> Pending<()> {
        self.try_call(|reply| Command::RemoveNode {
            name: name.to_owned(),
            reply,
        })
    }

    /// The node's inner state as JSON (see [`dump::dump_json`](crate::dump::dump_json)):
    /// members with suspicions, health, rumour queue, sync root, ring, requests.
    pub fn dump(&self) -> Pending<serde_json::Value> {
        self.call(Command::Dump)
    }

    /// Stops gracefully, keeping this node's ranges ([`grapevine::Node::shutdown`]):
    /// peers see "left", not "dead", and its tokens stay on the ring (shown down), so
    /// a restart with the same data directory moves no data. It keeps running until
    /// the news is spread (its "left" rumour sent its retransmit budget: at once when
    /// every member can be told directly, else within a few gossip rounds), at most
    /// [`Options::leave_timeout`](crate::Options::leave_timeout); the answer comes
    /// once the loop has ended.
    /// To hand the ranges over for good, use [`Handle::decommission`].
    pub fn shutdown(self) -> Pending<()> {
        self.stop(Command::Shutdown)
    }

    /// Stops at once without leaving, as if the process crashed: peers detect the
    /// node as failed. The answer comes once the loop has ended.
    pub fn abort(self) -> Pending<()> {
        self.stop(Command::Abort)
    }

    fn stop(self, command: Command) -> Pending<()> {
        // A stop reply the loop never reads means it has already ended: that is `Ok`.
        let (reply, pending) = Pending::channel(|| Ok(()));
        let _ = self.send(Command::WhenStopped(reply));
        let _ = self.send(command);
        pending
    }
}

/// The answer to one command, once the node's loop has applied it.
///
/// The command was sent when the method returning this was called; this only waits
/// for the answer. It is a [`Future`] for async code (any executor) and has a
/// blocking [`Pending::wait`] for threads. If the node stops before answering, the
/// answer is [`RuntimeError::Stopped`].
#[must_use = "the command is sent already: `.await` or `.wait()` for its answer"]
pub struct Pending<T> {
    slot: Arc<Shared<Slot<T>>>,
}

/// The answer, once given, and what a reply dropped unanswered means.
struct Slot<T> {
    answer: Option<Result<T, RuntimeError>>,
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

impl<T: Send + 'static> Pending<T> {
    /// A reply for the driver and the answer it fills. A reply dropped unanswered
    /// fills the answer with `if_dropped()`.
    fn channel(
        if_dropped: fn() -> Result<T, RuntimeError>,
    ) -> (Reply<Result<T, RuntimeError>>, Pending<T>) {
        let slot = Shared::new(Slot { answer: None });
        let filler = Filler {
            slot: Some(slot.clone()),
            if_dropped,
        };
        (
            Reply::new(move |answer| filler.fill(answer)),
            Pending { slot },
        )
    }
}

impl<T> Pending<T> {
    /// Blocks the thread until the answer arrives. Do not call it on an executor's
    /// thread (it would block that thread): `.await` there instead.
    pub fn wait(self) -> Result<T, RuntimeError> {
        self.slot
            .wait(None, |slot| slot.answer.take())
            .unwrap_or(Err(RuntimeError::Stopped))
    }

    /// Blocks the thread for at most `timeout`; `None` if no answer came in time.
    pub fn wait_timeout(self, timeout: Duration) -> Option<Result<T, RuntimeError>> {
        self.slot.wait(Some(timeout), |slot| slot.answer.take())
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, RuntimeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.slot.poll(cx, |slot| slot.answer.take())
    }
}

/// The driver's side of a [`Pending`]: fills it once, or on drop.
struct Filler<T> {
    slot: Option<Arc<Shared<Slot<T>>>>,
    if_dropped: fn() -> Result<T, RuntimeError>,
}

impl<T> Filler<T> {
    fn fill(mut self, answer: Result<T, RuntimeError>) {
        if let Some(slot) = self.slot.take() {
            slot.update(|slot| slot.answer = Some(answer));
        }
    }
}

impl<T> Drop for Filler<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let answer = (self.if_dropped)();
            slot.update(|slot| slot.answer = Some(answer));
        }
    }
}

/// One subscriber's bounded queue of events.
struct Queue {
    events: VecDeque<Event>,
    capacity: usize,
    /// The node has stopped (or never took the subscription): no more events.
    sender_gone: bool,
    /// The [`Events`] was dropped: the driver should forget this subscriber.
    receiver_gone: bool,
}

impl Queue {
    /// The next event, `Some(None)` once no event can come, `None` to keep waiting.
    fn next(&mut self) -> Option<Option<Event>> {
        match self.events.pop_front() {
            Some(event) => Some(Some(event)),
            None if self.sender_gone => Some(None),
            None => None,
        }
    }
}

/// The driver's side of an [`Events`].
struct QueueSender(Arc<Shared<Queue>>);

impl QueueSender {
    fn push(&self, event: &Event) -> Delivery {
        self.0.update(|queue| {
            if queue.receiver_gone {
                Delivery::Closed
            } else if queue.events.len() >= queue.capacity {
                Delivery::Full
            } else {
                queue.events.push_back(event.clone());
                Delivery::Delivered
            }
        })
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        self.0.update(|queue| queue.sender_gone = true);
    }
}

/// A subscription to a node's events, from [`Handle::events`]. Iterating blocks the
/// thread; async code awaits [`Events::recv`].
pub struct Events {
    queue: Arc<Shared<Queue>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Events")
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.queue.update(|queue| queue.receiver_gone = true);
    }
}

impl Events {
    /// The next event; `None` once the node has stopped. `.await` it, or `.wait()`
    /// for it on a thread. For a time limit in async code, wrap it in your runtime's
    /// timeout (`tokio::time::timeout`, `smol::future::or` with a `Timer`).
    pub fn recv(&self) -> Recv<'_> {
        Recv { events: self }
    }

    /// The next event, blocking the thread for at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        match self.queue.wait(Some(timeout), Queue::next) {
            Some(Some(event)) => Ok(event),
            Some(None) => Err(RecvTimeoutError::Closed),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.queue.update(|queue| queue.events.pop_front())
    }
}

impl Iterator for Events {
    type Item = Event;

    /// The next event, blocking the thread; `None` once the node has stopped.
    fn next(&mut self) -> Option<Event> {
        self.recv().wait()
    }
}

/// The next event of an [`Events`]: a [`Future`], or [`Recv::wait`] on a thread.
#[must_use = "`.await` or `.wait()` for the event"]
pub struct Recv<'a> {
    events: &'a Events,
}

impl fmt::Debug for Recv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recv")
    }
}

impl Recv<'_> {
    /// Blocks the thread until an event arrives; `None` once the node has stopped.
    pub fn wait(self) -> Option<Event> {
        self.events.queue.wait(None, Queue::next).flatten()
    }
}

impl Future for Recv<'_> {
    type Output = Option<Event>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.queue.poll(cx, Queue::next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, Options};
    use std::sync::mpsc;
    use std::task::Waker;

    fn driver() -> Driver {
        let options = Options::new("127.0.0.1:0".parse().unwrap()).event_capacity(2);
        Driver::new(&options, "127.0.0.1:9".parse().unwrap(), Clock::new()).unwrap()
    }

    /// A handle whose commands queue up for the test to apply by hand.
    fn handle(driver: &Driver) -> (Handle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        let handle = Handle::new(driver, move |command| {
            tx.send(command).map_err(|_| RuntimeError::Stopped)
        });
        (handle, rx)
    }

    fn poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn an_answer_is_awaited_or_waited_for() {
        let mut d = driver();
        let (handle, commands) = handle(&d);
        let mut members = handle.members();
        assert!(poll(&mut members).is_pending(), "nothing applied yet");
        let stats = handle.stats();
        for command in commands.try_iter() {
            d.handle_command(command);
        }
        assert!(matches!(poll(&mut members), Poll::Ready(Ok(m)) if m.len() == 1));
        assert_eq!(stats.wait().unwrap().members_known, 1);
    }

    #[test]
    fn an_unanswered_command_is_stopped_and_an_unanswered_stop_is_ok() {
        let d = driver();
        let (handle, commands) = handle(&d);
        let set = handle.set("k", b"v");
        let shutdown = handle.clone().shutdown();
        // The loop ends without reading its commands.
        drop(commands);
        assert!(matches!(set.wait(), Err(RuntimeError::Stopped)));
        assert!(shutdown.wait().is_ok());
        assert!(matches!(handle.ring().wait(), Err(RuntimeError::Stopped)));
        assert!(
            handle
                .members()
                .wait_timeout(Duration::from_secs(1))
                .is_some()
        );
    }

    #[test]
    fn dropping_the_driver_answers_when_stopped() {
        let mut d = driver();
        let (handle, commands) = handle(&d);
        let mut aborted = handle.abort();
        for command in commands.try_iter() {
            d.handle_command(command);
        }
        assert!(d.is_done());
        assert!(
            poll(&mut aborted).is_pending(),
            "the loop has not ended yet"
        );
        drop(d);
        assert!(matches!(poll(&mut aborted), Poll::Ready(Ok(()))));
    }

    #[test]
    fn a_full_queue_drops_and_a_dropped_subscription_closes() {
        let d = driver();
        let (handle, commands) = handle(&d);
        let events = handle.events();
        let Ok(Command::Subscribe(mut sink)) = commands.try_recv() else {
            panic!("events() subscribes");
        };
        let event = Event::RingAgreed { digest: 1 };
        assert_eq!(sink.deliver(&event), Delivery::Delivered);
        assert_eq!(sink.deliver(&event), Delivery::Delivered);
        assert_eq!(sink.deliver(&event), Delivery::Full, "capacity is 2");
        assert!(events.try_recv().is_some());
        assert!(poll(&mut events.recv()).is_ready());
        assert_eq!(
            events.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        );
        drop(events);
        assert_eq!(sink.deliver(&event), Delivery::Closed);

        let events = handle.events();
        drop(commands.try_recv());
        assert_eq!(events.recv().wait(), None, "the node never took it");
    }
}
