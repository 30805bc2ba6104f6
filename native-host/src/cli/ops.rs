//! `backup`, `restore`, `deploy`, `export` and `import`: the operator's commands. The work on
//! files and processes is `crate::ops`; this is where each finds its database or host.

use super::client::{Ctx, Target};
use super::print;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http_client::request;
use serde_json::json;
use std::process::ExitCode;

/// `backup`: the database the running host reports, else the configured one.
pub(super) async fn backup(
    cfg: &Config,
    file: String,
    db: Option<String>,
    force: bool,
    t: Target,
) -> Result<ExitCode> {
    let db = match db {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            // The running host knows its database; else the configured one.
            let c = Ctx::new(cfg, t);
            match c.status().await.map(|s| s.host) {
                Ok(Some(host)) => std::path::PathBuf::from(host.db),
                _ => cfg.db_path.clone(),
            }
        }
    };
    crate::ops::backup(&db, std::path::Path::new(&file), force)
}

/// `restore`: into `--db`, else the configured database.
pub(super) fn restore(
    cfg: &Config,
    file: String,
    db: Option<String>,
    force: bool,
) -> Result<ExitCode> {
    let db = db.map_or_else(|| cfg.db_path.clone(), std::path::PathBuf::from);
    crate::ops::restore(std::path::Path::new(&file), &db, force)
}

/// `deploy`: `npx wrangler deploy`.
pub(super) fn deploy(config: Option<String>, extra: &[String]) -> Result<ExitCode> {
    crate::ops::deploy(config.as_deref().map(std::path::Path::new), extra)
}

/// `export`: the space as NDJSON, passed through as the host wrote it.
pub(super) async fn export(cfg: &Config, t: Target) -> Result<ExitCode> {
    let c = Ctx::new(cfg, t);
    let (status, body) =
        request(&c.api, "GET", &c.path("export"), None, c.token.as_deref()).await?;
    if status >= 400 {
        return Err(Error::RefusedRaw(
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    print!("{}", String::from_utf8_lossy(&body));
    Ok(ExitCode::SUCCESS)
}

/// `import`: stream FILE to the host in batches (the file is never read whole: a first pass
/// counts its lines for the progress bar, a second sends them).
pub(super) async fn import(
    cfg: &Config,
    file: String,
    batch: usize,
    t: Target,
) -> Result<ExitCode> {
    let unread = |source| Error::ImportUnread {
        file: file.clone(),
        source,
    };
    let total = for_each_line(&file, |_| Ok(())).map_err(unread)?;
    let reader = std::fs::File::open(&file).map_err(unread)?;
    let c = Ctx::new(cfg, t);
    send_batches(
        &c,
        &file,
        std::io::BufReader::new(reader),
        total,
        batch.max(1),
    )
    .await
}

/// Calls `f` with each non-blank line of `file` (without its newline); returns their number.
fn for_each_line(
    file: &str,
    mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    use std::io::BufRead;
    let mut r = std::io::BufReader::new(std::fs::File::open(file)?);
    let (mut line, mut n) = (Vec::new(), 0u64);
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(n);
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            n += 1;
            f(&line)?;
        }
    }
}

/// The file's lines in batches of `batch` lines (or 4 MB), one request each, so a
/// large import neither holds the host to one huge transaction nor shows nothing for minutes.
/// Memory holds one batch, whatever the file's size.
async fn send_batches(
    c: &Ctx,
    file: &str,
    mut reader: impl std::io::BufRead,
    total: u64,
    batch: usize,
) -> Result<ExitCode> {
    const MAX_BATCH_BYTES: usize = 4 << 20;
    let unread = |source| Error::ImportUnread {
        file: file.to_owned(),
        source,
    };
    let mut bar = crate::progress::Progress::new("import");
    let (mut done, mut imported) = (0u64, 0u64);
    let mut chunk: Vec<u8> = Vec::new();
    let mut in_chunk = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let end = reader.read_until(b'\n', &mut line).map_err(unread)? == 0;
        if !end && !line.iter().all(u8::is_ascii_whitespace) {
            chunk.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(&line));
            chunk.push(b'\n');
            in_chunk += 1;
        }
        if in_chunk == 0 || (!end && in_chunk < batch as u64 && chunk.len() < MAX_BATCH_BYTES) {
            if end {
                break;
            }
            continue;
        }
        let v = c
            .call("POST", &c.path("import"), Some(std::mem::take(&mut chunk)))
            .await
            .map_err(|e| Error::ImportStopped {
                source: Box::new(e),
                first: done + 1,
                last: done + in_chunk,
                file: file.to_owned(),
                done,
            })?;
        imported += v["imported"].as_u64().unwrap_or(0);
        done += in_chunk;
        in_chunk = 0;
        bar.update(done, total, "docs");
        if end {
            break;
        }
    }
    bar.finish();
    print(&json!({ "imported": imported }));
    Ok(ExitCode::SUCCESS)
}
