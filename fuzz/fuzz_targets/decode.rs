//! Arbitrary bytes through the header and body decoders and into a node: decoding is
//! total, and a rejected datagram changes nothing but the drop counters.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| grapevine::fuzzing::decode(data));
