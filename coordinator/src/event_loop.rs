//! The event loop: one thread owns the `State`; gRPC handlers send it closures and await
//! their answers, so the state never needs a lock and SQLite is written from one place.

use crate::error::CoordinatorError;
use crate::state::State;
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// A cheap, cloneable handle to the event loop.
#[derive(Clone)]
pub struct StateHandle {
    sender: mpsc::UnboundedSender<Job>,
}

impl StateHandle {
    /// Moves `state` onto its own thread; the loop ends when every handle is dropped.
    pub fn spawn(mut state: State) -> (StateHandle, std::thread::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("coordinator-state".into())
            .spawn(move || {
                while let Some(job) = receiver.blocking_recv() {
                    job(&mut state);
                }
            })
            .expect("spawning the coordinator state thread");
        (StateHandle { sender }, thread)
    }

    /// Runs `job` on the event loop and returns its value.
    pub async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Box::new(move |state| {
                // The caller may have gone away (client disconnect); the work is done anyway.
                let _ = reply.send(job(state));
            }))
            .map_err(|_| CoordinatorError::ShuttingDown)?;
        answer.await.map_err(|_| CoordinatorError::ShuttingDown)
    }

    /// Like `call`, for jobs that can fail.
    pub async fn try_call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut State) -> Result<T, CoordinatorError> + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        self.call(job).await?
    }
}
