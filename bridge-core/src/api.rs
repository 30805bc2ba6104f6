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

use crate::auth::{self, Grant};
use crate::frame::MAX_FRAME_BYTES;
use crate::replica::CONFIG_COLLECTION;
use crate::request::{kind, object, optional_object, page_limit, CHANGES_LIMIT, LIST_LIMIT};
use crate::request::{Answer, ImportLine, Reply, Request};
use crate::{
    check_name, DocKey, Engine, Error, ErrorCode, Policy, ReplicaId, VersionVector, WriteOp,
};
use serde_json::{json, Value};

/// A request as any transport hands it over.
#[derive(Clone, Copy, Debug)]
pub struct ApiRequest<'a> {
    /// The HTTP method, upper case (`GET`, `PUT`, ...).
    pub method: &'a str,
    /// The path, still percent-encoded, without the query (`/v1/spaces/team/docs/notes/n1`).
    pub path: &'a str,
    /// The query string without its `?`, still encoded; `None` when there is none.
    pub query: Option<&'a str>,
    /// The body's bytes (empty when there is none). [`parse`] refuses a JSON body over
    /// [`crate::frame::MAX_FRAME_BYTES`]; the transport should refuse anything over
    /// [`MAX_BODY_BYTES`] before reading it all.
    pub body: &'a [u8],
}

/// An answer for the transport to write back as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header's value.
    pub content_type: &'static str,
    /// The body's bytes.
    pub body: Vec<u8>,
    /// An export page that is not the last: the key the next page starts after. The host
    /// asks for it ([`Request::Export`]) and sends the pages as one body.
    pub next: Option<DocKey>,
}

impl ApiResponse {
    /// A JSON answer: `v` serialized, `application/json`.
    pub fn json(status: u16, v: &Value) -> Self {
        ApiResponse {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            next: None,
        }
    }

    /// A text answer with its own content type (NDJSON exports, metrics).
    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        ApiResponse {
            status,
            content_type,
            body: body.into_bytes(),
            next: None,
        }
    }
}

/// An error answer: `{"error":{"code":..,"message":..}}` with the code's HTTP status.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status: the code's ([`ErrorCode::http_status`]) unless made otherwise (405 for
    /// a method a path does not take).
    pub status: u16,
    /// The stable code, written as `error.code`.
    pub code: ErrorCode,
    /// What went wrong, written as `error.message`.
    pub message: String,
}

impl ApiError {
    /// An error with `code`'s HTTP status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.http_status(),
            code,
            message: message.into(),
        }
    }

    /// A `not_found` (404) error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// A `bad_request` (400) error.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// The error as an HTTP answer: `{"error":{"code":..,"message":..}}` with its status.
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

/// Where a request goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// `GET /healthz`: the host answers that it is up; no space, no token.
    Health,
    /// `GET /metrics`: the host's metrics (it decides who may read them).
    Metrics,
    /// Host status (counts, sessions, peers).
    Status,
    /// Manual sync of the upstream link (hybrid mode).
    Sync {
        /// Push what the cloud lacks (`direction` is not `pull`).
        push: bool,
        /// Pull what we lack (`direction` is not `push`).
        pull: bool,
    },
    /// A request of a space, run by [`crate::Engine::request`].
    Space {
        /// The space named in the path (checked as a name).
        space: String,
        /// The request, with its limits checked as far as they need no engine.
        request: Request,
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

fn limit(query: Option<&str>, limits: (usize, u64)) -> Result<usize, ApiError> {
    let n = match query_param(query, "limit") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad(format!(
                "limit={v:?}: expected a whole number from 1 to {}",
                limits.1
            ))
        })?),
    };
    Ok(page_limit(n, limits)?)
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

/// Formats a version vector as a changes cursor: `replica:counter` pairs (16-digit hex
/// replica ids) joined by `,`, in replica order; the empty vector is the empty string.
/// [`parse_cursor`] reads it back.
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
            let request = space_request(m, rest, q, req.body).map_err(|e| {
                if e.status == 405 {
                    bad_method()
                } else {
                    e
                }
            })?;
            Route::Space {
                space: (*space).to_owned(),
                request,
            }
        }
        _ => return Err(ApiError::not_found(format!("no route for {}", req.path))),
    };
    Ok(route)
}

/// A 405 error means the path exists but not with this method.
fn space_request(
    m: &str,
    rest: &[&str],
    q: Option<&str>,
    body: &[u8],
) -> Result<Request, ApiError> {
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
        ("GET", ["docs", c, id]) => Request::Get { key: key(c, id)? },
        ("PUT", ["docs", c, id]) => Request::Write {
            key: key(c, id)?,
            op: WriteOp::Put(object(parse_json(body)?)?),
        },
        ("PATCH", ["docs", c, id]) => Request::Write {
            key: key(c, id)?,
            op: WriteOp::Patch(object(parse_json(body)?)?),
        },
        ("DELETE", ["docs", c, id]) => Request::Write {
            key: key(c, id)?,
            op: WriteOp::Delete,
        },
        (_, ["docs", _, _]) => return Err(none()),
        ("GET", ["docs", c]) => {
            check_name("collection", c, false)?;
            Request::List {
                collection: (*c).to_owned(),
                after: query_param(q, "after").filter(|a| !a.is_empty()),
                limit: limit(q, LIST_LIMIT)?,
            }
        }
        (_, ["docs", _]) => return Err(none()),
        ("GET", ["changes"]) => Request::Changes {
            since: parse_cursor(&query_param(q, "since").unwrap_or_default())?,
            limit: limit(q, CHANGES_LIMIT)?,
        },
        (_, ["changes"]) => return Err(none()),
        ("POST", ["messages", ch]) => {
            check_name("channel", ch, false)?;
            Request::Send {
                channel: (*ch).to_owned(),
                payload: parse_json(body)?,
            }
        }
        (_, ["messages", _]) => return Err(none()),
        ("GET", ["conflicts"]) => Request::Conflicts {
            collection: query_param(q, "collection").filter(|c| !c.is_empty()),
        },
        (_, ["conflicts"]) => return Err(none()),
        ("GET", ["conflicts", c, id]) => Request::Conflict { key: key(c, id)? },
        (_, ["conflicts", _, _]) => return Err(none()),
        ("GET", ["presence"]) => Request::Presence,
        (_, ["presence"]) => return Err(none()),
        ("POST", ["conflicts", c, id, "resolve"]) => Request::Resolve {
            key: key(c, id)?,
            value: optional_object(Some(parse_json(body)?))?,
        },
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
            Request::SetPolicy {
                collection: (*c).to_owned(),
                policy: p.parse::<Policy>().map_err(ApiError::from)?,
            }
        }
        (_, ["policies", _]) => return Err(none()),
        ("GET", ["export"]) => Request::Export { after: None },
        (_, ["export"]) => return Err(none()),
        ("POST", ["import"]) => Request::Import(parse_ndjson(body)?),
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
            Some(other) => return Err(at(Error::NotAnObject(kind(other)).to_string())),
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
    AfterAck {
        /// The number the engine's [`crate::Event::Acked`] will carry.
        req: u64,
        /// The answer to write then.
        response: ApiResponse,
    },
}

/// Checks the token of a request of `space` and says what it grants: everything (`admin`)
/// when the host has no secret. Whether that is enough for the request the engine decides
/// ([`crate::Request::needs`]), as for every other caller.
pub fn authorize(
    secret: Option<&[u8]>,
    token: Option<&str>,
    space: &str,
    now_ms: u64,
) -> Result<Grant, ApiError> {
    let Some(secret) = secret else {
        return Ok(Grant::ADMIN);
    };
    let Some(token) = token else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this server requires a token: send `Authorization: Bearer <token>` (mint one with `sacred-bridge token create`)",
        ));
    };
    Ok(auth::verify(secret, token, space, now_ms)?)
}

/// Runs `request` on the space's engine for a caller holding `grant`
/// ([`crate::Engine::request`]) and renders the reply as HTTP.
pub fn execute(
    engine: &mut Engine,
    now_ms: u64,
    grant: &Grant,
    request: Request,
) -> Result<Outcome, ApiError> {
    Ok(match engine.request(now_ms, grant, request)? {
        Answer::Now(reply) => Outcome::Done(render(engine, reply)?),
        Answer::WhenDurable { req, reply } => Outcome::AfterAck {
            req,
            response: render(engine, reply)?,
        },
    })
}

/// The HTTP answer to a [`Reply`]: JSON, or NDJSON for an export; a missing document is 404.
/// A write is answered with the document as `engine` shows it now.
pub fn render(engine: &Engine, reply: Reply) -> Result<ApiResponse, ApiError> {
    let v = match reply {
        Reply::Doc(doc) if doc.value.is_none() => {
            return Err(ApiError::not_found(format!(
                "document {}/{} does not exist",
                doc.collection, doc.id
            )))
        }
        Reply::Doc(doc) => to_value(&doc),
        Reply::Docs { docs, next } => json!({"docs": to_value(&docs), "next": next}),
        Reply::Changes {
            changes,
            cursor,
            remaining,
        } => json!({
            "changes": to_value(&changes),
            "cursor": format_cursor(&cursor),
            "remaining": remaining,
        }),
        Reply::Conflicts(c) => json!({"conflicts": to_value(&c)}),
        Reply::Conflict(c) => to_value(&c),
        Reply::Presence(agents) => json!({"agents": to_value(&agents)}),
        Reply::Export { docs, next } => {
            let mut out = String::new();
            for (k, value) in docs {
                out.push_str(
                    &json!({"collection": k.collection, "id": k.id, "value": value}).to_string(),
                );
                out.push('\n');
            }
            let mut page = ApiResponse::text(200, "application/x-ndjson", out);
            page.next = next;
            return Ok(page);
        }
        Reply::Written { dot, key } => {
            let doc = engine.replica().view(&key)?;
            json!({"dot": to_value(&dot), "doc": to_value(&doc)})
        }
        Reply::PolicySet {
            dot,
            collection,
            policy,
        } => json!({"dot": to_value(&dot), "collection": collection, "policy": policy.as_str()}),
        Reply::Sent { id, channel } => json!({"id": to_value(&id), "channel": channel}),
        Reply::Imported { count } => json!({"imported": count}),
        Reply::Again { dot } => json!({"dot": to_value(&dot)}),
        Reply::Subscribed { .. } | Reply::Unsubscribed => json!({}),
    };
    Ok(ApiResponse::json(200, &v))
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Rights;
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
        let Ok(Route::Space { space, request }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(space, "s");
        assert!(matches!(request, Request::Write { key, op: WriteOp::Put(_) } if key.id == "a b"));
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
        let Ok(Route::Space { request, .. }) = parse(&req("GET", "/v1/spaces/s/docs/c/a+b", b""))
        else {
            panic!("route")
        };
        let key = DocKey::new("c", "a+b");
        assert_eq!(request, Request::Get { key });
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=x"] {
            let e = parse(&req("GET", &format!("/v1/spaces/s/docs/c?{bad}"), b"")).unwrap_err();
            assert_eq!((e.status, e.code), (400, ErrorCode::BadRequest), "{bad}");
        }
        assert_eq!(page_limit(Some(1000), LIST_LIMIT), Ok(1000));
        assert_eq!(page_limit(None, LIST_LIMIT), Ok(100));
    }

    #[test]
    fn write_then_read_through_execute() {
        let mut e = Engine::new(EngineConfig::new(ReplicaId(7), Tier::Local, "s"));
        let Ok(Route::Space { request, .. }) =
            parse(&req("PUT", "/v1/spaces/s/docs/c/x", br#"{"a":1}"#))
        else {
            panic!("route")
        };
        let out = execute(&mut e, 10, &Grant::all(Rights::Write), request).expect("write");
        let Outcome::AfterAck { req: acked_req, .. } = out else {
            panic!("a write is answered once durable: {out:?}")
        };
        while let Some(b) = e.poll_persist() {
            e.persisted(b.id).expect("persisted");
        }
        let acked = std::iter::from_fn(|| e.poll_event())
            .any(|ev| matches!(ev, crate::Event::Acked { req, .. } if req == acked_req));
        assert!(
            acked,
            "the engine names the request it allocated once durable"
        );
        let Ok(Route::Space { request, .. }) =
            parse(&req("GET", "/v1/spaces/s/changes?since=", b""))
        else {
            panic!("route")
        };
        let Ok(Outcome::Done(resp)) = execute(&mut e, 11, &Grant::all(Rights::Read), request)
        else {
            panic!("changes")
        };
        let v: Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(v["changes"][0]["value"]["a"], 1);
        // Write 1 of replica 7 is the space's default-policy seed (`_config/space`), which
        // the changes feed leaves out but its cursor covers.
        assert_eq!(v["cursor"], "0000000000000007:2");
        // Rights are the engine's to check: a read token cannot write.
        let Ok(Route::Space { request, .. }) = parse(&req(
            "PUT",
            "/v1/spaces/s/policies/c",
            br#"{"policy":"merge"}"#,
        )) else {
            panic!("route")
        };
        let err =
            execute(&mut e, 12, &Grant::all(Rights::Write), request).expect_err("needs admin");
        assert_eq!((err.status, err.code), (403, ErrorCode::Forbidden));
        // An import is checked whole before any of it is written: a bad configuration line
        // after a good document refuses the request and stores neither.
        let body = concat!(
            r#"{"collection":"c","id":"fine","value":{"a":1}}"#,
            "\n",
            r#"{"collection":"_config","id":"collection:c","value":{"policy":"bogus"}}"#,
        );
        let Ok(Route::Space { request, .. }) =
            parse(&req("POST", "/v1/spaces/s/import", body.as_bytes()))
        else {
            panic!("route")
        };
        let err = execute(&mut e, 13, &Grant::all(Rights::Admin), request).expect_err("bad policy");
        assert_eq!(err.code, ErrorCode::BadPolicy);
        assert_eq!(
            e.replica().get(&DocKey::new("c", "fine")).expect("read"),
            None
        );
    }
}
