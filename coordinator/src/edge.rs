//! The service's edge: conversions between wire messages and the coordinator's domain values
//! (`model`), so that the state layer never sees a protobuf type. Incoming messages that can
//! be malformed are checked here (`TryFrom`, errors naming the field); core types cross
//! through the conversions of `prime_proto::convert`.

use crate::db::MetricRow;
use crate::error::CoordinatorError;
use crate::metric_rows::decode_values;
use crate::model::{
    Assignment, CheckpointRecord, RunningReport, StalledSlot, TrialSummary, WorkerSlot,
    WorkerSummary,
};
use crate::sanitize::for_display;
use prime_proto::convert::ConvertError;
use prime_proto::pb;

impl From<ConvertError> for CoordinatorError {
    fn from(error: ConvertError) -> CoordinatorError {
        CoordinatorError::Invalid(error.to_string())
    }
}

impl From<&CheckpointRecord> for pb::CheckpointInfo {
    fn from(checkpoint: &CheckpointRecord) -> Self {
        pb::CheckpointInfo {
            checkpoint_id: checkpoint.id,
            size: checkpoint.size,
            sha256: checkpoint.sha256.clone(),
            progress: Some((&checkpoint.progress).into()),
            r#final: checkpoint.is_final,
            created_unix_ms: checkpoint.created_unix_ms,
        }
    }
}

impl From<&Assignment> for pb::Assignment {
    fn from(assignment: &Assignment) -> Self {
        pb::Assignment {
            trial_id: assignment.trial_id,
            epoch: assignment.epoch,
            spec: Some((&assignment.spec).into()),
            resume: assignment.resume.as_ref().map(Into::into),
            slots: assignment.slots.clone(),
        }
    }
}

impl From<&TrialSummary> for pb::TrialView {
    fn from(trial: &TrialSummary) -> Self {
        pb::TrialView {
            trial_id: trial.id,
            grid: trial.spec.grid.clone(),
            spec: Some((&trial.spec).into()),
            state: trial.state.name().to_string(),
            progress: Some((&trial.progress).into()),
            attempts: trial.attempts,
            failures: trial.failures,
            worker: for_display(trial.worker.as_deref().unwrap_or_default()),
            result: trial.result.as_ref().map(Into::into),
            reason: for_display(&trial.reason),
            parent_id: trial.parent_id.unwrap_or(0),
            run_seconds: trial.run_seconds,
            priority: trial.spec.priority,
        }
    }
}

impl From<pb::Slot> for WorkerSlot {
    fn from(slot: pb::Slot) -> Self {
        WorkerSlot {
            index: slot.index,
            device: slot.device,
        }
    }
}

impl From<&WorkerSlot> for pb::Slot {
    fn from(slot: &WorkerSlot) -> Self {
        pb::Slot {
            index: slot.index,
            device: slot.device.clone(),
        }
    }
}

impl From<&pb::RunningTrial> for RunningReport {
    fn from(report: &pb::RunningTrial) -> Self {
        RunningReport {
            trial_id: report.trial_id,
            epoch: report.epoch,
            slots: if report.slots.is_empty() {
                vec![report.slot]
            } else {
                report.slots.clone()
            },
            progress: report.progress.as_ref().map(Into::into),
        }
    }
}

impl From<pb::StalledSlot> for StalledSlot {
    fn from(stall: pb::StalledSlot) -> Self {
        StalledSlot {
            slot: stall.slot,
            trial_id: stall.trial_id,
            no_progress_ms: stall.no_progress_ms,
        }
    }
}

impl From<&StalledSlot> for pb::StalledSlot {
    fn from(stall: &StalledSlot) -> Self {
        pb::StalledSlot {
            slot: stall.slot,
            trial_id: stall.trial_id,
            no_progress_ms: stall.no_progress_ms,
        }
    }
}

impl From<&WorkerSummary> for pb::WorkerView {
    fn from(worker: &WorkerSummary) -> Self {
        pb::WorkerView {
            name: for_display(&worker.name),
            slots: worker.slots.iter().map(Into::into).collect(),
            status: if worker.alive { "alive" } else { "lost" }.to_string(),
            cordoned: worker.cordoned,
            trials: worker.trials.clone(),
            last_seen_ms_ago: worker.last_seen_ms_ago,
            stalled: worker.stalled.iter().map(Into::into).collect(),
            loads: worker
                .loads
                .iter()
                .map(|load| pb::SlotLoad {
                    slot: load.slot,
                    trials: load.trials.clone(),
                    share: load.share,
                })
                .collect(),
            gpus: worker.hardware.gpus.iter().map(Into::into).collect(),
            torch_variant: worker.hardware.torch_variant.clone(),
            torch_version: worker.hardware.torch_version.clone(),
        }
    }
}

impl From<&MetricRow> for pb::Metric {
    /// The stored kind name is passed on as stored; values decode as `metric_rows` says.
    fn from(row: &MetricRow) -> Self {
        pb::Metric {
            kind: row.kind.clone(),
            epoch: row.epoch,
            step: row.step,
            clock: row.clock,
            values: decode_values(&row.values_json).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NO_PROGRESS;
    use prime_core::grid::GridSpec;
    use prime_core::trial::{TrialResult, TrialSpec, TrialState};

    fn spec() -> TrialSpec {
        let text = "version = 1\nname = \"g\"\ndatasets = [\"cifar100\"]\nseeds = [3]\n\
                    [[methods]]\npreset = \"darts\"\n";
        GridSpec::parse("g.toml", text)
            .unwrap()
            .search_trials()
            .remove(0)
    }

    #[test]
    fn a_trial_view_carries_the_typed_spec_and_result() {
        let result = TrialResult {
            genotype: Some(serde_json::json!({"normal": []})),
            metrics: [("test_error".to_string(), 2.5)].into_iter().collect(),
            manifest: None,
        };
        let summary = TrialSummary {
            id: 7,
            spec: spec(),
            state: TrialState::Succeeded,
            progress: NO_PROGRESS,
            attempts: 2,
            failures: 1,
            worker: Some("w/0".into()),
            result: Some(result.clone()),
            reason: String::new(),
            parent_id: None,
            run_seconds: 1.5,
        };
        let view = pb::TrialView::from(&summary);
        assert_eq!((view.trial_id, view.grid.as_str()), (7, "g"));
        assert_eq!((view.worker.as_str(), view.parent_id), ("w/0", 0));
        assert_eq!(view.state, "succeeded");
        assert_eq!(TrialSpec::try_from(view.spec.unwrap()).unwrap(), spec());
        assert_eq!(TrialResult::try_from(view.result.unwrap()).unwrap(), result);
        let queued = pb::TrialView::from(&TrialSummary {
            result: None,
            worker: None,
            ..summary
        });
        assert_eq!((queued.result, queued.worker.as_str()), (None, ""));
    }

    #[test]
    fn an_assignment_carries_its_resume_point() {
        let checkpoint = CheckpointRecord {
            id: 4,
            trial_id: 7,
            size: 10,
            sha256: "ab".into(),
            progress: NO_PROGRESS,
            is_final: false,
            score: None,
            key: "k".into(),
            created_unix_ms: 5,
        };
        let wire = pb::Assignment::from(&Assignment {
            trial_id: 7,
            epoch: 3,
            spec: spec(),
            resume: Some(checkpoint),
            slots: vec![2, 3],
        });
        assert_eq!((wire.trial_id, wire.epoch, wire.slots), (7, 3, vec![2, 3]));
        assert_eq!(wire.resume.unwrap().checkpoint_id, 4);
        assert_eq!(TrialSpec::try_from(wire.spec.unwrap()).unwrap(), spec());
    }
}
