//! Every example frame in docs/protocol.md decodes as a frame, so the page cannot drift
//! from the code.

const DOC: &str = include_str!("../../docs/protocol.md");

fn examples() -> Vec<String> {
    let mut out = Vec::new();
    let mut in_json = false;
    let mut in_text = false;
    for line in DOC.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```text" => in_text = true,
            "```" => {
                in_json = false;
                in_text = false;
            }
            l if in_json && !l.is_empty() => out.push(l.to_owned()),
            l if in_text => {
                if let Some(f) = l.strip_prefix("→ ").or_else(|| l.strip_prefix("← ")) {
                    out.push(f.to_owned());
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_example_frame_decodes() {
    let ex = examples();
    assert!(ex.len() >= 30, "found only {} examples", ex.len());
    for e in ex {
        let result = bridge_core::codec::decode_json(e.as_bytes());
        // The one deliberate counter-example of the page.
        if e.contains(r#""v":2"#) {
            assert!(result.is_err());
            continue;
        }
        let frame = result.unwrap_or_else(|err| panic!("{e}\n  does not decode: {err}"));
        // And it survives the binary encoding too.
        let bin = bridge_core::codec::encode_binary(&frame);
        assert_eq!(bridge_core::codec::decode_binary(&bin).ok(), Some(frame));
    }
}
