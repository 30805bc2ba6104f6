//! Replays every input in `tests/fuzz-crashers/` through both frame decoders: crashes the
//! `decode_frame` fuzz target found (and hand-made hostile inputs: deep nesting, lying
//! lengths, truncations) stay fixed. Nothing may panic, and whatever decodes must survive a
//! round trip through both encodings, exactly as the fuzz target asserts.

use bridge_core::codec::{check_round_trip, decode_binary, decode_json};
use std::path::Path;

#[test]
fn fuzz_crashers_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-crashers");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-crashers exists")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    for path in inputs {
        let bytes = std::fs::read(&path).expect("a readable input");
        for frame in [decode_json(&bytes), decode_binary(&bytes)]
            .into_iter()
            .flatten()
        {
            if let Err(why) = check_round_trip(&frame) {
                panic!("{}: {why}", path.display());
            }
        }
    }
}
