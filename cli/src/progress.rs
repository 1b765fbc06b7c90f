//! What `prime search` and `prime eval` share on the terminal: a progress bar on stderr (step
//! message, elapsed time, ETA) with a line per epoch, unique default run directories, and
//! Ctrl-C turned into "checkpoint at the next step and stop".

use indicatif::{ProgressBar, ProgressStyle};
use prime_core::metrics::{MetricKind, MetricRecord};
use prime_core::observer::{Control, Progress, RunObserver};
use prime_core::trial::result_keys;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Formats a metric record for display; `None` shows nothing.
pub type Formatter = Box<dyn Fn(&MetricRecord) -> Option<String>>;

/// A run observer that draws progress and stops the run with a checkpoint after Ctrl-C, or
/// once a given number of steps is done.
pub struct RunProgress {
    bar: ProgressBar,
    quiet: bool,
    interrupted: Arc<AtomicBool>,
    stop_after: Option<u64>,
    step_message: Formatter,
    epoch_line: Formatter,
}

/// The error of a command stopped by Ctrl-C after its checkpoint: the process exits with
/// status 130 (128 + SIGINT, as shells report an interrupted command) and no further message.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

impl RunProgress {
    /// A progress display (hidden with `quiet`, or when stderr is not a terminal, where epoch
    /// lines are printed plainly) that also watches for Ctrl-C.
    pub fn new(quiet: bool, step_message: Formatter, epoch_line: Formatter) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} steps  {msg}  elapsed {elapsed_precise}  eta {eta_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        };
        let interrupted = Arc::new(AtomicBool::new(false));
        watch_interrupts(Arc::clone(&interrupted));
        Self {
            bar,
            quiet,
            interrupted,
            stop_after: None,
            step_message,
            epoch_line,
        }
    }

    /// Also stops the run (with a checkpoint) once `steps` weight steps are done.
    pub fn stopping_after(mut self, steps: Option<u64>) -> Self {
        self.stop_after = steps;
        self
    }

    /// How a command that stopped before the end of its run ends: `Err(Interrupted)` after
    /// Ctrl-C, `Ok` after `--stop-after`.
    pub fn stopped(&self) -> anyhow::Result<()> {
        if self.interrupted.load(Ordering::SeqCst) {
            Err(Interrupted.into())
        } else {
            Ok(())
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn line(&self, line: String) {
        if self.quiet || self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl RunObserver for RunProgress {
    fn on_metric(&mut self, record: &MetricRecord) {
        match record.kind {
            MetricKind::Step => {
                if let Some(message) = (self.step_message)(record) {
                    self.bar.set_message(message);
                }
            }
            MetricKind::Epoch => {
                if let Some(line) = (self.epoch_line)(record) {
                    self.line(line);
                }
            }
            MetricKind::AlphaStep | MetricKind::Final => {}
        }
    }

    fn on_checkpoint(&mut self, dir: &Path, _progress: &Progress) {
        tracing::debug!("checkpoint written to {}", dir.display());
    }

    fn control(&mut self, progress: &Progress) -> Control {
        if self.bar.length() != Some(progress.steps_total) {
            self.bar.set_length(progress.steps_total);
        }
        self.bar.set_position(progress.steps_done);
        self.bar.set_prefix(format!(
            "epoch {}/{}",
            (progress.epochs_done + 1).min(progress.epochs_total),
            progress.epochs_total
        ));
        let step_limit_reached = self
            .stop_after
            .is_some_and(|steps| progress.steps_done >= steps);
        if self.interrupted.load(Ordering::SeqCst) || step_limit_reached {
            Control::CheckpointAndStop
        } else {
            Control::Continue
        }
    }
}

/// `runs/<base>`, or `runs/<base>-2`, `-3`, ... if taken; characters other than ASCII
/// letters, digits, `-` and `_` become `_`.
pub fn unique_run_dir(base: &str) -> PathBuf {
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let runs = Path::new("runs");
    let mut candidate = runs.join(&base);
    let mut counter = 2;
    while candidate.exists() {
        candidate = runs.join(format!("{base}-{counter}"));
        counter += 1;
    }
    candidate
}

/// Sets `flag` on the first Ctrl-C; a second one ends the process at once.
fn watch_interrupts(flag: Arc<AtomicBool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!("Ctrl-C will not checkpoint: {error}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("interrupts".to_string())
        .spawn(move || {
            runtime.block_on(async {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                eprintln!(
                    "\ninterrupted: checkpointing at the next step (Ctrl-C again to quit now)"
                );
                flag.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
    if let Err(error) = spawned {
        tracing::warn!("Ctrl-C will not checkpoint: {error}");
    }
}

/// The alpha steps of a finished search, with a warning when they are too few for the
/// genotype to mean much (a schedule that hardly fired in a short run).
pub fn alpha_steps_summary(alpha_steps: u64) -> String {
    if alpha_steps < result_keys::FEW_ALPHA_STEPS {
        format!(
            "only {alpha_steps} alpha steps (warning: the alphas are barely trained, so the \
             genotype says little about the method; run more steps or epochs)"
        )
    } else {
        format!("{alpha_steps} alpha steps")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directory_names_are_sanitised() {
        let dir = unique_run_dir("eval-my genotype/v2-cifar10-seed0");
        assert_eq!(
            dir,
            Path::new("runs").join("eval-my_genotype_v2-cifar10-seed0")
        );
    }
}
