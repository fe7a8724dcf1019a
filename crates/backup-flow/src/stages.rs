//! The two widths of store-wide work: KMS calls in flight, and store operations in flight.
//!
//! A client's work alternates between the store (read its objects, write them back) and the
//! KMS (unwrap, wrap). Bounding whole clients at `concurrency` makes a client's time the sum
//! of both, so neither is ever kept full: at 64 clients, a 5 ms KMS and a store that answers
//! in 5 ms under load, half the KMS's capacity goes unused. Instead each part has its own
//! bound, `concurrency` KMS calls and `concurrency` store operations, and twice as many
//! clients are in flight, so the store works on some clients while the KMS works on others.

use std::future::Future;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use tokio::sync::Semaphore;

/// The permits of one store-wide run; cheap to clone (clones share the permits).
#[derive(Clone, Debug)]
pub(crate) struct Stages {
    kms: Arc<Semaphore>,
    store: Arc<Semaphore>,
    width: usize,
}

impl Stages {
    /// `concurrency` KMS calls and `concurrency` store operations at most (`0` counts as 1).
    pub(crate) fn new(concurrency: usize) -> Self {
        let width = concurrency.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            kms: Arc::new(Semaphore::new(width)),
            store: Arc::new(Semaphore::new(width)),
            width,
        }
    }

    /// How many clients to keep in flight: one set at the KMS, one at the store.
    fn clients_in_flight(&self) -> usize {
        self.width.saturating_mul(2)
    }

    /// How many batches of `batch` clients to keep in flight: as many clients as
    /// [`clients_in_flight`](Self::clients_in_flight), and one batch more where batches hold
    /// several, so that one batch's store step overlaps the others' KMS calls.
    fn batches_in_flight(&self, batch: usize) -> usize {
        match batch {
            0 | 1 => self.clients_in_flight(),
            _ => self.clients_in_flight().div_ceil(batch).saturating_add(1),
        }
    }

    /// Runs `work` over every item of `clients` with one set of permits of width
    /// `concurrency`, keeping [`clients_in_flight`](Self::clients_in_flight) items in flight:
    /// a stream of their results in the order they finish.
    pub(crate) fn run<'a, S, F, Fut>(
        concurrency: usize,
        clients: S,
        work: F,
    ) -> impl Stream<Item = Fut::Output> + Send + 'a
    where
        S: Stream + Send + 'a,
        F: Fn(S::Item, Self) -> Fut + Send + 'a,
        Fut: Future + Send + 'a,
        Fut::Output: Send,
    {
        let stages = Self::new(concurrency);
        let in_flight = stages.batches_in_flight(1);
        clients
            .map(move |client| work(client, stages.clone()))
            .buffer_unordered(in_flight)
    }

    /// [`run`](Self::run) over batches of up to `batch` items (`0` counts as 1; at most
    /// `concurrency`): each batch is one store call where the store can take many items at
    /// once. Enough batches are in flight to keep as many clients in flight as `run` does,
    /// and one more, so that a batch's store step overlaps the others' KMS calls.
    pub(crate) fn run_batches<'a, S, F, Fut>(
        concurrency: usize,
        batch: usize,
        clients: S,
        work: F,
    ) -> impl Stream<Item = Fut::Output> + Send + 'a
    where
        S: Stream + Send + 'a,
        S::Item: Send,
        F: Fn(Vec<S::Item>, Self) -> Fut + Send + 'a,
        Fut: Future + Send + 'a,
        Fut::Output: Send,
    {
        let stages = Self::new(concurrency);
        let batch = batch.clamp(1, stages.width);
        let in_flight = stages.batches_in_flight(batch);
        clients
            .ready_chunks(batch)
            .map(move |batch| work(batch, stages.clone()))
            .buffer_unordered(in_flight)
    }

    /// Runs `work` (KMS calls) once a KMS permit is free.
    pub(crate) async fn kms<F: Future>(&self, work: F) -> F::Output {
        // The semaphore is never closed, so a permit always comes.
        let _permit = self.kms.acquire().await.ok();
        work.await
    }

    /// Runs `work` (store operations) once a store permit is free.
    pub(crate) async fn store<F: Future>(&self, work: F) -> F::Output {
        let _permit = self.store.acquire().await.ok();
        work.await
    }
}

/// The client ids of a batch of listing items, and the listing's failures among them.
pub(crate) fn split_listed<E>(listed: Vec<Result<String, E>>) -> (Vec<String>, Vec<E>) {
    let mut ids = Vec::with_capacity(listed.len());
    let mut failed = Vec::new();
    for item in listed {
        match item {
            Ok(client_id) => ids.push(client_id),
            Err(e) => failed.push(e),
        }
    }
    (ids, failed)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::StreamExt as _;

    use super::*;

    /// Steps in flight now, and the most seen at once.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl Gauge {
        fn enter(&self) {
            let now = self.now.fetch_add(1, Ordering::SeqCst).saturating_add(1);
            self.peak.fetch_max(now, Ordering::SeqCst);
        }
        fn leave(&self) {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
        fn peak(&self) -> usize {
            self.peak.load(Ordering::SeqCst)
        }
    }

    /// One 2 ms step, counted in its part's gauge and in the gauge of both parts.
    async fn step(part: &Gauge, both: &Gauge) {
        part.enter();
        both.enter();
        tokio::time::sleep(Duration::from_millis(2)).await;
        both.leave();
        part.leave();
    }

    /// Runs `clients` clients of one store step then one KMS step through `stages`: the
    /// most store steps, KMS steps, and steps of either part seen in flight at once.
    async fn peaks(stages: &Stages, clients: usize) -> (usize, usize, usize) {
        let (store, kms, both) = (Gauge::default(), Gauge::default(), Gauge::default());
        futures_util::stream::iter(0..clients)
            .for_each_concurrent(stages.clients_in_flight(), |_| async {
                stages.store(step(&store, &both)).await;
                stages.kms(step(&kms, &both)).await;
            })
            .await;
        (store.peak(), kms.peak(), both.peak())
    }

    #[tokio::test]
    async fn batches_hold_at_most_the_store_s_batch_and_the_width_and_every_item_once() {
        for (concurrency, batch, widest) in [(4, 3, 3), (4, 64, 4), (4, 1, 1), (0, 8, 1)] {
            let mut seen: Vec<usize> = Stages::run_batches(
                concurrency,
                batch,
                futures_util::stream::iter(0..50),
                |items, _| async move {
                    assert!(
                        (1..=widest).contains(&items.len()),
                        "{concurrency}, {batch}: {items:?}"
                    );
                    items
                },
            )
            .flat_map(futures_util::stream::iter)
            .collect()
            .await;
            seen.sort_unstable();
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
        }
        // Batches of several: enough of them in flight to hold twice the width, and one more.
        let stages = Stages::new(64);
        assert_eq!(stages.batches_in_flight(1), 128);
        assert_eq!(stages.batches_in_flight(64), 3);
        assert_eq!(stages.batches_in_flight(48), 4);
    }

    #[tokio::test]
    async fn the_store_works_on_some_clients_while_the_kms_works_on_others() {
        // Each part full and never over its width, and both full at once (bounding whole
        // clients at 4 would never have more than 4 steps in flight).
        assert_eq!(peaks(&Stages::new(4), 64).await, (4, 4, 8));
        // 0 counts as 1.
        assert_eq!(peaks(&Stages::new(0), 8).await, (1, 1, 2));
    }
}
