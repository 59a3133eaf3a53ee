//! Engine-owned state round trips: every stateful operator's snapshot, written by the engine at
//! a checkpoint batch on one number of workers, restores on another and the job goes on with
//! exactly the output of an uninterrupted run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ember_engine::state::{OperatorSnapshot, RestoreImage, RestoredState, SnapshotSink};

use crate::prelude::*;

type Pipeline = fn(DStream<(String, u64)>) -> DStream<(String, u64)>;

/// Input batch `i` (from 0): keys `k0..k5`, some of them, with small values.
fn input(batches: usize) -> Vec<Option<Vec<(String, u64)>>> {
    (0..batches)
        .map(|i| {
            Some(
                (0..12)
                    .filter(|j| (i + j) % 3 != 0)
                    .map(|j| (format!("k{}", j % 6), (i * j % 5) as u64 + 1))
                    .collect(),
            )
        })
        .collect()
}

/// Runs `pipeline` over `batches` on `workers`, the clock starting at `start_ms`, optionally
/// restoring `image`; returns each batch's sorted output and the snapshots written.
fn run(
    workers: usize,
    start_ms: u64,
    batches: Vec<Option<Vec<(String, u64)>>>,
    image: Option<RestoreImage>,
    pipeline: Pipeline,
) -> (Vec<(u64, Vec<(String, u64)>)>, Vec<OperatorSnapshot>) {
    let clock = ManualClock::new();
    clock.set_ms(start_ms);
    let snapshots = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&snapshots);
    let mut builder = StreamingContext::builder(seconds(1))
        .workers(workers)
        .manual_clock(&clock)
        .snapshot_sink(SnapshotSink(Arc::new(move |s| sink.lock().unwrap().push(s))));
    if let Some(image) = image {
        builder = builder.restore(image);
    }
    let ssc = builder.build().unwrap();
    let n = batches.len() as u64;
    let out = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&out);
    pipeline(ssc.replay_stream(batches, 3))
        .foreach_rdd(move |b, t| {
            let mut items = b.collect();
            items.sort();
            seen.lock().unwrap().push((t.milliseconds(), items));
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(n));
    assert!(ssc.await_batch(Time::from_millis(start_ms + n * 1000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let out = out.lock().unwrap().clone();
    let snapshots = snapshots.lock().unwrap().clone();
    (out, snapshots)
}

/// The restore image of the snapshots taken after batch `time`, from every worker.
fn image_at(snapshots: &[OperatorSnapshot], time: u64) -> RestoreImage {
    let mut image: BTreeMap<String, RestoredState> = BTreeMap::new();
    for s in snapshots.iter().filter(|s| s.time == time) {
        let state = image.entry(s.operator.clone()).or_default();
        state.kind.clone_from(&s.kind);
        for (group, bytes) in &s.groups {
            assert!(
                state.groups.insert(*group, bytes.clone()).is_none(),
                "key group {group} written twice"
            );
        }
    }
    Arc::new(image)
}

/// Checkpoints after batch 4 of 8 on 2 workers, restores on 3 workers, and compares.
fn round_trip(pipeline: Pipeline) {
    let all = input(8);
    let (whole, snapshots) = run(2, 0, all.clone(), None, pipeline);
    assert_eq!(whole.len(), 8);
    assert!(snapshots.iter().any(|s| s.time == 4000), "no snapshot after batch 4: {snapshots:?}");
    let image = image_at(&snapshots, 4000);
    let (rest, _) = run(3, 4000, all[4..].to_vec(), Some(image), pipeline);
    assert_eq!(rest, whole[4..].to_vec());
}

#[test]
fn update_state_by_key_restores_on_another_worker_count() {
    round_trip(|s| {
        s.update_state_by_key(|vs: Vec<u64>, state: Option<u64>| Some(vs.iter().sum::<u64>() + state.unwrap_or(0)))
            .checkpoint(seconds(2))
            .unwrap()
    });
}

#[test]
fn map_with_state_restores_on_another_worker_count() {
    round_trip(|s| {
        let spec = StateSpec::function(|k: &String, v: Option<u64>, state: &mut State<u64>| {
            let total = v.unwrap_or(0) + state.get().copied().unwrap_or(0);
            state.update(total);
            (k.clone(), total)
        });
        let mapped = s.map_with_state(spec);
        let mapped = mapped.checkpoint(seconds(2)).unwrap();
        mapped
            .state_snapshots()
            .union(&mapped.map(|(k, v)| (format!("mapped {k}"), v)))
            .unwrap()
    });
}

#[test]
fn an_incremental_window_restores_on_another_worker_count() {
    round_trip(|s| {
        s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, seconds(3), seconds(1))
            .unwrap()
            .checkpoint(seconds(2))
            .unwrap()
    });
}

#[test]
fn a_restored_operator_with_no_state_on_a_worker_does_not_take_its_initial_state_again() {
    // The initial key is removed by batch 1; the state is empty from then on, so the snapshot
    // after batch 4 has no key group at all. A restored worker must not join the initial
    // state in again (nor report "no RDD" where the uninterrupted run has an empty state).
    let pipeline: Pipeline = |s| {
        s.update_state_by_key_with_initial(
            |vs: Vec<u64>, state: Option<u64>| if vs.is_empty() { state } else { None },
            vec![("gone".to_owned(), 1)],
        )
        .checkpoint(seconds(2))
        .unwrap()
    };
    let mut all: Vec<Option<Vec<(String, u64)>>> = vec![Some(vec![("gone".to_owned(), 1)])];
    all.extend((1..8).map(|_| Some(Vec::new())));
    let (whole, snapshots) = run(2, 0, all.clone(), None, pipeline);
    assert_eq!(whole[0].1, Vec::new());
    let image = image_at(&snapshots, 4000);
    let (rest, _) = run(3, 4000, all[4..].to_vec(), Some(image), pipeline);
    assert_eq!(rest, whole[4..].to_vec());
}
