//! Five nodes on real UDP (127.0.0.1, ephemeral ports) driven by the tokio runtime:
//! they converge, one stops and the others declare it dead, and a request sent to
//! any node reaches the key's owner. Every wait polls a condition under a deadline.
//! The scenarios are shared with the sibling runtimes (`grapevine_driver::test_support`):
//! the blocking ones wait from the test's thread while tokio's workers drive the nodes.

use grapevine_driver::test_support;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn five_nodes_converge_detect_a_failure_and_route_requests() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::five_nodes_converge_detect_a_failure_and_route_requests(
        grapevine_tokio::spawn,
        "runtime-tokio-test",
    );
}

#[test]
fn binding_a_port_in_use_is_an_error() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::binding_a_port_in_use_is_an_error(grapevine_tokio::spawn);
}

#[test]
fn commands_after_stop_report_stopped() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::commands_after_stop_report_stopped(grapevine_tokio::spawn);
}

#[tokio::test]
async fn two_nodes_over_await() {
    test_support::two_nodes_over_await(grapevine_tokio::spawn, tokio::time::sleep).await;
}

#[test]
fn three_nodes_become_ready() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::three_nodes_become_ready(grapevine_tokio::spawn, "runtime-tokio-ready");
}

#[test]
fn application_events_keys_and_a_prompt_shutdown() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::application_events_keys_and_a_prompt_shutdown(
        grapevine_tokio::spawn,
        "runtime-tokio-events",
    );
}

#[test]
fn data_dir_keeps_identity_and_refuses_bad_ones() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::data_dir_keeps_identity_and_refuses_bad_ones(
        grapevine_tokio::spawn,
        "runtime-tokio-data",
    );
}

#[test]
fn decommission_and_remove_node() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::decommission_and_remove_node(grapevine_tokio::spawn, "runtime-tokio-remove");
}

#[test]
fn keys_rotate_and_host_seeds_resolve_late() {
    let runtime = runtime();
    let _entered = runtime.enter();
    test_support::keys_rotate_and_host_seeds_resolve_late(
        grapevine_tokio::spawn,
        "runtime-tokio-keys",
    );
}
