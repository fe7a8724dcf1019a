//! The bulk run's progress bar: on stderr, and only when stderr is a terminal.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar, or nothing when stderr is not a terminal.
#[derive(Clone, Debug)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar of `total` lines (a spinner when unknown), if stderr is a terminal.
    pub(crate) fn new(total: Option<u64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                "{elapsed_precise} [{bar:40}] {pos}/{len} clients, {per_sec}, eta {eta} {msg}",
            ),
            None => (
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                "{elapsed_precise} {spinner} {pos} clients, {per_sec} {msg}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self(Some(bar))
    }

    /// One more line finished; `failed` so far.
    pub(crate) fn finished(&self, failed: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
            if failed > 0 {
                bar.set_message(format!("({failed} failed)"));
            }
        }
    }

    /// Shows `note` beside the count.
    pub(crate) fn note(&self, note: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(note);
        }
    }

    /// The total became known.
    pub(crate) fn set_total(&self, total: u64) {
        if let Some(bar) = &self.0
            && bar.length().is_none()
        {
            bar.set_length(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} clients, {per_sec}, eta {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
        }
    }

    /// The run is over.
    pub(crate) fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}
