//! Progress on stderr for long work (sync, backup, restore, import). On a terminal it is an
//! `indicatif` bar redrawn in place; elsewhere (logs, CI) `indicatif` draws nothing, so a line
//! is printed at most every tenth of the work: a pipe still sees that something happens
//! without being flooded.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    label: String,
    /// The terminal's bar; `None` when stderr is not a terminal.
    bar: Option<ProgressBar>,
    started: Instant,
    last_tenth: u64,
    drawn: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>) -> Progress {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {percent:>3}% {pos}/{len} {msg} {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-");
            // Hidden until the first update: a bar with nothing to say shows nothing.
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
                .with_style(style)
                .with_prefix(label.clone())
        });
        Progress {
            label,
            bar,
            started: Instant::now(),
            last_tenth: u64::MAX,
            drawn: false,
        }
    }

    /// `done` of `total` units (`unit`: "docs", "pages"). A total of 0 shows nothing to do.
    pub fn update(&mut self, done: u64, total: u64, unit: &str) {
        let total = total.max(done);
        if let Some(bar) = &self.bar {
            if !self.drawn {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(unit.to_owned());
            self.drawn = true;
            return;
        }
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let tenth = pct / 10;
        if tenth == self.last_tenth {
            return;
        }
        self.last_tenth = tenth;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}: {pct}% {done}/{total} {unit} {:.1}s",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        self.drawn = true;
    }

    /// Ends the bar, leaving its last state on screen.
    pub fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            if self.drawn && !bar.is_finished() {
                bar.finish();
                // indicatif leaves the cursor on the bar's line; what follows starts below.
                let _ = writeln!(std::io::stderr());
            }
        }
        self.drawn = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
