//! The HTTP API as values: request in, engine calls, response out. No sockets, no async, no
//! clock (time comes in as `now_ms`), so the native host and the edge worker serve the same
//! paths with the same code: a transport turns its request into an [`ApiRequest`], calls
//! [`parse`], [`authorize`] and [`execute`], and writes the [`ApiResponse`] back (for
//! [`Outcome::AfterAck`], once the engine reports the write durable).
//!
//! Paths (all bodies and answers are JSON unless said otherwise):
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | GET | `/v1/spaces/{space}/docs/{collection}/{id}` | the document (404 when absent) |
//! | PUT / PATCH | `/v1/spaces/{space}/docs/{collection}/{id}` | replace / merge-patch; answered once durable |
//! | DELETE | `/v1/spaces/{space}/docs/{collection}/{id}` | tombstone; answered once durable |
//! | GET | `/v1/spaces/{space}/docs/{collection}?after=&limit=` | a page of documents |
//! | GET | `/v1/spaces/{space}/changes?since=&limit=` | documents changed since a cursor |
//! | POST | `/v1/spaces/{space}/messages/{channel}` | publish the body; answered once stored |
//! | GET | `/v1/spaces/{space}/conflicts?collection=` | open conflicts |
//! | GET | `/v1/spaces/{space}/conflicts/{collection}/{id}` | one open conflict (404 when none) |
//! | POST | `/v1/spaces/{space}/conflicts/{collection}/{id}/resolve` | resolve with the body (`null` deletes) |
//! | PUT | `/v1/spaces/{space}/policies/{collection}` | set a policy: `{"policy":"merge"}` |
//! | GET | `/v1/spaces/{space}/presence` | who is connected, here and through peers |
//! | GET | `/v1/spaces/{space}/export` | NDJSON, one `{"collection","id","value"}` a line |
//! | POST | `/v1/spaces/{space}/import` | the same NDJSON; answered once durable |
//!
//! A changes cursor is the space version vector as `replica:counter,...` (hex replica ids);
//! the empty cursor means "from the beginning".

use crate::auth::{self, Rights};
use crate::frame::MAX_FRAME_BYTES;
use crate::replica::CONFIG_COLLECTION;
use crate::{
    check_name, DocKey, Engine, Error, ErrorCode, Policy, ReplicaId, VersionVector, WriteOp,
};
use serde_json::{json, Map, Value};

/// A request as any transport hands it over.
#[derive(Clone, Copy, Debug)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json(status: u16, v: &Value) -> Self {
        ApiResponse {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        ApiResponse {
            status,
            content_type,
            body: body.into_bytes(),
        }
    }
}

/// An error answer: `{"error":{"code":..,"message":..}}` with the code's HTTP status.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.http_status(),
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn response(&self) -> ApiResponse {
        ApiResponse::json(
            self.status,
            &json!({"error": {"code": self.code.as_str(), "message": self.message}}),
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// What a request asks of a space.
#[derive(Clone, Debug, PartialEq)]
pub enum SpaceOp {
    GetDoc(DocKey),
    Write(DocKey, WriteKind, Option<Map<String, Value>>),
    List {
        collection: String,
        after: Option<String>,
        limit: usize,
    },
    Changes {
        since: VersionVector,
        limit: usize,
    },
    Publish {
        channel: String,
        payload: Value,
    },
    Conflicts {
        collection: Option<String>,
    },
    Conflict(DocKey),
    Presence,
    Resolve {
        key: DocKey,
        value: Option<Map<String, Value>>,
    },
    SetPolicy {
        collection: String,
        policy: Policy,
    },
    Export,
    Import(Vec<ImportLine>),
}

/// One document of an import: its key and value (`None` deletes).
pub type ImportLine = (DocKey, Option<Map<String, Value>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Patch,
    Delete,
}

impl SpaceOp {
    /// The rights a token must grant.
    pub fn needs(&self) -> Rights {
        match self {
            SpaceOp::GetDoc(_)
            | SpaceOp::List { .. }
            | SpaceOp::Changes { .. }
            | SpaceOp::Conflicts { .. }
            | SpaceOp::Conflict(_)
            | SpaceOp::Presence
            | SpaceOp::Export => Rights::Read,
            SpaceOp::Write(..) | SpaceOp::Publish { .. } | SpaceOp::Resolve { .. } => Rights::Write,
            SpaceOp::SetPolicy { .. } | SpaceOp::Import(_) => Rights::Admin,
        }
    }
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    Health,
    Metrics,
    /// Host status (counts, sessions, peers).
    Status,
    /// Manual sync of the upstream link (hybrid mode).
    Sync {
        push: bool,
        pull: bool,
    },
    Space {
        space: String,
        op: SpaceOp,
    },
}

/// Largest request body accepted (an import can hold many documents).
pub const MAX_BODY_BYTES: usize = 32 << 20;

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (query_decode(k) == name).then(|| query_decode(v))
    })
}

/// Decodes one URL path segment as RFC 3986 says: `%XX` only, so `+` stays a plus and a
/// document id means the same over HTTP as over WebSocket. Bytes that are not UTF-8 after
/// decoding become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Decodes a query-string key or value (`application/x-www-form-urlencoded`: `+` is a
/// space, then `%XX`).
pub fn query_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(Error::TooLarge {
            size: body.len(),
            max: MAX_FRAME_BYTES,
        }
        .into());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::Malformed, format!("the body is not JSON: {e}")))?;
    crate::codec::check_value_depth(&v)?;
    Ok(v)
}

fn object(v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad(format!(
            "a document must be a JSON object, got {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a page size: 1 to `max`, else `bad_request` (the same answer over WebSocket and
/// HTTP; nothing is clamped silently).
pub fn check_limit(n: u64, max: u64) -> Result<usize, Error> {
    if (1..=max).contains(&n) {
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    } else {
        Err(Error::BadLimit { got: n, max })
    }
}

fn limit(query: Option<&str>, default: usize, max: u64) -> Result<usize, ApiError> {
    match query_param(query, "limit") {
        None => Ok(default),
        Some(v) => {
            let n = v.parse::<u64>().map_err(|_| {
                ApiError::bad(format!(
                    "limit={v:?}: expected a whole number from 1 to {max}"
                ))
            })?;
            Ok(check_limit(n, max)?)
        }
    }
}

/// Parses a changes cursor: `replica:counter,...` (hex replica ids) or a JSON object.
pub fn parse_cursor(s: &str) -> Result<VersionVector, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(VersionVector::new());
    }
    if s.starts_with('{') {
        return serde_json::from_str(s)
            .map_err(|e| ApiError::bad(format!("the cursor is not a version vector: {e}")));
    }
    let mut v = VersionVector::new();
    for part in s.split(',') {
        let (r, c) = part.split_once(':').ok_or_else(|| {
            ApiError::bad(format!(
                "cursor part {part:?}: expected replica:counter (e.g. 00ab12cd34ef5678:42)"
            ))
        })?;
        let r: ReplicaId = r.parse()?;
        let c: u64 = c
            .parse()
            .map_err(|_| ApiError::bad(format!("cursor counter {c:?} is not a number")))?;
        v.raise(r, c);
    }
    Ok(v)
}

pub fn format_cursor(v: &VersionVector) -> String {
    v.iter()
        .map(|(r, c)| format!("{r}:{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Maps a request to a route, validating everything that does not need the engine.
pub fn parse(req: &ApiRequest<'_>) -> Result<Route, ApiError> {
    let segs: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method;
    let q = req.query;
    let bad_method = || ApiError {
        status: 405,
        code: ErrorCode::BadRequest,
        message: format!("{m} is not allowed on {}", req.path),
    };
    let route = match segs.as_slice() {
        ["healthz"] if m == "GET" => Route::Health,
        ["metrics"] if m == "GET" => Route::Metrics,
        ["v1", "status"] if m == "GET" => Route::Status,
        ["v1", "sync"] if m == "POST" => {
            let dir = query_param(q, "direction").unwrap_or_default();
            Route::Sync {
                push: dir != "pull",
                pull: dir != "push",
            }
        }
        ["healthz"] | ["metrics"] | ["v1", "status"] | ["v1", "sync"] => return Err(bad_method()),
        ["v1", "spaces", space, rest @ ..] => {
            check_name("space", space, false)?;
            let op = space_op(m, rest, q, req.body).map_err(|e| {
                if e.status == 405 {
                    bad_method()
                } else {
                    e
                }
            })?;
            Route::Space {
                space: (*space).to_owned(),
                op,
            }
        }
        _ => return Err(ApiError::not_found(format!("no route for {}", req.path))),
    };
    Ok(route)
}

/// A 405 error means the path exists but not with this method.
fn space_op(m: &str, rest: &[&str], q: Option<&str>, body: &[u8]) -> Result<SpaceOp, ApiError> {
    let none = || ApiError {
        status: 405,
        code: ErrorCode::BadRequest,
        message: String::new(),
    };
    let key = |c: &str, id: &str| -> Result<DocKey, ApiError> {
        check_name("collection", c, false)?;
        check_name("document id", id, true)?;
        Ok(DocKey::new(c, id))
    };
    let op = match (m, rest) {
        ("GET", ["docs", c, id]) => SpaceOp::GetDoc(key(c, id)?),
        ("PUT", ["docs", c, id]) => {
            let v = object(parse_json(body)?)?;
            SpaceOp::Write(key(c, id)?, WriteKind::Put, Some(v))
        }
        ("PATCH", ["docs", c, id]) => {
            let v = object(parse_json(body)?)?;
            SpaceOp::Write(key(c, id)?, WriteKind::Patch, Some(v))
        }
        ("DELETE", ["docs", c, id]) => SpaceOp::Write(key(c, id)?, WriteKind::Delete, None),
        (_, ["docs", _, _]) => return Err(none()),
        ("GET", ["docs", c]) => {
            check_name("collection", c, false)?;
            SpaceOp::List {
                collection: (*c).to_owned(),
                after: query_param(q, "after").filter(|a| !a.is_empty()),
                limit: limit(q, 100, 1000)?,
            }
        }
        (_, ["docs", _]) => return Err(none()),
        ("GET", ["changes"]) => SpaceOp::Changes {
            since: parse_cursor(&query_param(q, "since").unwrap_or_default())?,
            limit: limit(q, 1000, 10_000)?,
        },
        (_, ["changes"]) => return Err(none()),
        ("POST", ["messages", ch]) => {
            check_name("channel", ch, false)?;
            SpaceOp::Publish {
                channel: (*ch).to_owned(),
                payload: parse_json(body)?,
            }
        }
        (_, ["messages", _]) => return Err(none()),
        ("GET", ["conflicts"]) => SpaceOp::Conflicts {
            collection: query_param(q, "collection").filter(|c| !c.is_empty()),
        },
        (_, ["conflicts"]) => return Err(none()),
        ("GET", ["conflicts", c, id]) => SpaceOp::Conflict(key(c, id)?),
        (_, ["conflicts", _, _]) => return Err(none()),
        ("GET", ["presence"]) => SpaceOp::Presence,
        (_, ["presence"]) => return Err(none()),
        ("POST", ["conflicts", c, id, "resolve"]) => {
            let value = match parse_json(body)? {
                Value::Null => None,
                v => Some(object(v)?),
            };
            SpaceOp::Resolve {
                key: key(c, id)?,
                value,
            }
        }
        (_, ["conflicts", _, _, "resolve"]) => return Err(none()),
        ("PUT", ["policies", c]) => {
            check_name("collection", c, false)?;
            let p = match parse_json(body)? {
                Value::String(s) => s,
                Value::Object(o) => match o.get("policy") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return Err(ApiError::bad(
                            "expected {\"policy\": \"lww|cloud_wins|local_wins|merge|manual\"}",
                        ))
                    }
                },
                other => {
                    return Err(ApiError::bad(format!(
                        "expected {{\"policy\": ...}}, got {}",
                        kind(&other)
                    )))
                }
            };
            SpaceOp::SetPolicy {
                collection: (*c).to_owned(),
                policy: p.parse::<Policy>().map_err(ApiError::from)?,
            }
        }
        (_, ["policies", _]) => return Err(none()),
        ("GET", ["export"]) => SpaceOp::Export,
        (_, ["export"]) => return Err(none()),
        ("POST", ["import"]) => SpaceOp::Import(parse_ndjson(body)?),
        (_, ["import"]) => return Err(none()),
        _ => {
            return Err(ApiError::not_found(format!(
                "no route for /{}",
                rest.join("/")
            )))
        }
    };
    Ok(op)
}

fn parse_ndjson(body: &[u8]) -> Result<Vec<ImportLine>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorCode::Malformed, "the body is not UTF-8"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at =
            |msg: String| ApiError::new(ErrorCode::Malformed, format!("line {}: {msg}", n + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        crate::codec::check_value_depth(&v).map_err(|e| at(e.to_string()))?;
        let field = |name: &str| -> Result<String, ApiError> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| at(format!("expected a string field `{name}`")))
        };
        let (c, id) = (field("collection")?, field("id")?);
        check_name("collection", &c, c == CONFIG_COLLECTION).map_err(|e| at(e.to_string()))?;
        check_name("document id", &id, true).map_err(|e| at(e.to_string()))?;
        let value = match v.get("value") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(other) => {
                return Err(at(format!(
                    "`value` must be an object, got {}",
                    kind(other)
                )))
            }
        };
        out.push((DocKey::new(c, id), value));
    }
    Ok(out)
}

/// What executing an operation gives.
#[derive(Debug)]
pub enum Outcome {
    /// Answer now.
    Done(ApiResponse),
    /// Answer with `response` once the engine reports `Event::Acked { req }`.
    AfterAck { req: u64, response: ApiResponse },
}

/// Checks the token for a space operation. Without a secret everything is allowed.
pub fn authorize(
    secret: Option<&[u8]>,
    token: Option<&str>,
    space: &str,
    needs: Rights,
    now_ms: u64,
) -> Result<(), ApiError> {
    let Some(secret) = secret else { return Ok(()) };
    let Some(token) = token else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this server requires a token: send `Authorization: Bearer <token>` (mint one with `sacred-bridge token create`)",
        ));
    };
    let has = auth::verify(secret, token, space, now_ms)?;
    if has < needs {
        return Err(Error::Forbidden {
            has: has.as_str(),
            needs: needs.as_str(),
        }
        .into());
    }
    Ok(())
}

/// Runs `op` on the space's engine. `next_req` hands out request ids for
/// [`Engine::write`] / [`Engine::publish`].
pub fn execute(
    engine: &mut Engine,
    now_ms: u64,
    next_req: &mut dyn FnMut() -> u64,
    op: SpaceOp,
) -> Result<Outcome, ApiError> {
    let r = engine.replica();
    let done = |v: Value| Ok(Outcome::Done(ApiResponse::json(200, &v)));
    match op {
        SpaceOp::GetDoc(key) => {
            let view = r.view(&key);
            if view.value.is_none() {
                return Err(ApiError::not_found(format!(
                    "document {}/{} does not exist",
                    key.collection, key.id
                )));
            }
            done(to_value(&view))
        }
        SpaceOp::List {
            collection,
            after,
            limit,
        } => {
            let mut docs = r.list(&collection, after.as_deref(), limit + 1);
            let next = if docs.len() > limit {
                docs.truncate(limit);
                docs.last().map(|d| d.id.clone())
            } else {
                None
            };
            done(json!({"docs": to_value(&docs), "next": next}))
        }
        SpaceOp::Changes { since, limit } => {
            let delta = r.delta(&since, limit);
            // The delta's watermark names only the ranges walked now; the cursor to pass back
            // is everything seen so far, so `since` is part of it.
            let mut cursor = since;
            cursor.join(&delta.watermark);
            let changes: Vec<Value> = delta
                .docs
                .iter()
                .filter(|e| e.collection != CONFIG_COLLECTION)
                .map(|e| to_value(&r.view(&DocKey::new(&e.collection, &e.id))))
                .collect();
            done(json!({
                "changes": changes,
                "cursor": format_cursor(&cursor),
                "remaining": delta.remaining,
            }))
        }
        SpaceOp::Conflicts { collection } => {
            done(json!({"conflicts": to_value(&r.conflicts(collection.as_deref()))}))
        }
        SpaceOp::Conflict(key) => match r.conflict(&key) {
            Some(c) => done(to_value(&c)),
            None => Err(ApiError::not_found(format!(
                "document {}/{} has no open conflict",
                key.collection, key.id
            ))),
        },
        SpaceOp::Presence => done(json!({"agents": to_value(&engine.presence())})),
        SpaceOp::Export => {
            let all = r.delta(&VersionVector::new(), usize::MAX);
            let mut keys: Vec<DocKey> = all
                .docs
                .into_iter()
                .map(|e| DocKey::new(e.collection, e.id))
                .collect();
            keys.sort();
            let mut out = String::new();
            for k in keys {
                if let Some(value) = r.get(&k) {
                    out.push_str(
                        &json!({"collection": k.collection, "id": k.id, "value": value})
                            .to_string(),
                    );
                    out.push('\n');
                }
            }
            Ok(Outcome::Done(ApiResponse::text(
                200,
                "application/x-ndjson",
                out,
            )))
        }
        SpaceOp::Write(key, kind, value) => {
            let op = match (kind, value) {
                (WriteKind::Put, Some(v)) => WriteOp::Put(v),
                (WriteKind::Patch, Some(v)) => WriteOp::Patch(v),
                _ => WriteOp::Delete,
            };
            let req = next_req();
            let dot = engine.write(now_ms, req, key.clone(), op)?;
            Ok(written(engine, req, dot, &key))
        }
        SpaceOp::Resolve { key, value } => {
            let req = next_req();
            let dot = engine.resolve(now_ms, req, key.clone(), value)?;
            Ok(written(engine, req, dot, &key))
        }
        SpaceOp::SetPolicy { collection, policy } => {
            let req = next_req();
            let dot = engine.set_policy(now_ms, req, &collection, policy)?;
            Ok(Outcome::AfterAck {
                req,
                response: ApiResponse::json(
                    200,
                    &json!({"dot": to_value(&dot), "collection": collection, "policy": policy.as_str()}),
                ),
            })
        }
        SpaceOp::Publish { channel, payload } => {
            let req = next_req();
            let id = engine.publish(now_ms, req, &channel, payload)?;
            Ok(Outcome::AfterAck {
                req,
                response: ApiResponse::json(200, &json!({"id": to_value(&id), "channel": channel})),
            })
        }
        SpaceOp::Import(docs) => {
            let n = docs.len();
            let mut last = None;
            for (key, value) in docs {
                let req = next_req();
                let op = value.map_or(WriteOp::Delete, WriteOp::Put);
                engine.write(now_ms, req, key, op)?;
                last = Some(req);
            }
            let response = ApiResponse::json(200, &json!({"imported": n}));
            // Acks are released batch by batch in order, so the last one vouches for all.
            Ok(match last {
                Some(req) => Outcome::AfterAck { req, response },
                None => Outcome::Done(response),
            })
        }
    }
}

/// The answer to a document write, sent once the write is durable.
fn written(engine: &Engine, req: u64, dot: crate::Dot, key: &DocKey) -> Outcome {
    let view = engine.replica().view(key);
    Outcome::AfterAck {
        req,
        response: ApiResponse::json(200, &json!({"dot": to_value(&dot), "doc": to_value(&view)})),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineConfig, Tier};

    fn req<'a>(method: &'a str, path: &'a str, body: &'a [u8]) -> ApiRequest<'a> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        ApiRequest {
            method,
            path,
            query,
            body,
        }
    }

    #[test]
    fn routes_and_errors() {
        let r = parse(&req("PUT", "/v1/spaces/s/docs/notes/a%20b", br#"{"t":1}"#));
        let Ok(Route::Space { space, op }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(space, "s");
        assert!(matches!(op, SpaceOp::Write(k, WriteKind::Put, Some(_)) if k.id == "a b"));
        let e = parse(&req("PUT", "/v1/spaces/s/docs/notes/a", b"[1]")).unwrap_err();
        assert_eq!((e.status, e.code), (400, ErrorCode::BadRequest));
        let e = parse(&req("PUT", "/v1/spaces/s/docs/notes/a", b"{")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        let e = parse(&req("POST", "/v1/spaces/s/docs/notes/a", b"{}")).unwrap_err();
        assert_eq!(e.status, 405);
        let e = parse(&req("GET", "/v2/x", b"")).unwrap_err();
        assert_eq!(e.status, 404);
        let e = parse(&req("GET", "/v1/spaces/_x/docs/c", b"")).unwrap_err();
        assert_eq!(e.status, 400);
        let v = parse_cursor("00000000000000ab:3,1:2").expect("cursor");
        assert_eq!(format_cursor(&v), "0000000000000001:2,00000000000000ab:3");
    }

    #[test]
    fn paths_decode_as_rfc_3986_and_queries_as_forms() {
        assert_eq!(percent_decode("a+b%20c%2B"), "a+b c+");
        assert_eq!(query_decode("a+b%2B"), "a b+");
        let Ok(Route::Space { op, .. }) = parse(&req("GET", "/v1/spaces/s/docs/c/a+b", b"")) else {
            panic!("route")
        };
        assert_eq!(op, SpaceOp::GetDoc(DocKey::new("c", "a+b")));
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=x"] {
            let e = parse(&req("GET", &format!("/v1/spaces/s/docs/c?{bad}"), b"")).unwrap_err();
            assert_eq!((e.status, e.code), (400, ErrorCode::BadRequest), "{bad}");
        }
        assert_eq!(check_limit(1000, 1000), Ok(1000));
    }

    #[test]
    fn write_then_read_through_execute() {
        let mut e = Engine::new(EngineConfig::new(ReplicaId(7), Tier::Local, "s"));
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let Ok(Route::Space { op, .. }) =
            parse(&req("PUT", "/v1/spaces/s/docs/c/x", br#"{"a":1}"#))
        else {
            panic!("route")
        };
        let out = execute(&mut e, 10, &mut next, op).expect("write");
        assert!(matches!(out, Outcome::AfterAck { req: 1, .. }));
        while let Some(b) = e.poll_persist() {
            e.persisted(b.id).expect("persisted");
        }
        let Ok(Route::Space { op, .. }) = parse(&req("GET", "/v1/spaces/s/changes?since=", b""))
        else {
            panic!("route")
        };
        let Ok(Outcome::Done(resp)) = execute(&mut e, 11, &mut next, op) else {
            panic!("changes")
        };
        let v: Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(v["changes"][0]["value"]["a"], 1);
        // Write 1 of replica 7 is the space's default-policy seed (`_config/space`), which
        // the changes feed leaves out but its cursor covers.
        assert_eq!(v["cursor"], "0000000000000007:2");
    }
}
