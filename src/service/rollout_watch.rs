//! WatchRollout: a snapshot of a rollout's counts, then its events as they are written, read
//! from the catalog's event log by sequence number, so a watcher on any replica sees the work of
//! every replica. Events are sent as they are read, in batches at most one poll interval apart
//! while the rollout runs; each batch's events carry the counts read with it. A rollout that
//! this replica ends wakes its watchers at once, so the end is not a poll interval late.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::rollouts::{Rollouts, WatchItem};
use crate::domain::Error;
use crate::store::Event;

/// Events read from the log at a time.
const BATCH: u64 = 200;

impl Rollouts {
    /// A snapshot of the counts, then every event from now on, until the rollout ends.
    pub async fn watch(&self, id: Uuid) -> Result<ReceiverStream<Result<WatchItem, Error>>, Error> {
        // The position first, then the state: a rollout that ends in between is still active in
        // neither read's past, so its `finished` event comes after `seq`. Endings from now on
        // wake the loop below.
        let mut endings = self.catalog.rollout_endings();
        let mut seq = self.catalog.last_rollout_event(id).await?;
        let rollout = self.get(id).await?;
        let (tx, rx) = mpsc::channel(64);
        let catalog = self.catalog.clone();
        let poll = self.settings.poll_interval;
        tokio::spawn(async move {
            if tx
                .send(Ok(WatchItem {
                    event: None,
                    counts: rollout.counts,
                }))
                .await
                .is_err()
            {
                return;
            }
            if !rollout.state.is_active() {
                let finished = Event {
                    seq,
                    kind: "finished".into(),
                    tenant: None,
                    detail: serde_json::json!({ "state": rollout.state.as_str() }),
                    time: rollout.end_time.unwrap_or(rollout.create_time),
                };
                let _ = tx
                    .send(Ok(WatchItem {
                        event: Some(finished),
                        counts: rollout.counts,
                    }))
                    .await;
                return;
            }
            loop {
                let batch = match catalog.rollout_events(id, seq, BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        () = tokio::time::sleep(poll) => continue,
                        Ok(()) = endings.changed() => continue,
                        () = tx.closed() => return,
                    }
                }
                let counts = match catalog.rollout_counts(id, None).await {
                    Ok(counts) => counts,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                // A short batch has caught up with the log: wait for more events to gather
                // rather than count the rollout's targets again for each new one.
                let caught_up = batch.len() < BATCH as usize;
                for event in batch {
                    seq = event.seq;
                    let last = event.kind == "finished";
                    if tx
                        .send(Ok(WatchItem {
                            event: Some(event),
                            counts,
                        }))
                        .await
                        .is_err()
                        || last
                    {
                        return;
                    }
                }
                if caught_up {
                    tokio::select! {
                        () = tokio::time::sleep(poll) => {}
                        Ok(()) = endings.changed() => {}
                        () = tx.closed() => return,
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
