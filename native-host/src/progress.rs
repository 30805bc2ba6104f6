//! A progress bar on stderr for long work (sync, backup, restore). On a terminal it redraws
//! one line; elsewhere (logs, CI) it prints a line at most every tenth of the work, so a pipe
//! still sees that something happens without being flooded.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    label: String,
    tty: bool,
    started: Instant,
    last_tenth: u64,
    drawn: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>) -> Progress {
        Progress {
            label: label.into(),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_tenth: u64::MAX,
            drawn: false,
        }
    }

    /// `done` of `total` units (`unit`: "docs", "pages"). A total of 0 shows nothing to do.
    pub fn update(&mut self, done: u64, total: u64, unit: &str) {
        let total = total.max(done);
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let tenth = pct / 10;
        if !self.tty && tenth == self.last_tenth {
            return;
        }
        self.last_tenth = tenth;
        let width = 30;
        let fill = (pct as usize * width / 100).min(width);
        let line = format!(
            "{} [{}{}] {pct:>3}% {done}/{total} {unit} {:.1}s",
            self.label,
            "#".repeat(fill),
            "-".repeat(width - fill),
            self.started.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.drawn = true;
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.tty && self.drawn {
            let _ = writeln!(std::io::stderr());
        }
        self.drawn = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
