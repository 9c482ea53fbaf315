//! `grapevine node --http ADDR`: a web view of the live cluster as this node sees it.
//!
//! One page (`web/index.html`, compiled into the binary) and what it reads:
//!
//! | path | reply |
//! |------|-------|
//! | `/` | the page: members and their states, the ring as a circle with each member's ranges, the rumour queue by class, and events as they happen |
//! | `/api/dump` | the node's inner state, as `grapevine dump --json` prints it |
//! | `/api/members`, `/api/ring`, `/api/stats`, `/api/status` | the admin protocol's replies of the same name (see [`crate::admin`]) |
//! | `/api/events` | server-sent events, one `gv` event per node event: `{"kind", ...}` (see [`event_json`]) |
//!
//! The page renders only what it fetched: it loads the JSON on start, again on every
//! membership or ring event, and once a second, so a reload shows the node's view of
//! that moment (the browser tests rely on it). The server is axum on a one-thread
//! tokio runtime of its own; the handle's blocking queries run on its blocking pool,
//! so a slow answer never stalls the event streams.
//!
//! Like the admin interface it is unauthenticated (it only reads), and it listens on
//! loopback unless given an address: the dump names every member and the requests
//! in flight.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use grapevine_driver::{Event, EventFilter};
use serde_json::{Value, json};

use crate::runtime::Node;
use crate::{CliResult, admin, cli_error};

/// The page, with its script and styles inline: one asset, compiled in.
const INDEX: &str = include_str!("web/index.html");

/// Binds `addr` and serves the web view of `node` from a thread of its own. Returns
/// the bound address. Binding happens here, before the node reports it started, so
/// a port in use is a one-line error (exit 1).
pub fn serve(addr: SocketAddr, node: Node) -> CliResult<SocketAddr> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| cli_error!("--http {addr}: {e}"))?;
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("web")
        .build()
        .map_err(|e| cli_error!("--http {addr}: cannot start the web runtime: {e}"))?;
    let app = Router::new()
        .route("/", get(index))
        .route("/api/events", get(events))
        .route("/api/{what}", get(query))
        .with_state(node);
    std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::error!(error = %e, "web view: cannot listen");
                        return;
                    }
                };
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "web view stopped");
                }
            })
        })?;
    Ok(local)
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX,
    )
        .into_response()
}

/// One of the node's JSON views, by the admin request of the same name.
async fn query(State(node): State<Node>, Path(what): Path<String>) -> Response {
    if !matches!(
        what.as_str(),
        "dump" | "members" | "ring" | "stats" | "status"
    ) {
        return (StatusCode::NOT_FOUND, "unknown view\n").into_response();
    }
    // The handle's answers are waited for on a thread (`.wait()`), never on the
    // runtime's one thread, which also feeds the event streams.
    let answer = tokio::task::spawn_blocking(move || admin::answer(&what, &node)).await;
    let (status, body) = match answer {
        Ok(Ok(value)) => (StatusCode::OK, value),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": e.to_string() }),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The node's events as server-sent events, until the client goes or the node stops.
async fn events(State(node): State<Node>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Each client holds its own subscription; dropping the stream (the client left)
    // drops it, and the driver stops queueing for it.
    let subscription = node.subscribe(EventFilter::all());
    let stream = futures_util::stream::unfold(subscription, |events| async move {
        let event = events.recv().await?;
        let data = event_json(&event).to_string();
        Some((Ok(SseEvent::default().event("gv").data(data)), events))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// An event as the page shows it: `kind` (`member_joined`, `member_suspect`,
/// `member_recovered`, `member_died`, `member_left`, `state_changed`, `request`,
/// `response`, `request_failed`, `ring_agreed`, `topology`, `placement_changed`)
/// and its fields. Values and payloads are left out (only their sizes): the page
/// shows what happened, not the data.
pub fn event_json(event: &Event) -> Value {
    let member = |kind: &str, id: &grapevine_driver::NodeId| json!({ "kind": kind, "addr": id.addr.to_string(), "generation": id.generation });
    match event {
        Event::MemberJoined(id) => member("member_joined", id),
        Event::MemberSuspect(id) => member("member_suspect", id),
        Event::MemberRecovered(id) => member("member_recovered", id),
        Event::MemberDied(id) => member("member_died", id),
        Event::MemberLeft(id) => member("member_left", id),
        Event::StateChanged { node, key, value } => json!({
            "kind": "state_changed",
            "addr": node.addr.to_string(),
            "key": grapevine_driver::Printable(key.as_bytes()).to_string(),
            "bytes": value.as_ref().map(Vec::len),
        }),
        Event::Request { id, payload, .. } => {
            json!({ "kind": "request", "id": id.to_string(), "bytes": payload.len() })
        }
        Event::Response { id, from, payload } => json!({
            "kind": "response",
            "id": id.to_string(),
            "addr": from.addr.to_string(),
            "bytes": payload.len(),
        }),
        Event::RequestFailed { id, reason } => json!({
            "kind": "request_failed",
            "id": id.to_string(),
            "reason": reason.to_string(),
        }),
        Event::RingAgreed { digest } => {
            json!({ "kind": "ring_agreed", "digest": format!("{digest:016x}") })
        }
        Event::Topology { name, status } => {
            json!({ "kind": "topology", "name": name, "status": status.to_string() })
        }
        Event::PlacementChanged(placement) => json!({
            "kind": "placement_changed",
            "status": format!("{:?}", placement.status),
            "tokens": placement.tokens.len(),
        }),
        other => json!({ "kind": "other", "debug": format!("{other:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_kind() {
        let id = grapevine_driver::NodeId::new("127.0.0.1:7946".parse().unwrap(), 3);
        let died = event_json(&Event::MemberDied(id.clone()));
        assert_eq!(died["kind"], "member_died");
        assert_eq!(died["addr"], "127.0.0.1:7946");
        assert_eq!(died["generation"], 3);
        let set = event_json(&Event::StateChanged {
            node: id,
            key: "role".into(),
            value: Some(b"web".to_vec()),
        });
        assert_eq!(set["kind"], "state_changed");
        assert_eq!(set["bytes"], 3);
        assert!(set.get("value").is_none(), "values stay out of the page");
    }

    #[test]
    fn the_page_is_compiled_in() {
        assert!(INDEX.contains("/api/events"));
        assert!(INDEX.contains("/api/dump"));
    }
}
