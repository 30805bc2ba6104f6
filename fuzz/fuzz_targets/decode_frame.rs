//! Arbitrary bytes into both frame decoders. Neither may panic, and every frame either one
//! accepts must come back unchanged from both encodings (so a frame that arrived as JSON can
//! be forwarded in binary, and the other way round).
#![no_main]

use bridge_core::codec::{check_round_trip, decode_binary, decode_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for frame in [decode_json(data), decode_binary(data)]
        .into_iter()
        .flatten()
    {
        if let Err(why) = check_round_trip(&frame) {
            panic!("{why}");
        }
    }
});
