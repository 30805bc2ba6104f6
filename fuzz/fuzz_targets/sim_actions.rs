//! Fuzzer bytes drive the deterministic simulation: every choice it makes (which frame to
//! deliver, which node crashes, which link breaks, what is written) is read from the input.
//! Any invariant violation (divergence, a lost acknowledged write, a resurrected delete, a
//! duplicate or out-of-order message) panics with the simulation's explanation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(f) = bridge_core::sim::run_bytes(data) {
        panic!("{f}");
    }
});
