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

/// Five nodes on real UDP (127.0.0.1, ephemeral ports): they converge, one stops and
/// the others declare it dead, and a request sent to any node reaches the key's owner.
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

    let victim = nodes.pop().unwrap();
    let victim_addr = victim.local_addr();
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
        rings_agree(&survivors, NODES - 1)
    });

    for k in 0..20 {
        let key = format!("key-{k}");
        let via_index = k % nodes.len();
        let via = &nodes[via_index];
        let route = via.route(key.as_bytes()).wait().unwrap();
        let replicas: Vec<SocketAddr> = route.replicas.iter().map(|r| r.id.addr).collect();
        assert!(
            !replicas.contains(&victim_addr),
            "{key} still routes to the dead node"
        );
        // A replica serves the request itself; any other node forwards it to the owner.
        let expected = if replicas.contains(&via.local_addr()) {
            via.local_addr()
        } else {
            route.owner().unwrap().addr
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
