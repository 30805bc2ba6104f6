//! Resource URIs: `sacred-bridge://{space}/{collection}/{id}` is a document,
//! `sacred-bridge://{space}/{collection}` a collection's listing. Each part is percent-encoded
//! (names may hold `/`, spaces, anything but control characters).

use crate::error::Error;

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

/// What a part escapes: everything but unreserved characters.
const PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one part (everything but unreserved characters).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PART).to_string()
}

/// Decodes one part; a `%` not followed by two hex digits, or bytes that are not UTF-8, make
/// it no part at all (`percent_decode_str` alone would keep such a `%` as it is).
fn dec(s: &str) -> Option<String> {
    let malformed = s
        .split('%')
        .skip(1)
        .any(|rest| rest.len() < 2 || !rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

pub fn doc(space: &str, collection: &str, id: &str) -> String {
    format!("{SCHEME}{}/{}/{}", enc(space), enc(collection), enc(id))
}

pub fn collection(space: &str, collection: &str) -> String {
    format!("{SCHEME}{}/{}", enc(space), enc(collection))
}

/// Parses a resource URI; `Err` says what is wrong with it.
pub fn parse(uri: &str) -> Result<Target, Error> {
    let bad = || Error::BadUri(uri.to_owned());
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
            parse(&u).ok(),
            Some(Target::Doc {
                space: "team".into(),
                collection: "notes/a b".into(),
                id: "n%1".into()
            })
        );
        assert_eq!(
            parse(&collection("team", "notes")).ok(),
            Some(Target::Collection {
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
