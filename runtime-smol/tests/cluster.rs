//! Five nodes on real UDP (127.0.0.1, ephemeral ports) driven by the smol runtime:
//! they converge, one stops and the others declare it dead, and a request sent to
//! any node reaches the key's owner. Every wait polls a condition under a deadline.
//! The scenarios are shared with the sibling runtimes (`grapevine_driver::test_support`):
//! the blocking ones wait from the test's thread while smol's global executor drives
//! the nodes.

use std::time::Duration;

use grapevine_driver::test_support;

#[test]
fn five_nodes_converge_detect_a_failure_and_route_requests() {
    test_support::five_nodes_converge_detect_a_failure_and_route_requests(
        grapevine_smol::spawn,
        "runtime-smol-test",
    );
}

#[test]
fn binding_a_port_in_use_is_an_error() {
    test_support::binding_a_port_in_use_is_an_error(grapevine_smol::spawn);
}

#[test]
fn commands_after_stop_report_stopped() {
    test_support::commands_after_stop_report_stopped(grapevine_smol::spawn);
}

#[test]
fn two_nodes_over_await() {
    smol::block_on(test_support::two_nodes_over_await(
        grapevine_smol::spawn,
        |duration: Duration| async move {
            smol::Timer::after(duration).await;
        },
    ));
}

#[test]
fn three_nodes_become_ready() {
    test_support::three_nodes_become_ready(grapevine_smol::spawn, "runtime-smol-ready");
}

#[test]
fn application_events_keys_and_a_prompt_shutdown() {
    test_support::application_events_keys_and_a_prompt_shutdown(
        grapevine_smol::spawn,
        "runtime-smol-events",
    );
}

#[test]
fn data_dir_keeps_identity_and_refuses_bad_ones() {
    test_support::data_dir_keeps_identity_and_refuses_bad_ones(
        grapevine_smol::spawn,
        "runtime-smol-data",
    );
}

#[test]
fn decommission_and_remove_node() {
    test_support::decommission_and_remove_node(grapevine_smol::spawn, "runtime-smol-remove");
}

#[test]
fn keys_rotate_and_host_seeds_resolve_late() {
    test_support::keys_rotate_and_host_seeds_resolve_late(
        grapevine_smol::spawn,
        "runtime-smol-keys",
    );
}
