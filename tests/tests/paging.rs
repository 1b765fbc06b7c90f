//! Long listings are served in pages: reading page by page, with any page size, gives exactly
//! what one unpaged read gives, and the `prime_proto::paging` readers put them together.

use prime_proto::paging::{all_logs, all_metrics, all_trials, all_workers};
use prime_proto::pb;
use prime_tests::{all_succeeded, small_grid, Cluster};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_size_reads_each_listing_exactly_once() {
    let mut cluster = Cluster::start(10, 5).await;
    cluster.add_worker("w1", 2, |_| {});
    cluster.add_worker("w2", 1, |_| {});
    cluster
        .submit(&small_grid(
            "paged",
            &["darts", "darts-prime"],
            &[1, 2],
            2,
            1,
        ))
        .await;
    let trials = cluster
        .wait_for("paged", Duration::from_secs(60), "the grid", |trials| {
            all_succeeded(trials, 8)
        })
        .await;
    let client = cluster.client();
    let trial_id = trials[0].trial_id;
    let metrics = all_metrics(&client, trial_id).await.unwrap();
    let logs = all_logs(&client, trial_id).await.unwrap();
    assert!(
        metrics.len() > 20 && logs.len() > 2,
        "{} {}",
        metrics.len(),
        logs.len()
    );
    assert_eq!(all_trials(&client, "paged").await.unwrap(), trials);
    assert_eq!(all_workers(&client).await.unwrap().len(), 2);
    for limit in [1u32, 3, 7] {
        let mut paged = Vec::new();
        let mut offset = 0;
        loop {
            let reply = client
                .clone()
                .trial_metrics(pb::TrialRef {
                    trial_id,
                    offset,
                    limit,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(reply.metrics.len() <= limit as usize);
            paged.extend(reply.metrics);
            match reply.next {
                Some(next) => offset = next,
                None => break,
            }
        }
        assert_eq!(paged, metrics, "metrics in pages of {limit}");
        let page = client
            .clone()
            .list_trials(pb::ListTrialsRequest {
                grid: "paged".into(),
                offset: 2,
                limit,
            })
            .await
            .unwrap()
            .into_inner();
        let end = (2 + limit as usize).min(trials.len());
        assert_eq!(page.trials[..], trials[2..end]);
        let more = end < trials.len();
        assert_eq!(page.next, more.then_some(end as u64));
    }
    cluster.shutdown().await;
}
