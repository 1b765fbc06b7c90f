//! `prime retry TRIAL|GRID [--fresh]`: requeues failed or cancelled trials, from their last
//! checkpoint or from the start.

use super::{connect, runtime, status_error};
use clap::Args;
use prime_proto::pb;

/// Arguments of `prime retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// A trial id, or a grid name (every failed or cancelled trial of the grid).
    #[arg(value_name = "TRIAL|GRID")]
    pub target: String,
    /// Start from scratch, dropping the trials' checkpoints, instead of resuming from the
    /// last one.
    #[arg(long)]
    pub fresh: bool,
    /// URL of the coordinator.
    #[arg(long, default_value_t = super::default_coordinator(), value_parser = super::url::normalize_url)]
    pub coordinator: String,
}

/// A trial id when `target` is a number, else a grid name.
pub fn trial_or_grid(target: &str) -> Result<u64, &str> {
    target.parse::<u64>().map_err(|_| target)
}

/// Runs `prime retry`.
pub fn run(args: RetryArgs) -> anyhow::Result<()> {
    let target = match trial_or_grid(&args.target) {
        Ok(trial) => pb::retry_request::Target::TrialId(trial),
        Err(grid) => pb::retry_request::Target::Grid(grid.to_string()),
    };
    let retried = runtime()?.block_on(async {
        let mut client = connect(&args.coordinator)?;
        let reply = client
            .retry_trials(pb::RetryRequest {
                target: Some(target),
                fresh: args.fresh,
            })
            .await
            .map_err(status_error)?;
        anyhow::Ok(reply.into_inner().trial_ids)
    })?;
    let from = if args.fresh {
        "from the start"
    } else {
        "from their last checkpoint"
    };
    if retried.is_empty() {
        eprintln!(
            "nothing to retry: `{}` has no failed or cancelled trials",
            args.target
        );
    } else {
        eprintln!("requeued {} trial(s) {from}", retried.len());
    }
    for id in retried {
        println!("{id}");
    }
    Ok(())
}
