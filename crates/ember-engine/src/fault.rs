//! Faults that tests inject at chosen points, to make races that are rare in the wild happen
//! every time (compiled only with the `fault-injection` feature; without it nothing is read and
//! every function here says "no fault").
//!
//! The fault is read once per process from `EMBER_FAULT`, so a test can set it on the child
//! processes of a cluster it starts:
//!
//! - `worker-panic-before-outputs:<worker>:<batch>`: global worker `<worker>` never hands the
//!   outputs of the `<batch>`-th batch of the run (counted from 1; after a recovery, from the
//!   batch after the checkpoint) to its output thread. Once every other worker of its process
//!   has output that batch and, in a cluster, every other process has reported its part of that
//!   batch's checkpoint, the worker's thread panics: a worker ending abnormally after the batch's
//!   state was written everywhere and before its own outputs of the batch ran.

/// What to inject on one worker thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WorkerFault {
    /// The batch whose outputs the worker never hands over (ms).
    pub(crate) batch_ms: u64,
}

/// The fault for global worker `worker` of a run whose first batch is `first_batch_ms`, cut
/// every `interval_ms`, if `EMBER_FAULT` names one.
pub(crate) fn worker_fault(worker: usize, first_batch_ms: u64, interval_ms: u64) -> Option<WorkerFault> {
    let (faulty, batch) = configured()?;
    (faulty == worker).then(|| WorkerFault {
        batch_ms: first_batch_ms + batch.saturating_sub(1) * interval_ms,
    })
}

#[cfg(feature = "fault-injection")]
fn configured() -> Option<(usize, u64)> {
    static FAULT: std::sync::OnceLock<Option<(usize, u64)>> = std::sync::OnceLock::new();
    *FAULT.get_or_init(|| {
        let spec = std::env::var("EMBER_FAULT").ok()?;
        let parsed = parse(&spec);
        if parsed.is_none() {
            tracing::error!(
                spec,
                "EMBER_FAULT is not `worker-panic-before-outputs:<worker>:<batch>`; no fault is injected."
            );
        }
        parsed
    })
}

#[cfg(not(feature = "fault-injection"))]
fn configured() -> Option<(usize, u64)> {
    None
}

#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn parse(spec: &str) -> Option<(usize, u64)> {
    let rest = spec.trim().strip_prefix("worker-panic-before-outputs:")?;
    let (worker, batch) = rest.split_once(':')?;
    let batch: u64 = batch.parse().ok()?;
    (batch > 0).then_some((worker.parse().ok()?, batch))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_fault_names_a_worker_and_a_batch_counted_from_one() {
        assert_eq!(parse("worker-panic-before-outputs:1:3"), Some((1, 3)));
        assert_eq!(parse("worker-panic-before-outputs:1:0"), None);
        assert_eq!(parse("worker-panic:1:3"), None);
        assert_eq!(parse("worker-panic-before-outputs:x:3"), None);
    }
}
