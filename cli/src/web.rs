//! `grapevine node --http ADDR`: a web view of the live cluster as this node sees it;
//! `grapevine web --replay DIR`: the same page scrubbing through a flight log.
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
//! On a flight log (`grapevine node --record`, or `grapevine simulate --record`),
//! `grapevine web --replay DIR` re-runs the core once through the driver's replay
//! engine (every output checked, as `grapevine replay` does), keeps a frame every
//! `--every` of the log's time (the dump and the ring after the last input before
//! it) and every event with its time, and serves them as `/api/timeline`:
//! `{"source", "every_ms", "frames": [{"t_ms", "dump", "ring"}], "events": [{"t_ms",
//! "event"}]}`. The page finds it and shows a slider instead of the live feed.
//!
//! Like the admin interface it is unauthenticated (it only reads), and it listens on
//! loopback unless given an address: the dump names every member and the requests
//! in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use futures_util::Stream;
use grapevine_driver::record::{Entry, LogReader};
use grapevine_driver::replay::{Replay, Step, format_time};
use grapevine_driver::{Event, EventFilter};
use serde_json::{Value, json};

use crate::node::parse_duration;
use crate::runtime::Node;
use crate::{CliResult, admin, cli_error, resolve, usage_error};

/// The page, with its script and styles inline: one asset, compiled in.
const INDEX: &str = include_str!("web/index.html");

/// Binds `addr` and serves the web view of `node` from a thread of its own. Returns
/// the bound address. Binding happens here, before the node reports it started, so
/// a port in use is a one-line error (exit 1).
pub fn serve(addr: SocketAddr, node: Node) -> CliResult<SocketAddr> {
    let (listener, local) = bind(addr)?;
    let app = Router::new()
        .route("/", get(index))
        .route("/api/events", get(events))
        .route("/api/{what}", get(query))
        .with_state(node);
    std::thread::Builder::new()
        .name("web".into())
        .spawn(move || run(listener, app))?;
    Ok(local)
}

/// Binds the listener itself, so that an address in use is reported at once.
fn bind(addr: SocketAddr) -> CliResult<(std::net::TcpListener, SocketAddr)> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| cli_error!("--http {addr}: {e}"))?;
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    Ok((listener, local))
}

/// Serves `app` on `listener` until the process ends, on a one-thread runtime.
fn run(listener: std::net::TcpListener, app: Router) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "web view: cannot start its runtime");
            return;
        }
    };
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
    });
}

/// Arguments of `grapevine web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// The flight log to scrub through: `grapevine node --record DIR` or
    /// `grapevine simulate --record DIR`.
    #[arg(long, value_name = "DIR")]
    replay: PathBuf,
    /// Where to serve the page; a bare port binds loopback.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: String,
    /// The log's time between two frames of the timeline (e.g. 250ms, 1s).
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    every: Duration,
}

/// At most this many frames are kept, so a long log cannot fill the memory: past
/// it the timeline ends early and says so (a larger `--every` covers more).
pub const MAX_FRAMES: usize = 4000;

/// Runs `grapevine web --replay DIR`: re-runs the log, then serves the timeline
/// until interrupted.
pub fn run_replay(args: WebArgs) -> CliResult<ExitCode> {
    if args.every.is_zero() {
        return Err(usage_error!("--every must be above zero"));
    }
    let addr = match args.http.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => resolve(&args.http)?,
    };
    let (timeline, summary) = timeline(&args.replay, args.every)?;
    let (listener, local) = bind(addr)?;
    let app = Router::new()
        .route("/", get(index))
        .route("/api/timeline", get(serve_timeline))
        .with_state(Arc::new(timeline.to_string()));
    tracing::info!(
        "web view of {} ({summary}) served at http://{local}/",
        args.replay.display()
    );
    run(listener, app);
    Ok(ExitCode::SUCCESS)
}

async fn serve_timeline(State(timeline): State<Arc<String>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        timeline.as_str().to_owned(),
    )
        .into_response()
}

/// Re-runs the flight log in `dir` and keeps a frame every `every` of its time, and
/// every event. Returns the timeline and a one-line summary.
fn timeline(dir: &std::path::Path, every: Duration) -> CliResult<(Value, String)> {
    let reader = LogReader::open(dir).map_err(|e| cli_error!("{e}"))?;
    let every_ns = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
    let mut replay = Replay::new();
    let (mut origin, mut next) = (0u64, 0u64);
    let (mut frames, mut events) = (Vec::new(), Vec::new());
    let mut truncated = false;
    for record in reader {
        let (number, entry) = record.map_err(|e| cli_error!("{e}"))?;
        match &entry {
            Entry::Start(start) => origin = start.now,
            // A log whose start rotated away begins at a snapshot: times still count
            // from the node's start, and frames from the snapshot on.
            Entry::Snapshot(snapshot) if replay.node().is_none() => {
                origin = snapshot.started;
                let since = snapshot.now.saturating_sub(origin);
                next = since.div_ceil(every_ns.max(1)).saturating_mul(every_ns);
            }
            _ => {}
        }
        if let Some(now) = entry.now() {
            // Every frame time this input passes shows the state before it.
            let t = now.saturating_sub(origin);
            while t > next && !truncated {
                if let Some(node) = replay.node() {
                    frames.push(frame(node, replay.now(), next));
                }
                next = next.saturating_add(every_ns);
                truncated = frames.len() >= MAX_FRAMES;
            }
            if truncated {
                break;
            }
        }
        if let Step::Matched { events: raised } = replay
            .step(number, &entry)
            .map_err(|e| cli_error!("{}: {e}", dir.display()))?
        {
            let t = replay.now().saturating_sub(origin);
            for event in raised {
                events.push(json!({ "t_ms": t / 1_000_000, "event": event_json(&event) }));
            }
        }
    }
    let node = replay
        .node()
        .ok_or_else(|| cli_error!("{}: the log holds no start record", dir.display()))?;
    let end = replay.now().saturating_sub(origin);
    if !truncated {
        frames.push(frame(node, replay.now(), end));
    }
    let summary = format!(
        "{} frames every {} ms up to +{}, {} events{}",
        frames.len(),
        every.as_millis(),
        format_time(end.min(next)),
        events.len(),
        if truncated {
            format!(", cut at {MAX_FRAMES} frames: raise --every to see more")
        } else {
            String::new()
        }
    );
    let timeline = json!({
        "source": dir.display().to_string(),
        "every_ms": every.as_millis(),
        "frames": frames,
        "events": events,
    });
    Ok((timeline, summary))
}

/// One frame: the replayed node's dump and ring at `t_ns` of the log.
fn frame(node: &grapevine_driver::CoreNode, now: u64, t_ns: u64) -> Value {
    let dump = grapevine_driver::dump::dump_json(node, grapevine::Instant::from_nanos(now));
    let ring = admin::ring_value(
        &grapevine_driver::ring_snapshot(node),
        dump["node"].as_str().unwrap_or("?"),
    );
    json!({ "t_ms": t_ns / 1_000_000, "dump": dump, "ring": ring })
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
            "status": placement.status.map(|s| s.to_string()),
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
