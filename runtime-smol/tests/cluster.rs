//! Five nodes on real UDP (127.0.0.1, ephemeral ports) driven by the smol runtime:
//! they converge, one stops and the others declare it dead, and a request sent to
//! any node reaches the key's owner. Every wait polls a condition under a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grapevine_smol::{
    Clock, Config, Event, Handle, MemberState, Options, RecvTimeoutError, RequestId,
};

const DEADLINE: Duration = Duration::from_secs(20);
const NODES: usize = 5;

fn fast_config() -> Config {
    let mut config = Config::lan("runtime-smol-test");
    config.probe_interval = Duration::from_millis(200);
    config.probe_timeout = Duration::from_millis(100);
    config.gossip_interval = Duration::from_millis(200);
    config.request_timeout = Duration::from_millis(300);
    config
}

/// Polls `done` until it holds; panics after [`DEADLINE`]. Returns the time it took.
macro_rules! wait_until {
    ($what:expr, $done:expr) => {{
        let clock = Clock::new();
        let start = clock.now();
        loop {
            if $done {
                break clock.now() - start;
            }
            assert!(
                clock.now() - start < DEADLINE,
                "timed out after {DEADLINE:?} waiting for {}",
                $what
            );
            smol::Timer::after(Duration::from_millis(10)).await;
        }
    }};
}

type Responses = Arc<Mutex<HashMap<(usize, RequestId), (SocketAddr, Vec<u8>)>>>;

/// Answers requests with the node's address and records the responses it gets.
fn serve(index: usize, node: &Handle, responses: Responses) -> smol::Task<()> {
    let events = node.events();
    let node = node.clone();
    smol::spawn(async move {
        loop {
            match events.recv_timeout(Duration::from_millis(100)).await {
                Ok(Event::Request { id, .. }) => {
                    let _ = node
                        .respond(id, node.local_addr().to_string().into_bytes())
                        .await;
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

async fn alive(node: &Handle) -> usize {
    node.members()
        .await
        .unwrap()
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count()
}

async fn all_alive(nodes: &[Handle], count: usize) -> bool {
    for node in nodes {
        if alive(node).await != count {
            return false;
        }
    }
    true
}

async fn rings_agree(nodes: &[Handle], owners: usize) -> bool {
    let mut digests = Vec::new();
    for node in nodes {
        let ring = node.ring().await.unwrap();
        if ring.ownership.len() != owners {
            return false;
        }
        digests.push(ring.digest);
    }
    digests.iter().all(|d| *d == digests[0])
}

async fn all_see_dead(nodes: &[Handle], addr: SocketAddr) -> bool {
    for node in nodes {
        let members = node.members().await.unwrap();
        if !members
            .iter()
            .any(|m| m.addr() == addr && m.state == MemberState::Dead)
        {
            return false;
        }
    }
    true
}

#[test]
fn five_nodes_converge_detect_a_failure_and_route_requests() {
    smol::block_on(cluster());
}

async fn cluster() {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let responses: Responses = Arc::default();
    let mut nodes: Vec<Handle> = Vec::new();
    let mut servers = Vec::new();
    for i in 0..NODES {
        let mut options = Options::new(local).config(fast_config()).rng_seed(i as u64);
        if let Some(first) = nodes.first() {
            options = options.seed(first.local_addr());
        }
        let node = grapevine_smol::spawn(options).unwrap();
        servers.push(serve(i, &node, responses.clone()));
        nodes.push(node);
    }

    let converged = wait_until!(
        "5 nodes to see 5 alive members",
        all_alive(&nodes, NODES).await
    );
    let agreed = wait_until!("the ring to agree", rings_agree(&nodes, NODES).await);
    eprintln!("converged in {converged:?}, ring agreed in {agreed:?}");

    let victim = nodes.pop().unwrap();
    let victim_addr = victim.local_addr();
    victim.abort().await.unwrap();
    let detected = wait_until!(
        "the survivors to declare the stopped node dead",
        all_see_dead(&nodes, victim_addr).await
    );
    eprintln!("stopped node declared dead by all in {detected:?}");
    wait_until!(
        "the survivors' rings to agree",
        rings_agree(&nodes, NODES - 1).await
    );

    for k in 0..20 {
        let key = format!("key-{k}");
        let via_index = k % nodes.len();
        let via = &nodes[via_index];
        let route = via.route(key.as_bytes()).await.unwrap();
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
        let id = via.request(key.as_bytes(), b"ping".to_vec()).await.unwrap();
        wait_until!(
            format!("the response to {key}"),
            responses.lock().unwrap().contains_key(&(via_index, id))
        );
        let (from, payload) = responses.lock().unwrap()[&(via_index, id)].clone();
        assert_eq!(
            from,
            expected,
            "{key} via {} was served by {from}",
            via.local_addr()
        );
        assert_eq!(payload, expected.to_string().into_bytes());
    }
    let mut forwarded = 0;
    for node in &nodes {
        forwarded += node.stats().await.unwrap().core.requests_forwarded;
    }
    assert!(forwarded > 0, "no request was forwarded");
    for node in &nodes {
        let stats = node.stats().await.unwrap();
        assert_eq!(stats.send_errors, 0, "{stats:?}");
        assert_eq!(stats.events_dropped, 0, "{stats:?}");
    }

    for node in nodes {
        node.shutdown().await.unwrap();
    }
    for server in servers {
        server.await;
    }
}

#[test]
fn binding_a_port_in_use_is_an_error() {
    smol::block_on(port_in_use());
}

async fn port_in_use() {
    let first = grapevine_smol::spawn(Options::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let err = grapevine_smol::spawn(Options::new(first.local_addr())).unwrap_err();
    assert!(
        matches!(err, grapevine_smol::RuntimeError::Bind { .. }),
        "{err}"
    );
    first.abort().await.unwrap();
}
