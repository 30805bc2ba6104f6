//! The host's clock: wall time in ms since the Unix epoch, the `now` every engine call, token
//! check, status document and link note is given. The core never reads a clock (it is
//! sans-IO); this is the one place the native host does.

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
