//! A background producer thread feeding a bounded channel, stopped by dropping the consumer.

use super::DataError;
use crossbeam_channel::{Receiver, RecvError};
use std::thread::JoinHandle;

/// Items produced ahead of time on a dedicated thread. The producer runs until it returns `None`
/// or an error, or until the `Prefetcher` is dropped; an error or a panic of the producer reaches
/// the consumer as an `Err`, after which the stream is over.
pub(crate) struct Prefetcher<T> {
    receiver: Option<Receiver<Result<T, DataError>>>,
    worker: Option<JoinHandle<()>>,
    finished: bool,
}

impl<T: Send + 'static> Prefetcher<T> {
    /// Starts `produce` on a thread named `name`, keeping up to `depth` items ready.
    pub(crate) fn spawn(
        name: String,
        depth: usize,
        mut produce: impl FnMut() -> Option<Result<T, DataError>> + Send + 'static,
    ) -> Result<Self, DataError> {
        let (sender, receiver) = crossbeam_channel::bounded(depth);
        let worker = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                while let Some(item) = produce() {
                    let failed = item.is_err();
                    // A send fails only when the consumer is gone: stop.
                    if sender.send(item).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| DataError::Worker(format!("cannot start thread {name}: {e}")))?;
        Ok(Prefetcher {
            receiver: Some(receiver),
            worker: Some(worker),
            finished: false,
        })
    }

    /// The next item, `None` once the producer is done (or has failed and reported it).
    pub(crate) fn next(&mut self) -> Option<Result<T, DataError>> {
        if self.finished {
            return None;
        }
        let receiver = self.receiver.as_ref()?;
        match receiver.recv() {
            Ok(Ok(item)) => Some(Ok(item)),
            Ok(Err(error)) => {
                self.finished = true;
                Some(Err(error))
            }
            Err(RecvError) => {
                self.finished = true;
                self.join().err().map(Err)
            }
        }
    }

    /// Waits for the worker; a panic becomes an error.
    fn join(&mut self) -> Result<(), DataError> {
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        worker.join().map_err(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            DataError::Worker(format!("panicked: {message}"))
        })
    }
}

impl<T> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, which ends its loop.
        self.receiver = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn delivers_items_in_order_then_ends() {
        let mut counter = 0;
        let mut prefetcher = Prefetcher::spawn("test".into(), 2, move || {
            counter += 1;
            (counter <= 5).then_some(Ok(counter))
        })
        .unwrap();
        let items: Vec<i32> = std::iter::from_fn(|| prefetcher.next())
            .map(Result::unwrap)
            .collect();
        assert_eq!(items, vec![1, 2, 3, 4, 5]);
        assert!(prefetcher.next().is_none());
    }

    #[test]
    fn a_producer_error_reaches_the_consumer_and_ends_the_stream() {
        let mut counter = 0;
        let mut prefetcher = Prefetcher::spawn("test".into(), 4, move || {
            counter += 1;
            Some(if counter == 3 {
                Err(DataError::InvalidArgument("broken record".into()))
            } else {
                Ok(counter)
            })
        })
        .unwrap();
        assert_eq!(prefetcher.next().unwrap().unwrap(), 1);
        assert_eq!(prefetcher.next().unwrap().unwrap(), 2);
        let error = prefetcher.next().unwrap().unwrap_err();
        assert!(error.to_string().contains("broken record"));
        assert!(prefetcher.next().is_none());
    }

    #[test]
    fn a_producer_panic_becomes_an_error() {
        let mut counter = 0;
        let mut prefetcher = Prefetcher::spawn("test".into(), 1, move || {
            counter += 1;
            assert!(counter < 2, "producer gave up");
            Some(Ok(counter))
        })
        .unwrap();
        assert_eq!(prefetcher.next().unwrap().unwrap(), 1);
        let error = prefetcher.next().unwrap().unwrap_err();
        assert!(error.to_string().contains("producer gave up"), "{error}");
        assert!(prefetcher.next().is_none());
    }

    /// Sets a flag when the producer closure is dropped, i.e. when the thread has ended.
    struct EndFlag(Arc<AtomicBool>);

    impl Drop for EndFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn dropping_the_consumer_stops_an_endless_producer_promptly() {
        let produced = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let flag = EndFlag(ended.clone());
        let counter = produced.clone();
        let mut prefetcher = Prefetcher::spawn("test".into(), 3, move || {
            let _keep = &flag;
            Some(Ok(counter.fetch_add(1, Ordering::SeqCst)))
        })
        .unwrap();
        assert_eq!(prefetcher.next().unwrap().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(20));
        // Bounded: at most one taken + 3 queued + 1 blocked in send.
        assert!(produced.load(Ordering::SeqCst) <= 5);
        let start = Instant::now();
        drop(prefetcher);
        assert!(ended.load(Ordering::SeqCst), "the worker thread has ended");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
