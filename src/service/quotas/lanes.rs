//! Lanes: consumptions that cannot be served from a lease go to the catalog in batches. Tenants
//! are spread over a few lanes; each lane is a long-lived task fed by a channel, and the
//! consumptions that arrive while its batch is in the database form its next batch.
//!
//! A lane outlives a batch that fails: each batch runs as a task of its own, so one that
//! panics answers its callers UNAVAILABLE and the lane goes on with the next. A caller waits
//! for its answer at most the quota deadline, and is answered UNAVAILABLE when its lane is
//! gone or stuck; a lane that is gone is started again by the next consumption.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::decide::{Answer, Job};
use crate::domain::{Error, TenantId};

/// Most consumptions decided in one batch.
const MAX_BATCH: usize = 512;
/// Lanes consumptions are batched in: a tenant always uses the same one, so its consumptions
/// are decided in arrival order, and this many batches can be in the database at once.
const SHARDS: usize = 2;

pub(super) fn shard_of(tenant: TenantId) -> usize {
    (tenant.as_uuid().as_u128() % SHARDS as u128) as usize
}

/// A consumption waiting for its lane, with where its answer goes.
type Request = (Job, oneshot::Sender<Answer>);

/// The lanes of one server: where each shard's consumptions are sent.
pub(super) struct Lanes {
    senders: Mutex<Vec<Option<mpsc::UnboundedSender<Request>>>>,
    /// How long a caller waits for its batch's answer.
    deadline: Duration,
}

impl Lanes {
    pub fn new(deadline: Duration) -> Self {
        Self {
            senders: Mutex::new((0..SHARDS).map(|_| None).collect()),
            deadline,
        }
    }

    /// Sends `job` to the lane of `shard` and waits for its answer. A lane that is not running
    /// (never started, or gone) is started with the batch runner `runner` makes.
    pub async fn submit<R, F>(&self, shard: usize, job: Job, runner: R) -> Answer
    where
        R: FnOnce() -> F,
        F: BatchRunner,
    {
        let (reply, answer) = oneshot::channel();
        let sent = {
            let mut senders = self
                .senders
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(slot) = senders.get_mut(shard) else {
                return Err(Error::Internal(format!("no quota lane {shard}")));
            };
            let sender = match slot {
                Some(sender) if !sender.is_closed() => sender.clone(),
                _ => {
                    let (sender, receiver) = mpsc::unbounded_channel();
                    tokio::spawn(run_lane(receiver, runner()));
                    *slot = Some(sender.clone());
                    sender
                }
            };
            sender.send((job, reply))
        };
        if sent.is_err() {
            return Err(Error::Unavailable("the quota lane is gone".into()));
        }
        match tokio::time::timeout(self.deadline, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Error::Unavailable(
                "the quota lane ended without an answer".into(),
            )),
            Err(_) => Err(Error::Unavailable(format!(
                "no answer from the catalog within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }
}

/// What decides a lane's batches: one answer per job, in order, or one error for all.
pub(super) trait BatchRunner: Send + 'static {
    fn run(
        &self,
        jobs: Vec<Job>,
    ) -> impl Future<Output = Result<Vec<Answer>, Error>> + Send + 'static;
}

impl<F, Fut> BatchRunner for F
where
    F: Fn(Vec<Job>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<Answer>, Error>> + Send + 'static,
{
    fn run(
        &self,
        jobs: Vec<Job>,
    ) -> impl Future<Output = Result<Vec<Answer>, Error>> + Send + 'static {
        self(jobs)
    }
}

/// A lane: takes what is waiting (up to [`MAX_BATCH`]), decides it, answers, and again, until
/// every sender is gone.
async fn run_lane(mut receiver: mpsc::UnboundedReceiver<Request>, runner: impl BatchRunner) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<Job>, Vec<_>) = batch.into_iter().unzip();
        let count = jobs.len();
        // A task of its own: a panic in it ends that task only, not the lane.
        let answers = match tokio::spawn(runner.run(jobs)).await {
            Ok(Ok(answers)) => answers,
            Ok(Err(error)) => vec![Err(error); count],
            Err(failed) => {
                tracing::error!(error = %failed, jobs = count, "a quota batch failed; its callers are answered UNAVAILABLE");
                vec![Err(Error::Unavailable("the quota batch failed".into())); count]
            }
        };
        let mut answers = answers.into_iter();
        for reply in replies {
            let answer = answers
                .next()
                .unwrap_or_else(|| Err(Error::Internal("a consumption went undecided".into())));
            // A caller that went away does not need its answer.
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::{Metering, Quota};
    use crate::store::Usage;

    fn job(amount: i64) -> Job {
        Job {
            tenant: TenantId::from(uuid::Uuid::nil()),
            items: vec![(
                "messages_per_day".into(),
                Quota {
                    limit: -1,
                    metering: Metering::Counter { window_secs: 60 },
                },
                amount,
            )],
            key: None,
        }
    }

    /// Answers each job with its amount as the used level; panics on a job of 13.
    async fn echo(jobs: Vec<Job>) -> Result<Vec<Answer>, Error> {
        assert!(
            jobs.iter().all(|j| j.items[0].2 != 13),
            "a batch that panics"
        );
        Ok(jobs
            .iter()
            .map(|j| {
                let (resource, quota, amount) = &j.items[0];
                let usage = Usage {
                    window_start: 0,
                    used: *amount,
                };
                Ok(vec![super::super::QuotaState::new(
                    resource, *quota, usage, 0,
                )])
            })
            .collect())
    }

    #[tokio::test]
    async fn a_batch_that_panics_answers_unavailable_and_its_lane_goes_on() {
        let lanes = Lanes::new(Duration::from_secs(5));
        let started = Arc::new(AtomicUsize::new(0));
        let runner = || {
            started.fetch_add(1, Ordering::Relaxed);
            echo
        };
        let failed = lanes.submit(0, job(13), runner).await;
        assert!(matches!(failed, Err(Error::Unavailable(_))), "{failed:?}");
        let answer = lanes.submit(0, job(2), runner).await;
        assert_eq!(answer.ok().map(|s| s[0].used), Some(2));
        assert_eq!(
            started.load(Ordering::Relaxed),
            1,
            "the same lane answered both"
        );
    }

    #[tokio::test]
    async fn a_caller_of_a_stuck_lane_is_answered_unavailable_at_the_deadline() {
        // The deadline is what is under test, so the test waits for it (briefly).
        let deadline = Duration::from_millis(100);
        let lanes = Lanes::new(deadline);
        let started = tokio::time::Instant::now();
        let stuck = lanes
            .submit(1, job(1), || {
                |_jobs: Vec<Job>| std::future::pending::<Result<Vec<Answer>, Error>>()
            })
            .await;
        assert!(matches!(stuck, Err(Error::Unavailable(_))), "{stuck:?}");
        let waited = started.elapsed();
        assert!(
            waited >= deadline && waited < deadline * 20,
            "answered after {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_lane_that_is_gone_is_started_again() {
        let lanes = Lanes::new(Duration::from_secs(5));
        // A lane whose task ended: its receiver is gone, as after a crash of the task.
        let (sender, receiver) = mpsc::unbounded_channel::<Request>();
        drop(receiver);
        lanes.senders.lock().unwrap_or_else(|p| p.into_inner())[0] = Some(sender);
        let answer = lanes.submit(0, job(4), || echo).await;
        assert_eq!(answer.ok().map(|s| s[0].used), Some(4));
    }
}
