//! One blocking facade over the three runtimes, so the commands are written once.

use std::net::SocketAddr;
use std::time::Duration;

use grapevine::RequestId;
use grapevine_std::{Event, Member, Options, RecvTimeoutError, RingSnapshot, Route, StatsSnapshot};

use crate::{CliResult, RuntimeKind, cli_error};

/// A running node, whatever runtime drives it.
#[derive(Clone, Debug)]
pub enum Node {
    /// Driven by a thread.
    Std(grapevine_std::Handle),
    /// Driven by a task on the process's tokio runtime.
    #[cfg(feature = "tokio")]
    Tokio(grapevine_tokio::Handle, tokio::runtime::Handle),
    /// Driven by a task on smol's global executor.
    #[cfg(feature = "smol")]
    Smol(grapevine_smol::Handle),
}

#[cfg(feature = "tokio")]
fn tokio_runtime() -> CliResult<tokio::runtime::Handle> {
    use std::sync::OnceLock;
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("grapevine-tokio")
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
        .ok_or_else(|| cli_error!("cannot start the tokio runtime"))
}

/// Runs `$body` with `$h` bound to the runtime's handle, blocking on async runtimes.
macro_rules! on_node {
    ($node:expr, $h:ident => $body:expr) => {
        match $node {
            Node::Std($h) => $body,
            #[cfg(feature = "tokio")]
            Node::Tokio($h, rt) => rt.block_on(async { $body.await }),
            #[cfg(feature = "smol")]
            Node::Smol($h) => smol::block_on(async { $body.await }),
        }
    };
}

impl Node {
    /// Starts a node on the chosen runtime.
    pub fn spawn(kind: RuntimeKind, options: Options) -> CliResult<Node> {
        match kind {
            RuntimeKind::Std => Ok(Node::Std(grapevine_std::spawn(options)?)),
            #[cfg(feature = "tokio")]
            RuntimeKind::Tokio => {
                let rt = tokio_runtime()?;
                let _guard = rt.enter();
                Ok(Node::Tokio(grapevine_tokio::spawn(options)?, rt.clone()))
            }
            #[cfg(feature = "smol")]
            RuntimeKind::Smol => Ok(Node::Smol(grapevine_smol::spawn(options)?)),
            #[allow(unreachable_patterns)]
            other => Err(cli_error!(
                "runtime {other} is not compiled in (build with --features {other})"
            )),
        }
    }

    /// The node's UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Node::Std(h) => h.local_addr(),
            #[cfg(feature = "tokio")]
            Node::Tokio(h, _) => h.local_addr(),
            #[cfg(feature = "smol")]
            Node::Smol(h) => h.local_addr(),
        }
    }

    /// The members the node knows.
    pub fn members(&self) -> CliResult<Vec<Member>> {
        Ok(on_node!(self, h => h.members())?)
    }

    /// The node's counters.
    pub fn stats(&self) -> CliResult<StatsSnapshot> {
        Ok(on_node!(self, h => h.stats())?)
    }

    /// The token ring.
    pub fn ring(&self) -> CliResult<RingSnapshot> {
        Ok(on_node!(self, h => h.ring())?)
    }

    /// Where a key routes.
    pub fn route(&self, key: &[u8]) -> CliResult<Route> {
        Ok(on_node!(self, h => h.route(key))?)
    }

    /// Sends a client request through the node.
    pub fn request(&self, key: &[u8], payload: Vec<u8>) -> CliResult<RequestId> {
        Ok(on_node!(self, h => h.request(key, payload))?)
    }

    /// Answers a request.
    pub fn respond(&self, id: RequestId, payload: Vec<u8>) -> CliResult {
        Ok(on_node!(self, h => h.respond(id, payload))?)
    }

    /// Subscribes to events.
    pub fn events(&self) -> Events {
        match self {
            Node::Std(h) => Events::Std(h.events()),
            #[cfg(feature = "tokio")]
            Node::Tokio(h, rt) => Events::Tokio(h.events(), rt.clone()),
            #[cfg(feature = "smol")]
            Node::Smol(h) => Events::Smol(h.events()),
        }
    }

    /// Leaves gracefully and waits for the node to stop.
    pub fn shutdown(self) -> CliResult {
        Ok(on_node!(self, h => h.shutdown())?)
    }

    /// Stops the node at once, without leaving (as if it crashed).
    pub fn abort(self) -> CliResult {
        Ok(on_node!(self, h => h.abort())?)
    }
}

/// A node's event subscription, read with a timeout from a plain thread.
#[derive(Debug)]
pub enum Events {
    /// From the std runtime.
    Std(grapevine_std::Events),
    /// From the tokio runtime.
    #[cfg(feature = "tokio")]
    Tokio(grapevine_tokio::Events, tokio::runtime::Handle),
    /// From the smol runtime.
    #[cfg(feature = "smol")]
    Smol(grapevine_smol::Events),
}

impl Events {
    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        match self {
            Events::Std(e) => e.recv_timeout(timeout),
            #[cfg(feature = "tokio")]
            Events::Tokio(e, rt) => rt.block_on(e.recv_timeout(timeout)),
            #[cfg(feature = "smol")]
            Events::Smol(e) => smol::block_on(e.recv_timeout(timeout)),
        }
    }
}
