//! Windows over a stream: `window`, `reduce_by_window`, `count_by_window`.
//!
//! A window of length `W` emitted at time `T` holds the parent's batches in `(T - W, T]`,
//! oldest first. Windowed streams emit at every multiple of their slide after zero time, the
//! first (partial) window included, and go on emitting after the input stops.
//!
//! Every worker buffers the batches it holds itself, so a window moves no data between
//! workers; keyed windows (`pair::window`) rely on every batch's shuffle sending a key to the
//! same worker.

use std::collections::VecDeque;

use ember_engine::ops::PerBatch;
use ember_engine::{Compiler, Data, EStream, Msg, Part};

use crate::dstream::DStream;
use crate::error::{Error, Result};
use crate::plan::NodeSpec;
use crate::time::Duration;

/// Checks a window's durations against its parent's slide, as Spark does when the windowed
/// stream is constructed. The message names both durations.
pub(crate) fn check_window(operation: &'static str, parent: Duration, window: Duration, slide: Duration) -> Result<()> {
    let invalid = |message: String| Err(Error::InvalidArgument { operation, message });
    if window.as_millis() == 0 {
        return invalid("windowDuration must be positive, got 0 ms".into());
    }
    if slide.as_millis() == 0 {
        return invalid("slideDuration must be positive, got 0 ms".into());
    }
    if !window.is_multiple_of(parent) {
        return invalid(format!(
            "windowDuration must be multiple of the parent dstream's slide (batch) duration ({parent}); got windowDuration {window}"
        ));
    }
    if !slide.is_multiple_of(parent) {
        return invalid(format!(
            "slideDuration must be multiple of the parent dstream's slide (batch) duration ({parent}); got slideDuration {slide}"
        ));
    }
    Ok(())
}

/// The batches one worker holds of a sliding window: `(time, partitions)`, oldest first.
pub(crate) type Buffered<T> = VecDeque<(u64, Vec<Part<T>>)>;

/// Buffers `input` (on the grid of `parent_slide`) and, at every time on the grid of the node
/// being compiled (the window's slide), calls `emit(time, buffer)`; the buffer then holds the
/// batches of `(time - keep, time]` on this worker, oldest first (`emit` may drop more).
pub(crate) fn sliding<'s, T: Data, U: Data>(
    c: &Compiler<'s>,
    input: EStream<'s, T>,
    label: &str,
    parent_slide: Duration,
    keep: Duration,
    mut emit: impl FnMut(u64, &mut Buffered<T>, &mut Vec<Msg<U>>) + 'static,
) -> EStream<'s, U> {
    let (out_grid, keep) = (c.grid(), keep.as_millis());
    let mut buffer: Buffered<T> = VecDeque::new();
    input.per_batch(
        &c.grid_of(parent_slide.as_millis()),
        label,
        |acc: &mut Vec<Part<T>>, p| acc.push(p),
        move |info, parts, out| {
            buffer.push_back((info.time, parts));
            while buffer.front().is_some_and(|(t, _)| t + keep <= info.time) {
                buffer.pop_front();
            }
            if out_grid.contains(info.time) {
                emit(info.time, &mut buffer, out);
            }
        },
    )
}

impl<T: Data> DStream<T> {
    /// A stream whose batch at time `T` holds every batch of this stream in `(T - window, T]`,
    /// oldest first, emitted every `slide` (Spark's `window`). Both durations must be multiples
    /// of this stream's slide; the window may be shorter than the slide (batches between two
    /// windows are then skipped).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming both durations when `window` or `slide` is zero or not
    /// a multiple of this stream's slide.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1], vec![2], vec![3]], |s| s.window(seconds(2), seconds(1)).unwrap()).unwrap();
    /// assert_eq!(out, vec![vec![1], vec![1, 2], vec![2, 3]]);
    /// ```
    pub fn window(&self, window: Duration, slide: Duration) -> Result<DStream<T>> {
        check_window("window", self.slide, window, slide)?;
        let parent_slide = self.slide;
        Ok(
            self.derive_node(NodeSpec::new("window", slide, vec![self.index]), move |c, input, label| {
                let (p, w) = (parent_slide.as_millis(), window.as_millis());
                sliding(c, input, label, parent_slide, window, move |time, buffer, out| {
                    for (t, parts) in buffer.iter() {
                        // The batch's position in the window (1 = oldest) orders its partitions.
                        let position = ((t + w - time) / p) as u32;
                        out.extend(parts.iter().map(|part| {
                            Msg::Part(Part {
                                id: part.id.clone().prefixed(position),
                                data: part.data.clone(),
                            })
                        }));
                    }
                })
            }),
        )
    }

    /// A stream of one element per window: `f` folded over every element of the window
    /// (Spark's `reduceByWindow` without an inverse function). An empty window gives an empty
    /// batch.
    ///
    /// # Errors
    ///
    /// As [`DStream::window`].
    pub fn reduce_by_window<F>(&self, f: F, window: Duration, slide: Duration) -> Result<DStream<T>>
    where
        F: Fn(T, T) -> T + Send + Sync + 'static,
    {
        check_window("reduce_by_window", self.slide, window, slide)?;
        let f = std::sync::Arc::new(f);
        let g = std::sync::Arc::clone(&f);
        self.try_one_op("reduce_by_window", || {
            Ok(self.reduce(move |a, b| f(a, b)).window(window, slide)?.reduce(move |a, b| g(a, b)))
        })
    }

    /// Like [`DStream::reduce_by_window`], computed incrementally: each slide adds the batches
    /// entering the window with `f` and removes the batches leaving it with `inv_f` (Spark's
    /// `reduceByWindow(reduceFunc, invReduceFunc, ...)`). Once an element has been seen, every
    /// window emits a value, so an emptied window gives the identity of `f` (0 for a sum).
    ///
    /// # Errors
    ///
    /// As [`DStream::window`].
    pub fn reduce_by_window_inv<F, G>(&self, f: F, inv_f: G, window: Duration, slide: Duration) -> Result<DStream<T>>
    where
        F: Fn(T, T) -> T + Send + Sync + 'static,
        G: Fn(T, T) -> T + Send + Sync + 'static,
    {
        check_window("reduce_by_window", self.slide, window, slide)?;
        self.try_one_op("reduce_by_window", || {
            let keyed = self.map(|x| ((), x));
            let reduced = keyed.reduce_by_key_and_window_inv_impl("reduce_by_window", (f, inv_f), window, slide, Some(1), None)?;
            Ok(reduced.map(|((), v)| v))
        })
    }

    /// The number of elements in each window (Spark's `countByWindow`), computed incrementally.
    /// Until the first element arrives the windows are empty batches; after that an emptied
    /// window counts 0.
    ///
    /// # Errors
    ///
    /// As [`DStream::window`].
    pub fn count_by_window(&self, window: Duration, slide: Duration) -> Result<DStream<u64>> {
        check_window("count_by_window", self.slide, window, slide)?;
        self.try_one_op("count_by_window", || {
            self.map(|_| 1u64).reduce_by_window_inv(|a, b| a + b, |a, b| a - b, window, slide)
        })
    }
}
