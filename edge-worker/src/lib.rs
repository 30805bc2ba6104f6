//! # edge-worker — Sacred Bridge on Cloudflare Workers
//!
//! A thin host around `bridge-core`, like the native host but on the edge:
//!
//! - the **Worker** ([`fetch`]) answers `/healthz` itself and routes every
//!   `/v1/spaces/{space}/...` request to the Durable Object named by the space
//!   (`id_from_name(space)`), WebSocket upgrades included;
//! - the **Durable Object** ([`object::SpaceObject`], class `SpaceObject`, binding `SPACES`)
//!   runs a replica of tier `cloud`, keeps it in SQLite-backed storage with the shared schema
//!   ([`store`]), accepts hibernatable WebSockets ([`session`] says what survives
//!   hibernation), and serves the same HTTP API as the native host through
//!   `bridge_core::api`.
//!
//! Tokens are required everywhere (the secret is the Worker secret `BRIDGE_SECRET`, or
//! `.dev.vars` under `wrangler dev`); without a secret the Worker refuses every space request.
//! Built with `worker-build` (see wrangler.toml and scripts/edge-build.sh); the crate also
//! compiles natively so that `cargo test --workspace` and clippy cover it.

pub mod object;
pub mod session;
pub mod store;

use bridge_core::api::{self, ApiError};
use bridge_core::{check_name, ErrorCode};
use worker::{event, Context, Env, Request, Response, Result};

/// The Durable Object namespace binding (wrangler.toml).
pub const BINDING: &str = "SPACES";

/// Where the Worker sends a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Health,
    /// The Durable Object of this space.
    Space(String),
    NotFound,
}

/// Routes a path: `/healthz`, `/v1/spaces/{space}/...`, or nothing.
pub fn target(path: &str) -> std::result::Result<Target, ApiError> {
    if path == "/healthz" {
        return Ok(Target::Health);
    }
    let Some(rest) = path.strip_prefix("/v1/spaces/") else {
        return Ok(Target::NotFound);
    };
    let (seg, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if tail.is_empty() {
        return Ok(Target::NotFound);
    }
    let space = api::percent_decode(seg);
    check_name("space", &space, false)?;
    Ok(Target::Space(space))
}

fn json(e: &ApiError) -> Result<Response> {
    let r = e.response();
    let mut resp = Response::from_bytes(r.body)?.with_status(r.status);
    resp.headers_mut().set("content-type", r.content_type)?;
    Ok(resp)
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    let space = match target(&path) {
        Ok(Target::Health) => return Response::from_json(&serde_json::json!({"ok": true})),
        Ok(Target::Space(space)) => space,
        Ok(Target::NotFound) => {
            return json(&ApiError::not_found(format!(
                "no route for {path}: the edge serves /healthz and /v1/spaces/{{space}}/..."
            )))
        }
        Err(e) => return json(&e),
    };
    if object::secret(&env).is_none() {
        return json(&ApiError::new(
            ErrorCode::Internal,
            "BRIDGE_SECRET is not set: run `npx wrangler secret put BRIDGE_SECRET` (locally: .dev.vars)",
        ));
    }
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(&space)?
        .get_stub()?;
    stub.fetch_with_request(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(target("/healthz"), Ok(Target::Health));
        assert_eq!(
            target("/v1/spaces/team/ws"),
            Ok(Target::Space("team".into()))
        );
        assert_eq!(
            target("/v1/spaces/a%20b/docs/c/x"),
            Ok(Target::Space("a b".into()))
        );
        assert_eq!(target("/v1/spaces/team"), Ok(Target::NotFound));
        assert_eq!(target("/other"), Ok(Target::NotFound));
        let e = target("/v1/spaces/_config/ws").unwrap_err();
        assert_eq!(e.status, 400);
    }
}
