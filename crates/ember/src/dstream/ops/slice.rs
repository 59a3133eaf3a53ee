//! `slice`: the batches a stream generated in a range of times, kept as long as
//! [`StreamingContext::remember`](crate::StreamingContext::remember) says.
//!
//! Spark recomputes a sliced batch from its lineage; ember keeps no lineage, so it keeps the
//! batches themselves. Only when `remember` is set, and only for the streams the program still
//! holds a handle to at `start` (no other stream can be sliced) and that some output computes:
//! an output added at start gathers each of their batches on worker 0, before the user's
//! outputs of the same batch run, and forgets it once it is `remember` older than the newest.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ember_engine::Data;
use ember_engine::ops::OutputPlacement;

use crate::batch::Batch;
use crate::dstream::DStream;
use crate::error::{Error, Result};
use crate::lock::lock;
use crate::plan::NodeSpec;
use crate::time::{Duration, Time};

/// The batches of one stream kept for `slice`, by time.
struct Retained<T> {
    /// How long a batch is kept after a newer one: `remember`, at least the stream's slide.
    keep: Duration,
    /// Whether this process gathers the batches (process 0 of a cluster).
    here: bool,
    batches: Mutex<BTreeMap<Time, Batch<T>>>,
}

impl<T: Data> DStream<T> {
    /// Adds the output that keeps this stream's batches for `keep`; returns where they are kept.
    pub(crate) fn retain(&self, keep: Duration, here: bool) -> Result<Arc<dyn Any + Send + Sync>> {
        let store = Arc::new(Retained::<T> {
            keep: keep.max(self.slide),
            here,
            batches: Mutex::default(),
        });
        let kept = Arc::clone(&store);
        let spec = NodeSpec::new("remember", self.slide, vec![self.index]).follows_parent();
        self.register_output_node(spec, OutputPlacement::Gathered, None, move |batch: Batch<T>| {
            let time = batch.time();
            let mut batches = lock(&kept.batches);
            batches.insert(time, batch);
            // Spark's clearMetadata: a batch goes once it is `remember` older than the newest.
            let forget_up_to = time.milliseconds().saturating_sub(kept.keep.as_millis());
            while let Some(oldest) = batches.first_entry() {
                if oldest.key().milliseconds() > forget_up_to {
                    break;
                }
                oldest.remove();
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// The batches of this stream with times from `from_time` to `to_time`, both included, in
    /// time order (Spark's `slice`). Times that are not on the stream's grid of batch times are
    /// rounded down to it, with a warning, as Spark does.
    ///
    /// ember keeps batches for `slice` only while
    /// [`StreamingContext::remember`](crate::StreamingContext::remember) says (set it before
    /// `start`), and only for streams that some output operation computes. A batch is there once
    /// it has been computed (its outputs run after it is kept, so `slice` called from a
    /// `foreach_rdd` of batch `t` sees batch `t`); a batch not yet computed, failed, or forgotten
    /// is not in the result. In a cluster the batches are gathered on process 0, where `slice`
    /// answers.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalState`] before the context has started (Spark: "has not been
    /// initialized"), when `remember` was not set before start, when no output operation uses
    /// this stream (it is not computed), and on a process of a cluster other than process 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    ///
    /// let clock = ManualClock::new();
    /// let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build()?;
    /// let numbers = ssc.replay_stream(vec![Some(vec![1, 2]), Some(vec![3]), Some(vec![4, 5])], 1);
    /// numbers.foreach_rdd(|_, _| {})?;
    /// ssc.remember(seconds(2))?;
    /// ssc.start()?;
    /// clock.advance(seconds(3));
    /// assert!(ssc.await_batch(Time::from_millis(3000), seconds(30))?);
    /// // Batches 1000, 2000 and 3000 ran; with remember = 2 s, 2000 and 3000 are kept.
    /// let kept: Vec<Vec<i32>> = numbers
    ///     .slice(Time::from_millis(0), Time::from_millis(3000))?
    ///     .into_iter()
    ///     .map(|batch| batch.into_vec())
    ///     .collect();
    /// assert_eq!(kept, vec![vec![3], vec![4, 5]]);
    /// ssc.stop(false)?;
    /// # Ok::<(), ember::Error>(())
    /// ```
    pub fn slice(&self, from_time: Time, to_time: Time) -> Result<Vec<Batch<T>>> {
        let name = || self.operator_name();
        if !self.plan.started() {
            return Err(Error::IllegalState(format!(
                "{} has not been initialized: slice needs a started StreamingContext",
                name()
            )));
        }
        let store = match self.handle.retained.get() {
            None => {
                return Err(Error::IllegalState(format!(
                    "cannot slice {}: ember keeps batches only when StreamingContext::remember is set before start",
                    name()
                )));
            }
            Some(None) => {
                return Err(Error::IllegalState(format!(
                    "cannot slice {}: no output operation uses it, so it is not computed",
                    name()
                )));
            }
            Some(Some(store)) => store,
        };
        let Some(store) = store.downcast_ref::<Retained<T>>() else {
            return Err(Error::IllegalState(format!(
                "cannot slice {}: its kept batches have another type (a bug in ember)",
                name()
            )));
        };
        if !store.here {
            return Err(Error::IllegalState(format!(
                "cannot slice {} here: in a cluster its batches are gathered on process 0, where slice answers",
                name()
            )));
        }
        let batches = lock(&store.batches);
        let Some(&anchor) = batches.keys().next() else {
            return Ok(Vec::new());
        };
        let from = self.align(from_time, anchor, "from");
        let to = self.align(to_time, anchor, "to");
        if from > to {
            return Ok(Vec::new());
        }
        Ok(batches.range(from..=to).map(|(_, batch)| batch.clone()).collect())
    }

    /// `time` rounded down to this stream's grid of batch times (which `anchor` is on).
    fn align(&self, time: Time, anchor: Time, which: &str) -> Time {
        let slide = i128::from(self.slide.as_millis().max(1));
        let offset = i128::from(time.milliseconds()) - i128::from(anchor.milliseconds());
        let aligned = i128::from(anchor.milliseconds()) + offset.div_euclid(slide) * slide;
        let aligned = Time::from_millis(u64::try_from(aligned.max(0)).unwrap_or(0));
        if aligned != time {
            tracing::warn!(
                stream = %self.operator_name(),
                %time,
                %aligned,
                "slice: the {which} time is not a multiple of the slide duration ({}) from the zero time; using {aligned}",
                self.slide
            );
        }
        aligned
    }
}
