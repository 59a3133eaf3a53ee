//! Output operations: `print`, `foreach_rdd`, `try_foreach_rdd`, `foreach_partition`.

use std::fmt::Display;
use std::io::Write;
use std::sync::Arc;

use ember_engine::ops::{OutputPlacement, PerPart};
use ember_engine::{Compiler, Data};

use crate::batch::Batch;
use crate::display::SparkDisplay;
use crate::dstream::{DStream, sorted_partitions};
use crate::error::Result;
use crate::plan::{NodeSpec, Partitioning};
use crate::time::Time;

const RULE: &str = "-------------------------------------------";

/// Spark's `print` text for one batch: a header for every batch (empty ones too), up to `num`
/// elements, and `...` when there are more.
pub fn format_batch<T: SparkDisplay>(time: Time, elements: &[T], num: usize) -> String {
    let mut s = format!("{RULE}\nTime: {time}\n{RULE}\n");
    for x in elements.iter().take(num) {
        x.fmt_spark(&mut s);
        s.push('\n');
    }
    if elements.len() > num {
        s.push_str("...\n");
    }
    s.push('\n');
    s
}

impl<T: Data> DStream<T> {
    /// Prints the first ten elements of every batch, in Spark's format:
    ///
    /// ```text
    /// -------------------------------------------
    /// Time: 1000 ms
    /// -------------------------------------------
    /// (hello,1)
    /// (world,1)
    ///
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`](crate::Error::IllegalState) when the context was already started
    /// or stopped.
    pub fn print(&self) -> Result<()>
    where
        T: SparkDisplay,
    {
        self.print_n(10)
    }

    /// Prints the first `num` elements of every batch (Spark's `print(num)`).
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn print_n(&self, num: usize) -> Result<()>
    where
        T: SparkDisplay,
    {
        // Each partition is trimmed to what print can show before the batch is gathered.
        self.register_output_with("print", OutputPlacement::Gathered, Some(num + 1), move |batch: Batch<T>| {
            let first: Vec<T> = batch.iter().take(num + 1).cloned().collect();
            let text = format_batch(batch.time(), &first, num);
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))
        })
    }

    /// Runs `f` on every batch, on one worker, in batch order (Spark's `foreachRDD`).
    ///
    /// A panic in `f` fails that batch's job; the failure is reported by
    /// [`StreamingContext::await_termination`](crate::StreamingContext::await_termination)
    /// and later batches go on.
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn foreach_rdd<F>(&self, f: F) -> Result<()>
    where
        F: Fn(Batch<T>, Time) + Send + Sync + 'static,
    {
        self.register_output("foreach_rdd", move |batch: Batch<T>| {
            let time = batch.time();
            f(batch, time);
            Ok(())
        })
    }

    /// Like [`DStream::foreach_rdd`], for a function that can fail: an `Err` fails the batch's
    /// job with the error's message.
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn try_foreach_rdd<E: Display, F>(&self, f: F) -> Result<()>
    where
        F: Fn(Batch<T>, Time) -> std::result::Result<(), E> + Send + Sync + 'static,
    {
        self.register_output("foreach_rdd", move |batch: Batch<T>| {
            let time = batch.time();
            f(batch, time).map_err(|e| e.to_string())
        })
    }

    /// Runs `f` on every worker, once per batch for each partition that worker holds, with the
    /// batch time (Spark's `dstream.foreachRDD(rdd => rdd.foreachPartition(...))`). Partitions
    /// are not gathered: each worker writes its own, which is how sinks scale. A worker that
    /// holds no partition of a batch does not call `f` for it.
    ///
    /// Failures are reported as for [`DStream::foreach_rdd`].
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn foreach_partition<F>(&self, f: F) -> Result<()>
    where
        F: Fn(Vec<T>, Time) + Send + Sync + 'static,
    {
        self.register_output_with("foreach_partition", OutputPlacement::PerWorker, None, move |batch: Batch<T>| {
            let time = batch.time();
            for partition in batch.into_partitions() {
                f(partition, time);
            }
            Ok(())
        })
    }

    /// Adds an output operation shown as `name` in the plan and in failures (`name#7`), which
    /// runs `action` on every batch, gathered on worker 0, in batch order, as
    /// [`DStream::try_foreach_rdd`] does. For crates that add output operations (`ember-database`'s
    /// `save_to_database`); an `Err` fails the batch's job with its message.
    ///
    /// # Errors
    ///
    /// As [`DStream::print`].
    pub fn register_output_operation<F>(&self, name: &str, action: F) -> Result<()>
    where
        F: Fn(Batch<T>) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.register_output(name, action)
    }

    /// Like [`DStream::register_output_operation`], but `action` runs on every worker with
    /// the partitions that worker holds (its share of the batch, as a [`Batch`]), as Spark's
    /// `foreachPartition` does: for sinks that every worker writes to in parallel. The batch
    /// completes when every worker's action returned; an `Err` fails it with its message.
    ///
    /// # Errors
    ///
    /// As [`DStream::register_output_operation`].
    pub fn register_output_operation_per_worker<F>(&self, name: &str, action: F) -> Result<()>
    where
        F: Fn(Batch<T>) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.register_output_with(name, OutputPlacement::PerWorker, None, action)
    }

    /// Registers an output that runs `action` on every gathered batch.
    pub(crate) fn register_output<F>(&self, name: &str, action: F) -> Result<()>
    where
        F: Fn(Batch<T>) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.register_output_with(name, OutputPlacement::Gathered, None, action)
    }

    /// Registers an output that runs `action` on every batch where `placement` says, with each
    /// partition first cut to `keep` elements if given.
    pub(crate) fn register_output_with<F>(&self, name: &str, placement: OutputPlacement, keep: Option<usize>, action: F) -> Result<()>
    where
        F: Fn(Batch<T>) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        let spec = NodeSpec::new(name, self.slide, vec![self.index]);
        self.register_output_node(spec, placement, keep, action)
    }

    /// [`DStream::register_output_with`] for an output node described by `spec`.
    pub(crate) fn register_output_node<F>(&self, spec: NodeSpec, placement: OutputPlacement, keep: Option<usize>, action: F) -> Result<()>
    where
        F: Fn(Batch<T>) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.plan.check_open("add an output operation")?;
        let action = Arc::new(action);
        let input = self.node_ref();
        let spec = spec.partitioning(Partitioning::Output);
        self.plan.add(
            spec,
            Arc::new(move |c: &mut Compiler<'_>, _index: u64, label: &str| {
                let mut stream = input.stream(c);
                if let Some(keep) = keep {
                    stream = stream.per_part(label, move |mut part| {
                        part.data.truncate(keep);
                        part
                    });
                }
                let action = Arc::clone(&action);
                ember_engine::ops::output(c, stream, label, placement, move |time, parts| {
                    action(Batch::from_partitions(Time::from_millis(time), sorted_partitions(parts)))
                })
            }),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_format_is_sparks() {
        let text = format_batch(Time::from_millis(1000), &[("a".to_owned(), 1), ("b".to_owned(), 2)], 10);
        assert_eq!(
            text,
            "-------------------------------------------\nTime: 1000 ms\n-------------------------------------------\n(a,1)\n(b,2)\n\n"
        );
        let text = format_batch::<i32>(Time::from_millis(2000), &[], 10);
        assert_eq!(
            text,
            "-------------------------------------------\nTime: 2000 ms\n-------------------------------------------\n\n"
        );
        let text = format_batch(Time::from_millis(3000), &[1, 2, 3], 2);
        assert_eq!(
            text,
            "-------------------------------------------\nTime: 3000 ms\n-------------------------------------------\n1\n2\n...\n\n"
        );
    }
}
