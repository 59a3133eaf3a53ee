//! Helpers for tests and examples: feed a few batches, get each batch's output.

use std::sync::{Arc, Mutex};

use crate::prelude::*;
use crate::{Data, Result};

/// Runs `pipeline` over `batches` (one per 1 s interval, on a manual clock, one worker) and
/// returns the output of every batch, empty ones included.
///
/// # Errors
///
/// The first failure of a batch job, or an error building the pipeline.
pub fn run_batches<T: Data, U: Data>(batches: Vec<Vec<T>>, pipeline: impl FnOnce(DStream<T>) -> DStream<U>) -> Result<Vec<Vec<U>>> {
    run_batches_on(1, batches, pipeline)
}

/// [`run_batches`] on `workers` worker threads.
///
/// # Errors
///
/// As [`run_batches`].
pub fn run_batches_on<T: Data, U: Data>(
    workers: usize,
    batches: Vec<Vec<T>>,
    pipeline: impl FnOnce(DStream<T>) -> DStream<U>,
) -> Result<Vec<Vec<U>>> {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(workers)
        .manual_clock(&clock)
        .build()?;
    let n = batches.len() as u64;
    let input = ssc.replay_stream(batches.into_iter().map(Some).collect(), 1);
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&out);
    pipeline(input).foreach_rdd(move |b, _| sink.lock().unwrap_or_else(|e| e.into_inner()).push(b.into_vec()))?;
    ssc.start()?;
    clock.advance(seconds(n));
    let done = ssc.await_batch(Time::from_millis(n * 1000), seconds(60))?;
    ssc.stop(false)?;
    if let Some(e) = ssc.failures().into_iter().next() {
        return Err(e);
    }
    if !done {
        return Err(crate::Error::Internal("the batches did not complete within 60 s".into()));
    }
    let out = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(out)
}

/// A fresh directory under the system temp dir (`ember-<tag>-<pid>-<n>-<ns>`), removed with
/// everything in it when dropped: for file sources, checkpoints and sinks in tests.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates the directory.
    ///
    /// # Errors
    ///
    /// The I/O error when it cannot be created.
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("ember-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    /// The directory's path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `text` to `name` in the directory under a hidden name first, then renames it into
    /// place, so that a file stream sees it appear whole.
    ///
    /// # Errors
    ///
    /// The I/O error of the write or the rename.
    pub fn publish(&self, name: &str, text: &str) -> std::io::Result<()> {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.0.join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh prefix of the object-storage tests' bucket, as an `s3://` URL: the bucket
/// `EMBER_TEST_S3_BUCKET` (default `ember-test`) on the S3 server that the project's `test.sh`
/// and CI start (moto on 127.0.0.1, at `AWS_ENDPOINT_URL`), under a name no other test or run
/// uses.
///
/// # Panics
///
/// When `AWS_ENDPOINT_URL` is not set, saying how to start a server.
pub fn s3_test_dir(test: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "the object-storage tests need an S3 server: run ./test.sh, or export \
         AWS_ENDPOINT_URL=$(.ci/s3-server) AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
    );
    let bucket = std::env::var("EMBER_TEST_S3_BUCKET").unwrap_or_else(|_| "ember-test".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "s3://{bucket}/{test}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
