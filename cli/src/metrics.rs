//! `grapevine node --metrics ADDR`: the node's figures in Prometheus text format.
//!
//! The driver records every figure through the `metrics` facade (see the list in
//! `grapevine_driver`'s docs); here the Prometheus exporter is installed as the
//! process's recorder, with its HTTP listener. It must be installed before the node
//! starts, since the driver registers its series when it is created.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

use crate::{CliResult, cli_error};

/// Installs the Prometheus recorder and serves it over HTTP at `addr` (any path
/// answers, e.g. `http://ADDR/metrics`), from a thread of its own.
pub fn serve(addr: SocketAddr) -> CliResult {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| cli_error!("--metrics {addr}: {e}"))
}
