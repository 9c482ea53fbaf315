//! Five nodes on real UDP (127.0.0.1, ephemeral ports) driven by the std runtime:
//! they converge, one stops and the others declare it dead, and a request sent to
//! any node reaches the key's owner. Every wait polls a condition under a deadline.
//! The scenarios are shared with the sibling runtimes (`grapevine_driver::test_support`).

use grapevine_driver::test_support;

#[test]
fn five_nodes_converge_detect_a_failure_and_route_requests() {
    test_support::five_nodes_converge_detect_a_failure_and_route_requests(
        grapevine_std::spawn,
        "runtime-std-test",
    );
}

#[test]
fn binding_a_port_in_use_is_an_error() {
    test_support::binding_a_port_in_use_is_an_error(grapevine_std::spawn);
}

#[test]
fn commands_after_stop_report_stopped() {
    test_support::commands_after_stop_report_stopped(grapevine_std::spawn);
}

#[test]
fn three_nodes_become_ready() {
    test_support::three_nodes_become_ready(grapevine_std::spawn, "runtime-std-ready");
}

#[test]
fn application_events_keys_and_a_prompt_shutdown() {
    test_support::application_events_keys_and_a_prompt_shutdown(
        grapevine_std::spawn,
        "runtime-std-events",
    );
}

#[test]
fn data_dir_keeps_identity_and_refuses_bad_ones() {
    test_support::data_dir_keeps_identity_and_refuses_bad_ones(
        grapevine_std::spawn,
        "runtime-std-data",
    );
}

#[test]
fn decommission_and_remove_node() {
    test_support::decommission_and_remove_node(grapevine_std::spawn, "runtime-std-remove");
}

#[test]
fn flood_from_2000_sources_is_dropped_and_the_node_still_works() {
    let figures = test_support::flood_from_many_sources_is_dropped(
        grapevine_std::spawn,
        "runtime-std-flood",
        2_000,
    );
    println!("{figures:?}");
}

#[test]
fn keys_rotate_and_host_seeds_resolve_late() {
    test_support::keys_rotate_and_host_seeds_resolve_late(grapevine_std::spawn, "runtime-std-keys");
}
