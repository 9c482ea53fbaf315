//! Picks the runtime that drives a node. Every runtime returns the same
//! [`grapevine_driver::Handle`], so the commands are written once against it and
//! wait for answers with `.wait()`; nothing here re-joins the runtimes.

use crate::{CliResult, RuntimeKind, cli_error, usage_error};

/// A running node, whatever runtime drives it. The runtime stays alive on its own:
/// std's thread, the process-wide tokio runtime below, smol's global executor.
pub type Node = grapevine_driver::Handle;

#[cfg(feature = "tokio")]
fn tokio_runtime() -> CliResult<&'static tokio::runtime::Runtime> {
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
        .ok_or_else(|| cli_error!("cannot start the tokio runtime"))
}

/// Starts a node on the chosen runtime.
pub fn spawn(kind: RuntimeKind, options: grapevine_driver::Options) -> CliResult<Node> {
    match kind {
        RuntimeKind::Std => Ok(grapevine_std::spawn(options)?),
        #[cfg(feature = "tokio")]
        RuntimeKind::Tokio => {
            let _entered = tokio_runtime()?.enter();
            Ok(grapevine_tokio::spawn(options)?)
        }
        #[cfg(feature = "smol")]
        RuntimeKind::Smol => Ok(grapevine_smol::spawn(options)?),
        #[allow(unreachable_patterns)]
        other => Err(usage_error!(
            "runtime {other} is not compiled in (build with --features {other})"
        )),
    }
}
