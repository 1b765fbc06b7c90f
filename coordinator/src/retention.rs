//! Checkpoint retention: which checkpoints of a trial to delete. Pure decision logic; the
//! caller does the IO.

use crate::model::CheckpointRecord;

/// Ids of the checkpoints to delete so that only the last `keep_last`, the best-scored one
/// and the final ones remain.
pub fn checkpoints_to_delete(checkpoints: &[CheckpointRecord], keep_last: usize) -> Vec<u64> {
    let mut resumable: Vec<&CheckpointRecord> =
        checkpoints.iter().filter(|c| !c.is_final).collect();
    resumable.sort_by_key(|checkpoint| checkpoint.id);
    let best = resumable
        .iter()
        .filter_map(|checkpoint| checkpoint.score.map(|score| (score, checkpoint.id)))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, id)| id);
    let keep_from = resumable.len().saturating_sub(keep_last.max(1));
    resumable[..keep_from]
        .iter()
        .map(|checkpoint| checkpoint.id)
        .filter(|id| Some(*id) != best)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NO_PROGRESS;

    fn checkpoint(id: u64, score: Option<f64>, is_final: bool) -> CheckpointRecord {
        CheckpointRecord {
            id,
            trial_id: 1,
            size: 1,
            sha256: String::new(),
            progress: NO_PROGRESS,
            is_final,
            score,
            key: format!("k{id}"),
            created_unix_ms: 0,
        }
    }

    #[test]
    fn keeps_the_last_k_the_best_and_the_final() {
        let rows = vec![
            checkpoint(1, Some(10.0), false),
            checkpoint(2, Some(90.0), false),
            checkpoint(3, Some(50.0), false),
            checkpoint(4, None, true),
            checkpoint(5, Some(60.0), false),
            checkpoint(6, Some(70.0), false),
        ];
        assert_eq!(checkpoints_to_delete(&rows, 2), vec![1, 3]);
        assert_eq!(checkpoints_to_delete(&rows, 10), Vec::<u64>::new());
        assert_eq!(checkpoints_to_delete(&rows[..1], 0), Vec::<u64>::new());
    }
}
