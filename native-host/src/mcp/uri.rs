//! Resource URIs: `sacred-bridge://{space}/{collection}/{id}` is a document,
//! `sacred-bridge://{space}/{collection}` a collection's listing. Each part is percent-encoded
//! (names may hold `/`, spaces, anything but control characters).

pub const SCHEME: &str = "sacred-bridge://";

/// What a resource URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Collection {
        space: String,
        collection: String,
    },
    Doc {
        space: String,
        collection: String,
        id: String,
    },
}

/// Percent-encodes one part (everything but unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dec(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn doc(space: &str, collection: &str, id: &str) -> String {
    format!("{SCHEME}{}/{}/{}", enc(space), enc(collection), enc(id))
}

pub fn collection(space: &str, collection: &str) -> String {
    format!("{SCHEME}{}/{}", enc(space), enc(collection))
}

/// Parses a resource URI; `Err` says what is wrong with it.
pub fn parse(uri: &str) -> Result<Target, String> {
    let bad = || {
        format!(
            "{uri:?} is not a Sacred Bridge resource: expected {SCHEME}{{space}}/{{collection}} or {SCHEME}{{space}}/{{collection}}/{{id}}, each part percent-encoded"
        )
    };
    let rest = uri.strip_prefix(SCHEME).ok_or_else(bad)?;
    let parts: Option<Vec<String>> = rest.split('/').map(dec).collect();
    let parts = parts.ok_or_else(bad)?;
    if parts.iter().any(String::is_empty) {
        return Err(bad());
    }
    match <[String; 2]>::try_from(parts) {
        Ok([space, collection]) => Ok(Target::Collection { space, collection }),
        Err(parts) => match <[String; 3]>::try_from(parts) {
            Ok([space, collection, id]) => Ok(Target::Doc {
                space,
                collection,
                id,
            }),
            Err(_) => Err(bad()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let u = doc("team", "notes/a b", "n%1");
        assert_eq!(u, "sacred-bridge://team/notes%2Fa%20b/n%251");
        assert_eq!(
            parse(&u),
            Ok(Target::Doc {
                space: "team".into(),
                collection: "notes/a b".into(),
                id: "n%1".into()
            })
        );
        assert_eq!(
            parse(&collection("team", "notes")),
            Ok(Target::Collection {
                space: "team".into(),
                collection: "notes".into()
            })
        );
        for bad in [
            "http://x/y",
            "sacred-bridge://team",
            "sacred-bridge://a/b/c/d",
            "sacred-bridge://a//c",
            "sacred-bridge://a/%zz",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
