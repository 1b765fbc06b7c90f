//! Changes to submitted grids over real gRPC with the simulated trainer: retrying failed and
//! cancelled trials (from their last checkpoint or from the start) and extending a grid with
//! new seeds.

use prime_core::trial::{TrialKind, TrialSpec};
use prime_proto::pb;
use prime_tests::{small_grid, Cluster};
use prime_worker::simulated::{Fault, FaultRule};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn spec(trial: &pb::TrialView) -> TrialSpec {
    trial.trial_spec().unwrap()
}

/// The search of seed `seed` among `trials`.
fn search(trials: &[pb::TrialView], seed: u64) -> &pb::TrialView {
    trials
        .iter()
        .find(|t| spec(t).kind == TrialKind::Search && spec(t).search_seed == seed)
        .unwrap()
}

fn retry_trial(trial_id: u64, fresh: bool) -> pb::RetryRequest {
    pb::RetryRequest {
        target: Some(pb::retry_request::Target::TrialId(trial_id)),
        fresh,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_trial_resumes_from_its_last_checkpoint_or_from_the_start_when_fresh() {
    let mut cluster = Cluster::start(4, 20).await;
    // Both searches crash in their third epoch, after checkpoints of the first two; with no
    // retries left they fail for good.
    cluster.trainer.inject(FaultRule {
        method: Some("darts".into()),
        seed: None,
        kind: Some(TrialKind::Search),
        fault: Fault::Crash { at_epoch: 2 },
        times: 2,
    });
    cluster.add_worker("w", 2, |_| {});
    let grid = small_grid("retry", &["darts"], &[1, 2], 3, 1).replace("retries = 2", "retries = 0");
    cluster.submit(&grid).await;
    let failed = cluster
        .wait_for("retry", LIMIT, "both searches to fail", |t| {
            t.len() == 2 && t.iter().all(|t| t.state == "failed")
        })
        .await;
    let (resumed, fresh) = (search(&failed, 1).trial_id, search(&failed, 2).trial_id);
    let checkpoints = cluster
        .client()
        .trial_checkpoints(pb::TrialRef {
            trial_id: resumed,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    let last = checkpoints.last().expect("the failed search checkpointed");
    let last_epochs = last.progress.unwrap().epochs_done;
    assert!(last_epochs >= 1, "{checkpoints:?}");

    let mut client = cluster.client();
    let retried = client
        .retry_trials(retry_trial(resumed, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.trial_ids, [resumed]);
    let retried = client
        .retry_trials(retry_trial(fresh, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.trial_ids, [fresh]);
    let trials = cluster
        .wait_for(
            "retry",
            LIMIT,
            "the retried searches and their evaluations",
            |t| t.len() == 4 && t.iter().all(|t| t.state == "succeeded"),
        )
        .await;
    for seed in [1, 2] {
        let trial = search(&trials, seed);
        assert_eq!((trial.attempts, trial.failures), (2, 0), "{trial:?}");
    }

    let starts = cluster.trainer.starts();
    let second_start = |trial_id| {
        starts
            .iter()
            .filter(|start| start.trial_id == trial_id)
            .nth(1)
            .expect("a second start")
            .from_epoch
    };
    assert_eq!(
        second_start(resumed),
        last_epochs,
        "the retry resumes at its last checkpoint"
    );
    assert_eq!(second_start(fresh), 0, "--fresh starts over");
    let resumed_log = cluster.log_lines(resumed).await;
    let line = format!("resuming from checkpoint {}", last.checkpoint_id);
    assert!(
        resumed_log
            .iter()
            .any(|l| l.starts_with("retried by a user (was failed") && l.ends_with(&line)),
        "{resumed_log:?}"
    );
    // Attempts are named as attempts, not by their fencing epoch.
    assert!(
        resumed_log
            .iter()
            .any(|l| l.starts_with("attempt 2 assigned to w slot")),
        "{resumed_log:?}"
    );
    assert!(
        resumed_log
            .iter()
            .any(|l| l.starts_with("attempt 1 ") && l.ends_with("; trial is failed")),
        "{resumed_log:?}"
    );
    let fresh_log = cluster.log_lines(fresh).await;
    assert!(
        fresh_log
            .iter()
            .any(|l| l.ends_with("resuming from the start (--fresh)")),
        "{fresh_log:?}"
    );

    // A finished trial is left alone, and naming it says why.
    let refused = client
        .retry_trials(retry_trial(resumed, false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        format!("trial {resumed} is succeeded: only failed or cancelled trials are retried")
    );
    let nothing = client
        .retry_trials(pb::RetryRequest {
            target: Some(pb::retry_request::Target::Grid("retry".into())),
            fresh: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(nothing.trial_ids.is_empty());
    let unknown = client
        .retry_trials(pb::RetryRequest {
            target: Some(pb::retry_request::Target::Grid("nope".into())),
            fresh: false,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_grid_is_retried_whole_and_its_finished_trials_stay() {
    let mut cluster = Cluster::start(4, 2).await;
    // The second search makes no progress in its second epoch (until told to stop), so that
    // it is running when the grid is cancelled.
    cluster.trainer.inject(FaultRule {
        method: Some("darts".into()),
        seed: Some(2),
        kind: Some(TrialKind::Search),
        fault: Fault::Hang { at_epoch: 1 },
        times: 1,
    });
    cluster.add_worker("w", 2, |_| {});
    cluster
        .submit(&small_grid("again", &["darts"], &[1, 2], 2, 1))
        .await;
    let mut client = cluster.client();
    let first = cluster
        .wait_for("again", LIMIT, "one search done, the other hanging", |t| {
            t.len() >= 2
                && search(t, 1).state == "succeeded"
                && search(t, 2).progress.is_some_and(|p| p.epochs_done >= 1)
        })
        .await;
    let finished = search(&first, 1).clone();
    client
        .cancel_trials(pb::CancelRequest {
            target: Some(pb::cancel_request::Target::Grid("again".into())),
        })
        .await
        .unwrap();
    let mut cancelled: Vec<u64> = cluster
        .trials("again")
        .await
        .iter()
        .filter(|t| t.state == "cancelled")
        .map(|t| t.trial_id)
        .collect();
    cancelled.sort_unstable();
    let frozen = search(&first, 2).trial_id;
    assert!(cancelled.contains(&frozen), "{cancelled:?}");
    let retried = client
        .retry_trials(pb::RetryRequest {
            target: Some(pb::retry_request::Target::Grid("again".into())),
            fresh: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut requeued = retried.trial_ids;
    requeued.sort_unstable();
    assert_eq!(requeued, cancelled);
    let trials = cluster
        .wait_for("again", LIMIT, "the whole grid", |t| {
            t.len() == 4 && t.iter().all(|t| t.state == "succeeded")
        })
        .await;
    let untouched = trials
        .iter()
        .find(|t| t.trial_id == finished.trial_id)
        .unwrap();
    assert_eq!(untouched.attempts, finished.attempts);
    assert_eq!(untouched.result, finished.result);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extending_a_grid_adds_new_seeds_and_refuses_changed_settings() {
    let mut cluster = Cluster::start(4, 2).await;
    cluster.add_worker("w", 1, |_| {});
    cluster
        .submit(&small_grid("grow", &["darts"], &[1], 2, 1))
        .await;
    let before = cluster
        .wait_for("grow", LIMIT, "the first search and its evaluation", |t| {
            t.len() == 2 && t.iter().all(|t| t.state == "succeeded")
        })
        .await;
    let extend = |toml: String| pb::SubmitGridRequest {
        file_name: "grow.toml".into(),
        toml,
        extend: true,
    };
    let mut client = cluster.client();
    let reply = client
        .submit_grid(extend(small_grid("grow", &["darts", "pr"], &[1, 2], 2, 1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.grid.as_str(), reply.search_trials), ("grow", 3));
    let after = cluster
        .wait_for("grow", LIMIT, "the extended grid", |t| {
            t.len() == 8 && t.iter().all(|t| t.state == "succeeded")
        })
        .await;
    for old in &before {
        let now = after.iter().find(|t| t.trial_id == old.trial_id).unwrap();
        assert_eq!((now.attempts, &now.result), (old.attempts, &old.result));
    }

    let changed = client
        .submit_grid(extend(small_grid("grow", &["darts"], &[1, 3], 5, 1)))
        .await
        .unwrap_err();
    assert_eq!(changed.code(), tonic::Code::FailedPrecondition);
    let first = search(&before, 1).trial_id;
    assert!(
        changed.message().starts_with(&format!(
            "grow.toml: trial {first} (search darts cifar10 seed 1) exists with different \
             search settings"
        )),
        "{}",
        changed.message()
    );
    assert_eq!(cluster.trials("grow").await.len(), 8, "nothing was added");
    let unknown = client
        .submit_grid(extend(small_grid("other", &["darts"], &[1], 2, 1)))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    cluster.shutdown().await;
}
