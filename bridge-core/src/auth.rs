//! Access tokens: HMAC-SHA256 over (space, rights, expiry).
//!
//! Format: `sb1.<hex of the JSON claims>.<hex of the HMAC over that hex>` (`sb2.` for a token
//! scoped to collections, so that a verifier older than scopes refuses it). The claims are
//! `{"space": "...", "rights": "read"|"write"|"admin", "exp": <ms since the epoch>}`, and
//! optionally `"collections": {"<pattern>": "<right>", ...}`: then documents are opened per
//! collection ([`Grant::on`]) and `rights` covers what is not a collection (channels,
//! presence, `_config`). A token names exactly one space and opens nothing in another. Pure
//! functions: the host passes the secret and the current time.
//!
//! [`Rights`], [`Claims`] and [`Grant`] are always here; minting, reading and verifying tokens need the
//! feature `tokens` (on by default; the browser package, which holds no secret, leaves it
//! out, and with it HMAC-SHA256 and the claims' JSON parser).

use crate::{Error, Result};
#[cfg(feature = "tokens")]
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
#[cfg(feature = "tokens")]
use sha2::Sha256;

/// What a token allows in its space, ordered `Read < Write < Admin`: each includes the ones
/// below. A host without a secret gives every session `Admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rights {
    /// Reads: `get`, `list`, `subscribe`, `conflicts`, presence.
    Read,
    /// Also writes: `put`, `patch`, `delete`, `send`, `resolve`, and a peer's pushes of its own
    /// replica's writes.
    Write,
    /// Also `set_policy` and anything in `_config`, and, for a peer, relaying other replicas'
    /// writes and messages.
    Admin,
}

impl Rights {
    /// The right's wire name (`"write"`), as [`std::str::FromStr`] reads it back.
    pub fn as_str(self) -> &'static str {
        match self {
            Rights::Read => "read",
            Rights::Write => "write",
            Rights::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Rights {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "read" => Ok(Rights::Read),
            "write" => Ok(Rights::Write),
            "admin" => Ok(Rights::Admin),
            _ => Err(Error::Unauthorized(format!(
                "`{s}` is not a right; use read, write or admin"
            ))),
        }
    }
}

/// What a token says: one space, its rights there, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The one space the token opens.
    pub space: String,
    /// What it allows there: everywhere without `collections`, and with them on what is not a
    /// collection's documents (channels, presence, `_config`).
    pub rights: Rights,
    /// Expiry, in ms since the epoch: the token is refused from this instant on.
    pub exp: u64,
    /// Rights per collection pattern ([`Grant::on`]); none: every collection at `rights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<std::collections::BTreeMap<String, Rights>>,
}

impl Claims {
    /// What a session holding these claims may do.
    pub fn grant(&self) -> Grant {
        Grant {
            rights: self.rights,
            collections: self
                .collections
                .as_ref()
                .map(|c| c.iter().map(|(p, r)| (p.clone(), *r)).collect()),
        }
    }
}

/// What a session may do: its token's rights, and its rights per collection pattern when the
/// token names some. A host without a secret gives every caller [`Grant::all`]`(Admin)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Rights on everything that is not a collection's documents (channels, presence,
    /// `_config`), and on every collection when `collections` is `None`.
    pub rights: Rights,
    /// `(pattern, rights)` per collection pattern: a name, or a prefix ending in `*` (`*`
    /// alone is every collection). `None`: every collection at `rights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<(String, Rights)>>,
}

impl From<Rights> for Grant {
    fn from(rights: Rights) -> Grant {
        Grant::all(rights)
    }
}

impl Grant {
    /// Everything: what a host without tokens gives, and a browser's own calls.
    pub const ADMIN: Grant = Grant {
        rights: Rights::Admin,
        collections: None,
    };

    /// `rights` on the whole space.
    pub fn all(rights: Rights) -> Grant {
        Grant {
            rights,
            collections: None,
        }
    }

    /// Whether the grant is limited to some collections.
    pub fn is_scoped(&self) -> bool {
        self.collections.is_some()
    }

    /// The rights on `collection`'s documents: the highest of the patterns it matches, `None`
    /// when it matches none. `_config` (the space's configuration) always has the token's
    /// own `rights`.
    pub fn on(&self, collection: &str) -> Option<Rights> {
        let Some(patterns) = &self.collections else {
            return Some(self.rights);
        };
        if collection == crate::replica::CONFIG_COLLECTION {
            return Some(self.rights);
        }
        patterns
            .iter()
            .filter(|(p, _)| matches(p, collection))
            .map(|(_, r)| *r)
            .max()
    }

    /// Whether `collection`'s documents may be read: what every answer spanning collections
    /// (all conflicts, the changes feed, an export) is filtered by.
    pub fn reads(&self, collection: &str) -> bool {
        self.on(collection).is_some()
    }

    /// Whether every collection `pattern` matches may be read: what a replica's subscription
    /// must keep to (a scoped token replicates only within what it reads).
    pub fn reads_all(&self, pattern: &str) -> bool {
        match &self.collections {
            None => true,
            Some(patterns) => patterns.iter().any(|(q, _)| within(pattern, q)),
        }
    }
}

/// Whether collection `name` matches `pattern`: the same name, or, for a pattern ending in
/// `*`, a name starting with what comes before it.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Whether `name` matches one of `patterns` ([`matches`]).
pub fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches(p, name))
}

/// Whether a replica subscribed to `patterns` holds document `key`: a document of a
/// matching collection, the policy of one (`_config/collection:<name>`), or the rest of
/// `_config` (the space's default policy, channel settings), which every replica holds.
pub fn subscribed(patterns: &[String], key: &crate::DocKey) -> bool {
    match key.collection == crate::replica::CONFIG_COLLECTION {
        true => key
            .id
            .strip_prefix("collection:")
            .is_none_or(|c| matches_any(patterns, c)),
        false => matches_any(patterns, &key.collection),
    }
}

/// Whether every collection `inner` matches, one of `outers` matches too.
pub fn within_any(inner: &str, outers: &[String]) -> bool {
    outers.iter().any(|o| within(inner, o))
}

/// Whether every collection `inner` matches, `outer` matches too.
fn within(inner: &str, outer: &str) -> bool {
    match (inner.strip_suffix('*'), outer.strip_suffix('*')) {
        (_, Some(prefix)) => inner.starts_with(prefix),
        (None, None) => inner == outer,
        (Some(_), None) => false,
    }
}

/// The most collection patterns a token or a subscription may name (every document a
/// server walks is matched against them).
pub const MAX_PATTERNS: usize = 64;

/// Checks a list of collection patterns (a token's, a subscription's): each a collection
/// name or a prefix ending in `*`, the name part a valid name and not reserved (`_config`
/// follows the token's own rights, and every replica holds it).
pub fn check_patterns<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for (i, pattern) in patterns.into_iter().enumerate() {
        if i >= MAX_PATTERNS {
            return Err(Error::Malformed(format!(
                "more than {MAX_PATTERNS} collection patterns; use prefixes ending in `*`"
            )));
        }
        let name = pattern.strip_suffix('*').unwrap_or(pattern);
        if pattern.is_empty() {
            return Err(Error::BadName {
                what: "collection pattern",
                name: String::new(),
                why: "it is empty",
            });
        }
        if !name.is_empty() {
            crate::check_name("collection pattern", name, false)?;
        }
    }
    Ok(())
}

/// Reads `notes/*:write,audit:read` (what `sacred-bridge token create --collections` takes):
/// comma-separated `pattern:right` pairs, each pattern a collection name or a prefix ending in
/// `*`. The right is what follows the last `:`, so a pattern may hold `:` itself.
pub fn parse_collections(text: &str) -> Result<std::collections::BTreeMap<String, Rights>> {
    let mut out = std::collections::BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((pattern, right)) = pair.rsplit_once(':') else {
            return Err(Error::Unauthorized(format!(
                "`{pair}` is not `pattern:right` (e.g. `notes/*:write,audit:read`)"
            )));
        };
        let right: Rights = right.trim().parse()?;
        let pattern = pattern.trim();
        check_patterns([pattern])?;
        out.insert(pattern.to_string(), right);
    }
    if out.is_empty() {
        return Err(Error::Unauthorized(
            "no collection pattern given (e.g. `notes/*:write,audit:read`)".into(),
        ));
    }
    Ok(out)
}

#[cfg(feature = "tokens")]
fn mac(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

#[cfg(feature = "tokens")]
fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

#[cfg(feature = "tokens")]
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(feature = "tokens")]
/// Mints a token.
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    let body = hex(serde_json::to_string(claims).unwrap_or_default().as_bytes());
    // A token scoped to collections has its own prefix, and its signature covers it, so a
    // verifier that predates scopes refuses it (relabelled `sb1.` too) instead of reading
    // it as a token for the whole space.
    let prefix = match claims.collections {
        Some(_) => SCOPED_PREFIX,
        None => PREFIX,
    };
    let sig = hex(&mac(secret, signed(prefix, &body).as_bytes()));
    format!("{prefix}.{body}.{sig}")
}

#[cfg(feature = "tokens")]
/// Reads a token's claims without checking its signature: for the holder of a token (a
/// hybrid host's upstream link) to know which space it names and until when. Never a
/// substitute for [`verify`]: anyone can write claims.
pub fn peek(token: &str) -> Result<Claims> {
    let bad = || {
        Error::Unauthorized(
            "the token is malformed; mint one with `sacred-bridge token create`".into(),
        )
    };
    let mut parts = token.split('.');
    let (Some(prefix), Some(body), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let claims: Claims =
        serde_json::from_slice(&unhex(body).ok_or_else(bad)?).map_err(|_| bad())?;
    prefixed(prefix, &claims).ok_or_else(bad)?;
    Ok(claims)
}

#[cfg(feature = "tokens")]
/// The prefix of a token for the whole space.
const PREFIX: &str = "sb1";
#[cfg(feature = "tokens")]
/// The prefix of a token scoped to collections.
const SCOPED_PREFIX: &str = "sb2";

#[cfg(feature = "tokens")]
/// What a token's signature covers: its body, and for a scoped token its prefix too.
fn signed(prefix: &str, body: &str) -> String {
    match prefix {
        SCOPED_PREFIX => format!("{prefix}.{body}"),
        _ => body.to_owned(),
    }
}

#[cfg(feature = "tokens")]
/// `Some` when `prefix` is the one `claims` are minted with.
fn prefixed(prefix: &str, claims: &Claims) -> Option<()> {
    match (prefix, &claims.collections) {
        (PREFIX, None) | (SCOPED_PREFIX, Some(_)) => Some(()),
        _ => None,
    }
}

#[cfg(feature = "tokens")]
/// Verifies a token for `space` at `now_ms` and returns what it grants.
pub fn verify(secret: &[u8], token: &str, space: &str, now_ms: u64) -> Result<Grant> {
    let bad = || {
        Error::Unauthorized(
            "the token is malformed; mint one with `sacred-bridge token create`".into(),
        )
    };
    let mut parts = token.split('.');
    let (Some(prefix), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let sig = unhex(sig).ok_or_else(bad)?;
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| bad())?;
    m.update(signed(prefix, body).as_bytes());
    m.verify_slice(&sig).map_err(|_| {
        Error::Unauthorized("the token's signature does not match this server's secret".into())
    })?;
    let claims: Claims =
        serde_json::from_slice(&unhex(body).ok_or_else(bad)?).map_err(|_| bad())?;
    prefixed(prefix, &claims).ok_or_else(bad)?;
    if claims.space != space {
        return Err(Error::Unauthorized(format!(
            "the token is for space `{}`, not `{space}`",
            claims.space
        )));
    }
    if claims.exp <= now_ms {
        return Err(Error::Unauthorized("the token has expired".into()));
    }
    Ok(claims.grant())
}

#[cfg(all(test, feature = "tokens"))]
mod tests {
    use super::*;
    // On wasm32 the same `#[test]` functions run under wasm-bindgen-test (see scripts/test.sh).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn token_opens_its_space_only_until_expiry() {
        let c = Claims {
            space: "team".into(),
            rights: Rights::Write,
            exp: 1000,
            collections: None,
        };
        let t = mint(b"s3cret", &c);
        assert_eq!(
            verify(b"s3cret", &t, "team", 999),
            Ok(Grant::all(Rights::Write))
        );
        assert!(verify(b"s3cret", &t, "other", 999).is_err());
        assert!(verify(b"s3cret", &t, "team", 1000).is_err());
        assert!(verify(b"wrong", &t, "team", 1).is_err());
        assert!(verify(b"s3cret", "garbage", "team", 1).is_err());
        assert_eq!(peek(&t), Ok(c));
        assert!(peek("garbage").is_err());
        let tampered = t.replacen("sb1.7b", "sb1.7c", 1);
        assert!(verify(b"s3cret", &tampered, "team", 1).is_err());
    }

    #[test]
    fn collection_rights_go_by_the_highest_matching_pattern() {
        let c = Claims {
            space: "team".into(),
            rights: Rights::Read,
            exp: 1000,
            collections: Some(
                parse_collections("notes/*:write, audit:read,notes/x*:admin").expect("valid"),
            ),
        };
        let t = mint(b"s3cret", &c);
        assert!(t.starts_with("sb2."), "{t}");
        // The same claims under the old prefix are refused: an old verifier would read them
        // as a token for the whole space, so nobody mints that.
        let relabelled = t.replacen("sb2.", "sb1.", 1);
        assert!(verify(b"s3cret", &relabelled, "team", 1).is_err());
        assert!(peek(&relabelled).is_err());
        // What a verifier older than scopes checks (the body alone) fails on it.
        let (_, rest) = t.split_at(4);
        let (body, sig) = rest.split_once('.').expect("two parts");
        assert_ne!(hex(&mac(b"s3cret", body.as_bytes())), sig);
        let g = verify(b"s3cret", &t, "team", 1).expect("verifies");
        assert!(g.is_scoped());
        assert_eq!(g.on("notes/a"), Some(Rights::Write));
        assert_eq!(g.on("notes/xy"), Some(Rights::Admin));
        assert_eq!(g.on("audit"), Some(Rights::Read));
        // A pattern without `*` is one name; `notes/*` does not match `notes`.
        assert_eq!(g.on("audit2"), None);
        assert_eq!(g.on("notes"), None);
        assert!(!g.reads("users"));
        // `_config` follows the token's own rights.
        assert_eq!(g.on("_config"), Some(Rights::Read));
        assert_eq!(
            Grant::all(Rights::Write).on("anything"),
            Some(Rights::Write)
        );
        assert_eq!(
            parse_collections("*:read").expect("valid").get("*"),
            Some(&Rights::Read)
        );
        for bad in [
            "",
            "notes",
            "notes:own",
            ":read",
            "a\u{1}:read",
            "_config:admin",
        ] {
            assert!(parse_collections(bad).is_err(), "{bad}");
        }
        // A subscription may name only what the token reads.
        assert!(g.reads_all("notes/a") && g.reads_all("notes/x*") && g.reads_all("audit"));
        assert!(!g.reads_all("audit*") && !g.reads_all("notes*") && !g.reads_all("*"));
        assert!(Grant::all(Rights::Read).reads_all("*"));
        assert!(matches_any(&["a".into(), "b*".into()], "bc"));
        // A token minted before collections existed reads as the whole space.
        let old = "{\"space\":\"team\",\"rights\":\"read\",\"exp\":5}";
        let claims: Claims = serde_json::from_str(old).expect("old claims");
        assert_eq!(claims.grant(), Grant::all(Rights::Read));
    }
}
