//! Whole listings read page by page: the coordinator serves trials, workers, logs and metrics
//! in pages (`next` says where the following one starts), and these read them all.

use crate::client::Client;
use crate::pb;
use tonic::Status;

/// Pages read at most, so that a coordinator that keeps answering `next` cannot keep a
/// client busy forever.
const MAX_PAGES: usize = 100_000;

async fn collect<T, F, Fut>(mut page: F) -> Result<Vec<T>, Status>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<u64>), Status>>,
{
    let mut all = Vec::new();
    let mut offset = 0;
    for _ in 0..MAX_PAGES {
        let (items, next) = page(offset).await?;
        all.extend(items);
        match next {
            Some(next) if next > offset => offset = next,
            _ => return Ok(all),
        }
    }
    Err(Status::out_of_range(format!(
        "the listing has more than {MAX_PAGES} pages"
    )))
}

/// Every trial of `grid` (empty: of every grid).
pub async fn all_trials(client: &Client, grid: &str) -> Result<Vec<pb::TrialView>, Status> {
    collect(|offset| {
        let mut client = client.clone();
        let request = pb::ListTrialsRequest {
            grid: grid.to_string(),
            offset,
            limit: 0,
        };
        async move {
            let reply = client.list_trials(request).await?.into_inner();
            Ok((reply.trials, reply.next))
        }
    })
    .await
}

/// Every worker.
pub async fn all_workers(client: &Client) -> Result<Vec<pb::WorkerView>, Status> {
    collect(|offset| {
        let mut client = client.clone();
        async move {
            let reply = client
                .list_workers(pb::ListWorkersRequest { offset, limit: 0 })
                .await?
                .into_inner();
            Ok((reply.workers, reply.next))
        }
    })
    .await
}

/// Every log line of a trial.
pub async fn all_logs(client: &Client, trial_id: u64) -> Result<Vec<pb::LogLine>, Status> {
    collect(|offset| {
        let mut client = client.clone();
        async move {
            let reply = client
                .trial_logs(pb::TrialRef {
                    trial_id,
                    offset,
                    limit: 0,
                })
                .await?
                .into_inner();
            Ok((reply.lines, reply.next))
        }
    })
    .await
}

/// Every metric row of a trial.
pub async fn all_metrics(client: &Client, trial_id: u64) -> Result<Vec<pb::Metric>, Status> {
    collect(|offset| {
        let mut client = client.clone();
        async move {
            let reply = client
                .trial_metrics(pb::TrialRef {
                    trial_id,
                    offset,
                    limit: 0,
                })
                .await?
                .into_inner();
            Ok((reply.metrics, reply.next))
        }
    })
    .await
}
