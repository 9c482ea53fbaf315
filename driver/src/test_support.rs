//! The cluster scenarios every runtime's tests run (feature `test-support`; not a
//! stable API). They are blocking: they wait on [`Pending`](crate::Pending) answers
//! from the test's thread, while the runtime under test drives the nodes.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use crate::{
    Clock, Config, Event, Handle, Options, RecvTimeoutError, RequestId, RuntimeError, Status,
};

/// A runtime's `spawn`.
pub trait Spawn: Fn(Options) -> Result<Handle, RuntimeError> {}
impl<F: Fn(Options) -> Result<Handle, RuntimeError>> Spawn for F {}

const DEADLINE: Duration = Duration::from_secs(20);
const NODES: usize = 5;

/// Short protocol timers, so the scenarios take seconds.
pub fn fast_config(cluster_name: &str) -> Config {
    let mut config = Config::lan(cluster_name);
    config.probe_interval = Duration::from_millis(200);
    config.probe_timeout = Duration::from_millis(100);
    config.gossip_interval = Duration::from_millis(200);
    config.request_timeout = Duration::from_millis(300);
    config
}

/// Polls `done` until it holds; panics after [`DEADLINE`]. Returns the time it took.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let clock = Clock::new();
    let start = clock.now();
    loop {
        if done() {
            return clock.now() - start;
        }
        assert!(
            clock.now() - start < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

type Responses = Arc<Mutex<HashMap<(usize, RequestId), (SocketAddr, Vec<u8>)>>>;

/// Answers requests with the node's address and records the responses it gets.
fn serve(index: usize, node: &Handle, responses: Responses) -> thread::JoinHandle<()> {
    let events = node.events();
    let node = node.clone();
    thread::spawn(move || {
        loop {
            match events.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Request { id, .. }) => {
                    let _ = node
                        .respond(id, node.local_addr().to_string().into_bytes())
                        .wait();
                }
                Ok(Event::Response { id, from, payload }) => {
                    responses
                        .lock()
                        .unwrap()
                        .insert((index, id), (from.addr, payload));
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Closed) => return,
            }
        }
    })
}

fn alive(node: &Handle) -> usize {
    node.members()
        .wait()
        .unwrap()
        .iter()
        .filter(|m| m.state == Status::Alive)
        .count()
}

fn rings_agree(nodes: &[&Handle], owners: usize) -> bool {
    let rings: Vec<_> = nodes.iter().map(|n| n.ring().wait().unwrap()).collect();
    rings
        .iter()
        .all(|r| r.ownership.len() == owners && r.digest == rings[0].digest)
}

/// Five nodes on real UDP (127.0.0.1, ephemeral ports): they converge and become
/// ready, one crashes and the others declare it dead without moving its ranges (the
/// ring digest is unchanged), and a request sent to any node reaches a live replica
/// of its key.
pub fn five_nodes_converge_detect_a_failure_and_route_requests(
    spawn: impl Spawn,
    cluster_name: &str,
) {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let responses: Responses = Arc::default();
    let mut nodes: Vec<Handle> = Vec::new();
    let mut servers = Vec::new();
    for i in 0..NODES {
        let mut options = Options::new(local)
            .config(fast_config(cluster_name))
            .rng_seed(i as u64);
        if let Some(first) = nodes.first() {
            options = options.seed(first.local_addr());
        }
        let node = spawn(options).unwrap();
        servers.push(serve(i, &node, responses.clone()));
        nodes.push(node);
    }

    let converged = wait_until("5 nodes to see 5 alive members", || {
        nodes.iter().all(|n| alive(n) == NODES)
    });
    let all: Vec<&Handle> = nodes.iter().collect();
    let agreed = wait_until("the ring to agree", || rings_agree(&all, NODES));
    eprintln!("converged in {converged:?}, ring agreed in {agreed:?}");
    for node in &nodes {
        node.ready()
            .wait_timeout(DEADLINE)
            .expect("ready in time")
            .unwrap();
    }
    let before = nodes[0].ring().wait().unwrap();

    let victim = nodes.pop().unwrap();
    let victim_addr = victim.local_addr();
    let victim_name = victim.name().to_owned();
    victim.abort().wait().unwrap();
    let detected = wait_until("the survivors to declare the stopped node dead", || {
        nodes.iter().all(|n| {
            n.members()
                .wait()
                .unwrap()
                .iter()
                .any(|m| m.addr() == victim_addr && m.state == Status::Dead)
        })
    });
    eprintln!("stopped node declared dead by all in {detected:?}");
    let survivors: Vec<&Handle> = nodes.iter().collect();
    wait_until("the survivors' rings to agree", || {
        rings_agree(&survivors, NODES)
    });
    let after = nodes[0].ring().wait().unwrap();
    assert_eq!(after.digest, before.digest, "a crash moved ranges");
    assert_eq!(after.tokens, before.tokens, "a crash moved tokens");
    let down = after
        .ownership
        .iter()
        .find(|o| o.name == victim_name)
        .expect("the crashed node keeps its place");
    assert_eq!(down.state, Status::Dead);
    assert_eq!(down.topology, grapevine::Topology::Normal);
    let members = nodes[0].members().wait().unwrap();
    let named = members.iter().find(|m| m.addr() == victim_addr).unwrap();
    assert_eq!(named.name.as_deref(), Some(victim_name.as_str()));

    for k in 0..20 {
        let key = format!("key-{k}");
        let via_index = k % nodes.len();
        let via = &nodes[via_index];
        let route = via.route(key.as_bytes()).wait().unwrap();
        let replicas: Vec<SocketAddr> = route.replicas.iter().map(|r| r.id.addr).collect();
        // A replica serves the request itself; any other node forwards it to the
        // first live natural replica (the crashed one stays a replica, shown dead).
        let expected = if replicas.contains(&via.local_addr()) {
            via.local_addr()
        } else {
            route
                .replicas
                .iter()
                .find(|r| r.state == Status::Alive)
                .expect("a live replica")
                .id
                .addr
        };
        let id = via
            .request(key.as_bytes(), b"ping".to_vec())
            .wait()
            .unwrap();
        wait_until(&format!("the response to {key}"), || {
            responses.lock().unwrap().contains_key(&(via_index, id))
        });
        let (from, payload) = responses.lock().unwrap()[&(via_index, id)].clone();
        assert_eq!(
            from,
            expected,
            "{key} via {} was served by {from}",
            via.local_addr()
        );
        assert_eq!(payload, expected.to_string().into_bytes());
    }
    let forwarded: u64 = nodes
        .iter()
        .map(|n| n.stats().wait().unwrap().core.requests_forwarded)
        .sum();
    assert!(forwarded > 0, "no request was forwarded");
    for node in &nodes {
        let stats = node.stats().wait().unwrap();
        assert_eq!(stats.send_errors, 0, "{stats:?}");
        assert_eq!(stats.events_dropped, 0, "{stats:?}");
    }

    for node in nodes {
        node.shutdown().wait().unwrap();
    }
    for server in servers {
        server.join().unwrap();
    }
}

/// A second node on a port in use fails to start, with [`RuntimeError::Bind`].
pub fn binding_a_port_in_use_is_an_error(spawn: impl Spawn) {
    let first = spawn(Options::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let err = spawn(Options::new(first.local_addr())).unwrap_err();
    assert!(matches!(err, RuntimeError::Bind { .. }), "{err}");
    first.abort().wait().unwrap();
}

/// Once a node has stopped, its other handles get [`RuntimeError::Stopped`], and
/// stopping it again is not an error.
pub fn commands_after_stop_report_stopped(spawn: impl Spawn) {
    let node = spawn(Options::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let other = node.clone();
    let third = node.clone();
    node.abort().wait().unwrap();
    assert!(matches!(other.members().wait(), Err(RuntimeError::Stopped)));
    assert!(matches!(
        other.set("k", b"v").wait(),
        Err(RuntimeError::Stopped)
    ));
    assert!(
        other.events().recv().wait().is_none(),
        "no event ever comes"
    );
    third.shutdown().wait().unwrap();
}

/// `future`'s output, or `None` if `timer` finishes first (a runtime-free select).
async fn within<T>(timer: impl Future<Output = ()>, future: impl Future<Output = T>) -> Option<T> {
    let mut timer = pin!(timer);
    let mut future = pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(value) => Poll::Ready(Some(value)),
        Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
    })
    .await
}

/// The same handle awaited on an executor (`sleep` is the runtime's timer): a write
/// spreads by gossip, events arrive through `recv().await`, and stopping ends both
/// the node and its subscriptions.
pub async fn two_nodes_over_await<F: Future<Output = ()>>(
    spawn: impl Spawn,
    sleep: impl Fn(Duration) -> F,
) {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = fast_config("await-test");
    let a = spawn(Options::new(local).config(config.clone())).unwrap();
    let a_again = a.clone();
    let a_addr = a.local_addr();
    a.set("colour", b"green").await.unwrap();
    let b = spawn(Options::new(local).config(config).seed(a_addr)).unwrap();
    let events = b.events();

    let joined = within(sleep(DEADLINE), async {
        while let Some(event) = events.recv().await {
            if matches!(event, Event::MemberJoined(id) if id.addr == a_addr) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(joined, Some(true), "b never saw a join");

    let clock = Clock::new();
    let start = clock.now();
    while b.get(a_addr, "colour").await.unwrap().as_deref() != Some(&b"green"[..]) {
        assert!(clock.now() - start < DEADLINE, "the write never spread");
        sleep(Duration::from_millis(10)).await;
    }

    a.abort().await.unwrap();
    assert!(matches!(
        a_again.members().await,
        Err(RuntimeError::Stopped)
    ));
    b.shutdown().await.unwrap();
    let ended = within(sleep(DEADLINE), async {
        while events.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_some(), "the subscription outlived its node");
}

/// A fresh, empty directory under the system's temp dir (removed by [`TempDir`]'s drop).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "grapevine-{tag}-{}-{n}-{}",
            std::process::id(),
            Clock::generation()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Three nodes become ready ([`Handle::ready`]), and a request sent right after is served.
pub fn three_nodes_become_ready(spawn: impl Spawn, cluster_name: &str) {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let responses: Responses = Arc::default();
    let mut nodes: Vec<Handle> = Vec::new();
    let mut servers = Vec::new();
    for i in 0..3 {
        let mut options = Options::new(local)
            .config(fast_config(cluster_name))
            .name(format!("ready-{i}"));
        if let Some(first) = nodes.first() {
            options = options.seed(first.local_addr());
        }
        let node = spawn(options).unwrap();
        servers.push(serve(i, &node, responses.clone()));
        nodes.push(node);
    }
    let waits: Vec<_> = nodes.iter().map(Handle::ready).collect();
    for (i, wait) in waits.into_iter().enumerate() {
        wait.wait_timeout(DEADLINE)
            .unwrap_or_else(|| panic!("node {i} not ready within {DEADLINE:?}"))
            .unwrap();
    }
    // A node answered `ready` when it was: the first one possibly alone, before the
    // others turned Normal and changed the ring. Each holds the final ring agreed
    // within a few gossip rounds (the last bits of the agreement reach the nodes one
    // round apart).
    wait_until("every node ready with the same ring of 3", || {
        let rings: Vec<_> = nodes.iter().map(|n| n.ring().wait().unwrap()).collect();
        rings.iter().all(|r| r.ready && r.digest == rings[0].digest)
    });
    let rings: Vec<_> = nodes.iter().map(|n| n.ring().wait().unwrap()).collect();
    for (node, ring) in nodes.iter().zip(&rings) {
        assert!(ring.ready, "{}", node.name());
        assert_eq!(ring.name, node.name());
        assert_eq!(ring.digest, rings[0].digest);
        assert_eq!(
            ring.ownership
                .iter()
                .filter(|o| o.topology == grapevine::Topology::Normal)
                .count(),
            3
        );
    }
    // Already ready: answered at once.
    nodes[0]
        .ready()
        .wait_timeout(Duration::from_secs(1))
        .expect("answered at once")
        .unwrap();
    let id = nodes[1].request(b"any-key", b"x".to_vec()).wait().unwrap();
    wait_until("the response to a request sent once ready", || {
        responses.lock().unwrap().contains_key(&(1, id))
    });
    for node in nodes {
        node.abort().wait().unwrap();
    }
    for server in servers {
        server.join().unwrap();
    }
}

/// Application events and keys, then a graceful stop: on three nodes, the default
/// subscription never sees the core's reserved `gv.` keys (which the nodes do
/// write while they take tokens), a subscription with a reserved-keys filter does, a
/// key-prefix subscription sees only its keys and a members subscription only
/// liveness; [`Handle::keys`] lists another node's keys; and
/// [`Handle::shutdown`] returns as soon as the leave is spread (every member told
/// directly), far below the leave timeout, with the others seeing it left.
pub fn application_events_keys_and_a_prompt_shutdown(spawn: impl Spawn, cluster_name: &str) {
    use crate::EventFilter;
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let leave_timeout = Duration::from_secs(10);
    let mut nodes: Vec<Handle> = Vec::new();
    let mut subscriptions = Vec::new();
    for i in 0..3 {
        let mut options = Options::new(local)
            .config(fast_config(cluster_name))
            .leave_timeout(leave_timeout);
        if let Some(first) = nodes.first() {
            options = options.seed(first.local_addr());
        }
        let node = spawn(options).unwrap();
        if i == 0 {
            // Subscribed before anything happens: the first one gets the backlog too.
            subscriptions.push(node.events());
            subscriptions.push(node.subscribe(EventFilter::all().with_reserved_keys()));
            subscriptions.push(node.subscribe(EventFilter::keys("user/")));
            subscriptions.push(node.subscribe(EventFilter::members()));
            // A subscription starts when the node handles it, and the others join at
            // once: a call answered after them means they are in place (under load
            // the runtime could otherwise see the joins first, and miss them).
            node.keys(node.local_addr()).wait().unwrap();
        }
        nodes.push(node);
    }
    for node in &nodes {
        node.ready()
            .wait_timeout(DEADLINE)
            .expect("ready in time")
            .unwrap();
    }
    let writer = &nodes[2];
    writer.set("user/1", b"ada").wait().unwrap();
    writer.set("order/9", b"\xff\x00").wait().unwrap();
    let addr = writer.local_addr();
    wait_until("the writes to reach node 0", || {
        nodes[0].get(addr, "order/9").wait().unwrap().is_some()
            && nodes[0].get(addr, "user/1").wait().unwrap().is_some()
    });
    let keys: Vec<(String, Vec<u8>)> = nodes[0]
        .keys(addr)
        .wait()
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    // The core keeps no key of its own in state: `keys` lists exactly the writes.
    let app: Vec<&(String, Vec<u8>)> = keys.iter().collect();
    assert_eq!(
        app,
        [
            &("order/9".to_owned(), b"\xff\x00".to_vec()),
            &("user/1".to_owned(), b"ada".to_vec()),
        ],
        "sorted"
    );
    let drain = |events: &crate::Events| {
        let mut all = Vec::new();
        while let Ok(event) = events.recv_timeout(Duration::from_millis(200)) {
            all.push(event);
        }
        all
    };
    let changed_keys = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::StateChanged { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    };
    let [app, everything, users, members] = &subscriptions[..] else {
        unreachable!()
    };
    let (app, everything, users, members) =
        (drain(app), drain(everything), drain(users), drain(members));
    let app_keys = changed_keys(&app);
    assert!(app_keys.contains(&"user/1".to_owned()), "{app_keys:?}");
    assert!(app_keys.contains(&"order/9".to_owned()), "{app_keys:?}");
    assert!(
        app_keys.iter().all(|k| !k.starts_with("gv.")),
        "{app_keys:?}"
    );
    assert!(
        app.iter().any(|e| matches!(e, Event::MemberJoined(_))),
        "the default subscription sees membership too"
    );
    // Reserved keys are let through when asked for (filter.rs tests that); the core
    // writes none, so this subscription sees the application's keys like the rest.
    assert_eq!(changed_keys(&everything), app_keys, "{everything:?}");
    assert_eq!(changed_keys(&users), ["user/1"], "{users:?}");
    assert_eq!(users.len(), 1, "only key changes: {users:?}");
    assert!(!members.is_empty());
    assert!(
        members.iter().all(|e| matches!(
            e,
            Event::MemberJoined(_)
                | Event::MemberSuspect(_)
                | Event::MemberRecovered(_)
                | Event::MemberDied(_)
                | Event::MemberLeft(_)
        )),
        "{members:?}"
    );

    let leaver = nodes.pop().unwrap();
    let leaver_addr = leaver.local_addr();
    let clock = Clock::new();
    let start = clock.now();
    leaver.shutdown().wait().unwrap();
    let took = clock.now() - start;
    assert!(
        took < Duration::from_secs(1),
        "shutdown took {took:?}: it should end once the leave is spread, not at the {leave_timeout:?} bound"
    );
    wait_until("the others to see the leaver left", || {
        nodes.iter().all(|n| {
            n.members()
                .wait()
                .unwrap()
                .iter()
                .any(|m| m.addr() == leaver_addr && m.state == Status::Left)
        })
    });
    println!("shutdown of 1 of 3 nodes returned after {took:?}");
    for node in nodes {
        node.abort().wait().unwrap();
    }
}

/// A data directory keeps a node's name (chosen once) and tokens across restarts,
/// and a corrupt or another cluster's directory is refused with a clear error.
pub fn data_dir_keeps_identity_and_refuses_bad_ones(spawn: impl Spawn, cluster_name: &str) {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let dir = TempDir::new("data-dir");
    let options = || {
        Options::new(local)
            .config(fast_config(cluster_name))
            .data_dir(&dir.0)
    };
    let node = spawn(options()).unwrap();
    let name = node.name().to_owned();
    assert_eq!(name.len(), 16, "a generated name: {name}");
    node.ready()
        .wait_timeout(DEADLINE)
        .expect("a lone node gets ready")
        .unwrap();
    let tokens: Vec<i64> = node
        .ring()
        .wait()
        .unwrap()
        .tokens
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert!(!tokens.is_empty());
    node.abort().wait().unwrap();

    // The same name and tokens on restart, at another port.
    let node = spawn(options()).unwrap();
    assert_eq!(node.name(), name, "the name is chosen once");
    node.ready()
        .wait_timeout(DEADLINE)
        .expect("ready again")
        .unwrap();
    let again: Vec<i64> = node
        .ring()
        .wait()
        .unwrap()
        .tokens
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(again, tokens, "a restart takes back exactly its tokens");
    node.abort().wait().unwrap();

    // Another name than the saved one.
    let err = spawn(options().name("someone-else")).unwrap_err();
    assert!(matches!(err, RuntimeError::NameMismatch { .. }), "{err}");
    assert!(err.to_string().contains("someone-else"), "{err}");

    // Another cluster's directory.
    let err = spawn(
        Options::new(local)
            .config(fast_config("another-cluster"))
            .data_dir(&dir.0),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::ForeignDataDir { .. }), "{err}");
    assert!(err.to_string().contains("another-cluster"), "{err}");

    // A corrupt file is refused and left alone.
    let file = dir.0.join(crate::PLACEMENT_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    let damaged = text.replacen(&name, "0000000000000000", 1);
    std::fs::write(&file, &damaged).unwrap();
    let err = spawn(options()).unwrap_err();
    assert!(
        matches!(err, RuntimeError::CorruptPlacement { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), damaged);
    std::fs::write(&file, "{ not json").unwrap();
    let err = spawn(options()).unwrap_err();
    assert!(
        matches!(err, RuntimeError::CorruptPlacement { .. }),
        "{err}"
    );
}

/// A decommission resolves once the node reports Left, its tokens leave the ring,
/// and a removal by name is refused for a live node and accepted for a dead one.
pub fn decommission_and_remove_node(spawn: impl Spawn, cluster_name: &str) {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut nodes: Vec<Handle> = Vec::new();
    for i in 0..4 {
        let mut options = Options::new(local)
            .config(fast_config(cluster_name))
            .name(format!("node-{i}"));
        if let Some(first) = nodes.first() {
            options = options.seed(first.local_addr());
        }
        nodes.push(spawn(options).unwrap());
    }
    for node in &nodes {
        node.ready().wait_timeout(DEADLINE).expect("ready").unwrap();
    }
    let on_ring = |node: &Handle, name: &str| {
        node.ring()
            .wait()
            .unwrap()
            .tokens
            .iter()
            .any(|(_, owner)| owner == name)
    };

    // A live node cannot be removed, nor can a node remove itself or a stranger.
    let err = nodes[0].remove_node("node-1").wait().unwrap_err();
    assert!(
        matches!(err, RuntimeError::Remove(grapevine::RemoveError::NotDead)),
        "{err}"
    );
    let err = nodes[0].remove_node("node-0").wait().unwrap_err();
    assert!(
        matches!(err, RuntimeError::Remove(grapevine::RemoveError::IsSelf)),
        "{err}"
    );
    let err = nodes[0].remove_node("nobody").wait().unwrap_err();
    assert!(
        matches!(err, RuntimeError::Remove(grapevine::RemoveError::Unknown)),
        "{err}"
    );

    // Decommission node-3: answered once it is Left; its tokens leave every ring.
    let leaver = nodes.pop().unwrap();
    leaver
        .decommission()
        .wait_timeout(DEADLINE)
        .expect("decommissioned in time")
        .unwrap();
    wait_until("node-3's tokens to leave the ring", || {
        nodes.iter().all(|n| !on_ring(n, "node-3"))
    });
    drop(leaver);

    // Crash node-2, then remove it from node-0 once it is dead.
    let victim = nodes.pop().unwrap();
    let victim_addr = victim.local_addr();
    victim.abort().wait().unwrap();
    wait_until("node-2 to be declared dead", || {
        nodes[0]
            .members()
            .wait()
            .unwrap()
            .iter()
            .any(|m| m.addr() == victim_addr && m.state == Status::Dead)
    });
    assert!(on_ring(&nodes[1], "node-2"), "a crash moves nothing");
    nodes[0].remove_node("node-2").wait().unwrap();
    wait_until("node-2's tokens to leave the ring", || {
        nodes.iter().all(|n| !on_ring(n, "node-2"))
    });
    for node in nodes {
        node.abort().wait().unwrap();
    }
}

/// What [`flood_from_many_sources_is_dropped`] saw.
#[derive(Clone, Copy, Debug)]
pub struct FloodFigures {
    /// Distinct source addresses that sent.
    pub sources: usize,
    /// Datagrams sent (one foreign, one random per source).
    pub sent: usize,
    /// Drops the node counted, by reason.
    pub foreign_cluster: u64,
    /// Every other drop (bad magic, truncated, malformed, ...).
    pub other_drops: u64,
    /// The runtime's tracked sources once the flood was over.
    pub tracked_sources: usize,
    /// How long the second node took to join after the flood.
    pub join_after: Duration,
}

/// A node flooded from `sources` distinct loopback addresses (127.1.x.y, one socket
/// each; Linux routes all of 127/8 to loopback), each sending one well-formed datagram
/// of another cluster and one of random bytes, keeps working: it still answers, its
/// drop counters account for the flood, it admitted none of the senders, the sources
/// the runtime tracks stay bounded, and a real node joins it afterwards.
pub fn flood_from_many_sources_is_dropped(
    spawn: impl Spawn,
    cluster_name: &str,
    sources: usize,
) -> FloodFigures {
    use grapevine::wire::{BodyBuilder, HEADER_LEN, Header, Message};
    use std::net::{Ipv4Addr, UdpSocket};

    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let node = spawn(Options::new(local).config(fast_config(cluster_name))).unwrap();
    let target = node.local_addr();
    let foreign_id = grapevine::hash::cluster_id("not-this-cluster");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut sent = 0;
    for i in 0..sources {
        let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1);
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        let me = socket.local_addr().unwrap();
        // Well-formed, of another cluster.
        let mut foreign = Vec::new();
        Header {
            flags: 0,
            cluster_id: foreign_id,
        }
        .write(&mut foreign);
        let mut body = BodyBuilder::new(&grapevine::NodeId::new(me, 1), 1200);
        body.push(&Message::<SocketAddr>::Ping { seq: i as u32 });
        foreign.extend_from_slice(&body.finish());
        // Random bytes, sometimes behind our magic so that deeper checks see them.
        let len = (next() % 300) as usize + 1;
        let mut random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && random.len() > HEADER_LEN {
            random[..2].copy_from_slice(&grapevine::wire::MAGIC);
        }
        for datagram in [&foreign, &random] {
            if socket.send_to(datagram, target).is_ok() {
                sent += 1;
            }
        }
        // Pace the flood a little so the loopback's receive buffer keeps up.
        if i % 100 == 99 {
            thread::sleep(Duration::from_millis(5));
        }
    }

    // The node counts what reached it (loopback can still drop a few under load).
    let mut stats = node.stats().wait().unwrap();
    wait_until("the flood to be counted", || {
        stats = node.stats().wait().unwrap();
        stats.core.drops.total() as usize >= sent * 9 / 10
    });
    thread::sleep(Duration::from_millis(200));
    let stats = node.stats().wait().unwrap();
    assert!(
        stats.core.drops.foreign_cluster as usize >= sources * 9 / 10,
        "foreign datagrams not counted: {:?}",
        stats.core.drops
    );
    let members = node.members().wait().unwrap();
    assert_eq!(
        members.len(),
        1,
        "a flooding source was admitted: {members:?}"
    );
    assert!(
        stats.tracked_sources <= 2 * stats.members_known + 64 + 16,
        "the runtime tracks {} sources",
        stats.tracked_sources
    );

    // Still a working node: a real one joins it.
    let clock = Clock::new();
    let start = clock.now();
    let second = spawn(
        Options::new(local)
            .config(fast_config(cluster_name))
            .seed(target),
    )
    .unwrap();
    wait_until("the second node to join the flooded one", || {
        alive(&node) == 2 && alive(&second) == 2
    });
    let join_after = clock.now() - start;
    let figures = FloodFigures {
        sources,
        sent,
        foreign_cluster: stats.core.drops.foreign_cluster,
        other_drops: stats.core.drops.total() - stats.core.drops.foreign_cluster,
        tracked_sources: node.stats().wait().unwrap().tracked_sources,
        join_after,
    };
    second.abort().wait().unwrap();
    node.abort().wait().unwrap();
    figures
}

/// Encryption and joining through the handle, on real UDP: two nodes join through a
/// seed given as a host name that resolves to nobody at first (the resolver is the
/// test's), all three seal with one key, a node with another key never joins and the
/// seed counts its datagrams as unauthenticated, and the keys rotate (install, use,
/// remove on every node) without a single suspicion.
pub fn keys_rotate_and_host_seeds_resolve_late(spawn: impl Spawn, cluster_name: &str) {
    use crate::join::{JoinRetry, Resolver};
    use crate::keys::fingerprint;
    use grapevine::Keyring;

    let (k1, k2) = ([0x31u8; 32], [0x32u8; 32]);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let options = || {
        Options::new(local)
            .config(fast_config(cluster_name))
            .keyring(Keyring::new(k1))
            .join_retry(JoinRetry::new(
                Duration::from_millis(100),
                Duration::from_millis(400),
                Duration::from_secs(1),
            ))
    };
    let first = spawn(options()).unwrap();
    // "seeds.test:7946" resolves to nothing until `target` is set.
    let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let lookups = Arc::new(Mutex::new(0u32));
    let resolver = {
        let (target, lookups) = (target.clone(), lookups.clone());
        Resolver::new(move |host| {
            assert_eq!(host, "seeds.test:7946");
            *lookups.lock().unwrap() += 1;
            target
                .lock()
                .unwrap()
                .map(|a| vec![a])
                .ok_or_else(|| std::io::Error::other("no such host (yet)"))
        })
    };
    let joiners: Vec<Handle> = (0..2)
        .map(|_| {
            spawn(
                options()
                    .seed_host("seeds.test:7946")
                    .resolver(resolver.clone()),
            )
            .unwrap()
        })
        .collect();
    wait_until("a few failed lookups", || *lookups.lock().unwrap() >= 4);
    assert!(
        joiners[0]
            .joined()
            .wait_timeout(Duration::from_millis(50))
            .is_none(),
        "not joined while the name resolves to nobody"
    );
    *target.lock().unwrap() = Some(first.local_addr());
    for node in &joiners {
        node.joined()
            .wait_timeout(DEADLINE)
            .expect("joined once the name resolves")
            .unwrap();
    }
    let nodes: Vec<&Handle> = std::iter::once(&first).chain(&joiners).collect();
    wait_until("3 alive everywhere", || nodes.iter().all(|n| alive(n) == 3));

    // Another key: the seed cannot open its datagrams, and nobody joins it.
    let stranger = spawn(
        Options::new(local)
            .config(fast_config(cluster_name))
            .keyring(Keyring::new(k2))
            .seed(first.local_addr()),
    )
    .unwrap();
    wait_until("the seed to drop the stranger's datagrams", || {
        first.stats().wait().unwrap().core.drops.unauthenticated > 0
    });
    assert!(
        stranger
            .joined()
            .wait_timeout(Duration::from_millis(500))
            .is_none()
    );
    stranger.abort().wait().unwrap();

    let (f1, f2) = (fingerprint(&k1), fingerprint(&k2));
    for node in &nodes {
        let keys = node.install_key(k2).wait().unwrap();
        assert_eq!(keys.fingerprints, [f1.clone(), f2.clone()]);
    }
    for node in &nodes {
        assert_eq!(
            node.use_key(k2).wait().unwrap().primary(),
            Some(f2.as_str())
        );
    }
    assert!(matches!(
        first.remove_key(k2).wait(),
        Err(RuntimeError::Keyring(
            grapevine::KeyringError::RemovePrimary
        ))
    ));
    for node in &nodes {
        assert_eq!(
            node.remove_key(k1).wait().unwrap().fingerprints,
            std::slice::from_ref(&f2)
        );
    }
    let probes: Vec<u64> = nodes
        .iter()
        .map(|n| n.stats().wait().unwrap().core.probes)
        .collect();
    wait_until("10 more probes on every node", || {
        nodes
            .iter()
            .zip(&probes)
            .all(|(n, p)| n.stats().wait().unwrap().core.probes >= p + 10)
    });
    for node in &nodes {
        let stats = node.stats().wait().unwrap();
        assert_eq!(stats.core.suspicions, 0, "no false suspicion");
        assert_eq!(alive(node), 3);
    }
    // A node without a keyring has no keys to list.
    let plain = spawn(Options::new(local).config(fast_config(cluster_name))).unwrap();
    assert!(matches!(
        plain.keyring().wait(),
        Err(RuntimeError::NotEncrypted)
    ));
    plain.abort().wait().unwrap();
    for node in joiners {
        node.abort().wait().unwrap();
    }
    first.abort().wait().unwrap();
}
