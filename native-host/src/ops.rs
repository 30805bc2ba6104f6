//! Operator commands that work on files and processes rather than through the API:
//! `backup`, `restore` and `deploy`, and the pid file that tells `restore` a host is live.
//!
//! Backup uses SQLite's online backup API on a read-only connection to the database file, so
//! it runs while the host serves (WAL: readers never block the writer) and copies one
//! consistent snapshot. Both directions verify the copy (`PRAGMA integrity_check`, the schema
//! version, the tables) before anything is renamed into place, and a restore never writes
//! over the live file: it builds the new database beside it and renames it in.

use crate::error::{Error, Result};
use crate::progress::Progress;
use bridge_core::schema;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// Pages copied per backup step (4 KiB pages: 4 MiB a step).
const PAGES_PER_STEP: std::ffi::c_int = 1024;

/// `<db>.pid`: the pid and API address of the host serving `<db>`, removed on a clean stop.
pub struct HostPidFile {
    path: PathBuf,
}

fn pid_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".pid");
    PathBuf::from(p)
}

impl HostPidFile {
    pub fn create(db: &Path, api: &SocketAddr) -> Option<HostPidFile> {
        let path = pid_path(db);
        let body = format!("{}\nhttp://{api}\n", std::process::id());
        match std::fs::write(&path, body) {
            Ok(()) => Some(HostPidFile { path }),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not write the pid file");
                None
            }
        }
    }

    /// The live host serving `db`, if any: (pid, API URL). A pid file left by a killed host
    /// names a process that is gone and counts as none.
    pub fn live(db: &Path) -> Option<(u32, String)> {
        let text = std::fs::read_to_string(pid_path(db)).ok()?;
        let mut lines = text.lines();
        let pid: u32 = lines.next()?.trim().parse().ok()?;
        let api = lines.next().unwrap_or("").trim().to_owned();
        let alive = if cfg!(target_os = "linux") {
            Path::new(&format!("/proc/{pid}")).exists()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
        } else {
            true // no cheap liveness check: trust the file
        };
        (alive && pid != std::process::id()).then_some((pid, api))
    }
}

impl Drop for HostPidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a verified database holds.
#[derive(Debug)]
pub struct Verified {
    pub schema_version: i64,
    pub spaces: u64,
    pub docs: u64,
    pub messages: u64,
}

fn sql_err<'a>(action: &'static str, path: &'a Path) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |source| Error::Sqlite {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Checks that `conn` holds a sound Sacred Bridge database this build can open.
fn verify(conn: &Connection, path: &Path) -> Result<Verified> {
    let bad = |why: String| Error::NotADatabase {
        path: path.to_owned(),
        why,
    };
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| bad(format!("integrity check failed to run ({e})")))?;
    if check != "ok" {
        return Err(bad(format!("PRAGMA integrity_check reports: {check}")));
    }
    let has_table = |t: &str| -> Result<()> {
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [t],
                |r| r.get(0),
            )
            .map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            return Err(bad(format!("table `{t}` is missing")));
        }
        Ok(())
    };
    // The tables a database holds depend on its version (an older backup lacks newer ones).
    has_table("migrations")?;
    let version: i64 = conn
        .query_row(schema::SELECT_SCHEMA_VERSION, [], |r| r.get(0))
        .map_err(|e| bad(e.to_string()))?;
    for (t, _) in schema::TABLES.iter().filter(|(_, since)| *since <= version) {
        has_table(t)?;
    }
    if version > schema::SCHEMA_VERSION {
        return Err(bad(format!(
            "its schema is version {version}, newer than this build ({}); use a newer sacred-bridge",
            schema::SCHEMA_VERSION
        )));
    }
    if version < 1 {
        return Err(bad("no schema migration was ever applied".into()));
    }
    let n = |sql: &str| -> Result<u64> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|v| v as u64)
            .map_err(|e| bad(e.to_string()))
    };
    Ok(Verified {
        schema_version: version,
        spaces: n(schema::COUNT_SPACES)?,
        docs: n(schema::COUNT_DOCS)?,
        messages: n(schema::COUNT_MESSAGES)?,
    })
}

fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::NoSuchFile(path.to_owned()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err("cannot open", path))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql_err("cannot configure", path))?;
    Ok(conn)
}

/// Copies `src` into a new file `dst` with the online backup API, showing progress.
fn copy_database(src: &Connection, dst: &Path, label: &str) -> Result<()> {
    let mut out = Connection::open(dst).map_err(sql_err("cannot create", dst))?;
    let mut bar = Progress::new(label);
    {
        let b = Backup::new(src, &mut out).map_err(sql_err("cannot start copying into", dst))?;
        let mut restarts = 0;
        let mut last_done = 0;
        loop {
            // A writer on another connection restarts an online backup; after a few restarts
            // copy the rest in one step (one read snapshot, which WAL lets the writer share).
            let pages = if restarts > 8 { -1 } else { PAGES_PER_STEP };
            let r = b.step(pages).map_err(sql_err("copying failed into", dst))?;
            let p = b.progress();
            let total = p.pagecount.max(0) as u64;
            let done = total.saturating_sub(p.remaining.max(0) as u64);
            if done < last_done {
                restarts += 1;
            }
            last_done = done;
            bar.update(done, total, "pages");
            match r {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    bar.finish();
    // Leave a self-contained file (no -wal beside it) before it is verified and renamed.
    out.execute_batch("PRAGMA journal_mode=DELETE;")
        .map_err(sql_err("cannot finish", dst))?;
    out.close()
        .map_err(|(_, e)| sql_err("cannot close", dst)(e))
}

/// Copies `src` into a new file `tmp` (its folder created) and verifies the copy; on any
/// failure `tmp` is removed.
fn copy_verified(src: &Connection, tmp: &Path, label: &str) -> Result<Verified> {
    if let Some(dir) = tmp.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            action: "cannot create the folder",
            path: dir.to_owned(),
            source,
        })?;
    }
    let _ = std::fs::remove_file(tmp);
    let result = copy_database(src, tmp, label).and_then(|()| {
        let conn = open_read_only(tmp)?;
        verify(&conn, tmp)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn report(v: &Verified) -> String {
    format!(
        "schema v{}, {} spaces, {} documents, {} messages, integrity ok",
        v.schema_version, v.spaces, v.docs, v.messages
    )
}

/// `sacred-bridge backup FILE`.
pub fn backup(db: &Path, file: &Path, force: bool) -> Result<ExitCode> {
    if file.exists() && !force {
        return Err(Error::BackupExists(file.to_owned()));
    }
    let src = open_read_only(db).map_err(|e| Error::WhichDatabase(Box::new(e)))?;
    verify(&src, db)?;
    let tmp = sibling(file, ".partial");
    let result = copy_verified(&src, &tmp, "backup").and_then(|v| {
        std::fs::rename(&tmp, file).map_err(|source| Error::Io {
            action: "cannot move the backup to",
            path: file.to_owned(),
            source,
        })?;
        Ok(v)
    });
    match result {
        Ok(v) => {
            eprintln!(
                "backed up {} to {}: {}",
                db.display(),
                file.display(),
                report(&v)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `sacred-bridge restore FILE`.
pub fn restore(file: &Path, db: &Path, force: bool) -> Result<ExitCode> {
    // Everything is checked before anything is touched.
    let src = open_read_only(file).map_err(|e| Error::CannotRestore(Box::new(e)))?;
    let v = verify(&src, file).map_err(|e| Error::BadBackup(Box::new(e)))?;
    if let Some((pid, api)) = HostPidFile::live(db) {
        return Err(Error::HostServing {
            pid,
            api,
            db: db.to_owned(),
        });
    }
    if db.exists() && !force {
        return Err(Error::RestoreOver(db.to_owned()));
    }
    let tmp = sibling(db, ".restoring");
    if let Err(e) = copy_verified(&src, &tmp, "restore") {
        return Err(Error::RestoreFailed {
            db: db.to_owned(),
            source: Box::new(e),
        });
    }
    if db.exists() {
        // Fold the old database's WAL into it and drop the -wal/-shm files, so no stale WAL
        // is ever applied to the restored file.
        let old = Connection::open(db).map_err(sql_err("cannot open", db))?;
        old.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql_err("cannot checkpoint", db))?;
        old.close()
            .map_err(|(_, e)| sql_err("cannot close", db)(e))?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sibling(db, suffix));
        }
    }
    std::fs::rename(&tmp, db).map_err(|source| Error::Io {
        action: "cannot move the restored database to",
        path: db.to_owned(),
        source,
    })?;
    eprintln!(
        "restored {} from {}: {}",
        db.display(),
        file.display(),
        report(&v)
    );
    Ok(ExitCode::SUCCESS)
}

/// Finds `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The project's wrangler.toml: `--config`, else the first found from here upwards.
fn find_wrangler_toml(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(Error::NoWranglerConfig(p.to_owned()))
        };
    }
    let here = std::env::current_dir().map_err(Error::NoWorkingDir)?;
    here.ancestors()
        .map(|d| d.join("wrangler.toml"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NoWranglerToml(here.clone()))
}

/// `sacred-bridge deploy`: `npx wrangler deploy` with the project's wrangler.toml.
pub fn deploy(config: Option<&Path>, extra: &[String]) -> Result<ExitCode> {
    let toml = find_wrangler_toml(config)?;
    let dir = toml
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut missing = Vec::new();
    let npx = on_path("npx");
    if npx.is_none() {
        missing.push(
            "npx was not found on PATH: install Node.js (wrangler 4 wants Node >= 22.12, or pin wrangler@4.86.0 on Node 20)".to_owned(),
        );
    }
    if std::env::var("CLOUDFLARE_API_TOKEN").map_or(true, |t| t.trim().is_empty()) {
        missing.push(
            "CLOUDFLARE_API_TOKEN is not set: create an API token with the \"Edit Cloudflare Workers\" template at dash.cloudflare.com/profile/api-tokens and export it (CLOUDFLARE_ACCOUNT_ID too if the token spans several accounts)".to_owned(),
        );
    }
    if let Some(npx) = &npx {
        if missing.is_empty() {
            let ok = Command::new(npx)
                .args(["--no-install", "wrangler", "--version"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                missing.push(format!(
                    "wrangler is not installed for {}: run `npm install --save-dev wrangler` there",
                    dir.display()
                ));
            }
        }
    }
    let Some(npx) = npx.filter(|_| missing.is_empty()) else {
        return Err(Error::DeployNotReady { toml, missing });
    };
    eprintln!("deploying with {} (npx wrangler deploy)", toml.display());
    let status = Command::new(npx)
        .args(["--no-install", "wrangler", "deploy", "--config"])
        .arg(&toml)
        .args(extra)
        .current_dir(&dir)
        .status()
        .map_err(Error::Npx)?;
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::DeployFailed(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of `version`: the migrations up to it, nothing else.
    fn database_at(path: &Path, version: usize) -> Connection {
        let conn = Connection::open(path).expect("create");
        conn.execute_batch(schema::CREATE_MIGRATIONS_TABLE)
            .expect("migrations table");
        for (i, sql) in schema::MIGRATIONS[..version].iter().enumerate() {
            conn.execute_batch(sql).expect("migration");
            conn.execute(schema::INSERT_MIGRATION, [i as i64 + 1, 1])
                .expect("record");
        }
        conn
    }

    #[test]
    fn a_backup_of_an_older_schema_verifies_and_a_missing_table_does_not() {
        let dir = std::env::temp_dir().join(format!("sb-ops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for version in 1..=schema::MIGRATIONS.len() {
            let path = dir.join(format!("v{version}.db"));
            let conn = database_at(&path, version);
            let v = verify(&conn, &path).expect("a database of an older schema restores");
            assert_eq!(v.schema_version, version as i64);
        }
        let path = dir.join("broken.db");
        let conn = database_at(&path, schema::MIGRATIONS.len());
        conn.execute_batch("DROP TABLE replicas").expect("drop");
        let err = verify(&conn, &path).expect_err("a table of its version is missing");
        assert!(err.to_string().contains("replicas"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
