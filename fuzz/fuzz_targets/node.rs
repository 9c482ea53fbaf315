//! Arbitrary sequences of inputs (datagrams, time, writes, requests, joins, leaves,
//! restarts) on up to three nodes, with every invariant checked after every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|scenario: grapevine::fuzzing::Scenario| {
    grapevine::fuzzing::run_with_budget(scenario, grapevine::fuzzing::FUZZ_RUN_BUDGET)
});
