//! Windows over a stream: `window`, `reduce_by_window`, `count_by_window`.
//!
//! A window of length `W` emitted at time `T` holds the parent's batches in `(T - W, T]`,
//! oldest first. Windowed streams emit at every multiple of their slide after zero time, the
//! first (partial) window included, and go on emitting after the input stops.
//!
//! Every worker buffers the batches it holds itself, so a window moves no data between
//! workers; keyed windows (`pair::window`) rely on every batch's shuffle sending a key to the
//! same worker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ember_engine::keys::KeySpace;
use ember_engine::ops::BatchInfo;
use ember_engine::state::{StatefulLogic, stateful};
use ember_engine::{Compiler, Data, EStream, Msg, Part, PartId};

use crate::dstream::DStream;
use crate::dstream::shuffle::Shuffle;
use crate::error::{Error, Result};
use crate::plan::NodeSpec;
use crate::state_codec::{decode, encode};
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

/// How a window's buffered batches are spread over key groups in snapshots, so that they
/// restore on any number of workers.
pub(crate) enum WindowGroups<T> {
    /// Elements without keys: each buffered partition belongs to a group picked by its id, and
    /// comes back, id unchanged, on the worker that owns that group (as if the groups were
    /// spread over one partition per worker).
    ByPartition,
    /// Keyed elements: each belongs to its key's group and comes back in its key's partition
    /// of `shuffle`, on the worker that owns it.
    ByKey {
        shuffle: Shuffle,
        group_of: Arc<dyn Fn(&T) -> u32 + Send + Sync>,
    },
}

/// Buffers `input` (on the grid of `parent_slide`) and, at every time on the grid of the node
/// being compiled (the window's slide), calls `emit(time, buffer)`; the buffer then holds the
/// batches of `(time - keep, time]` on this worker, oldest first. The buffer is engine-owned
/// state ([`StatefulLogic`]): snapshotted every `checkpoint_every` past zero, per key group as
/// `groups` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sliding<'s, T: Data, U: Data>(
    c: &mut Compiler<'s>,
    input: EStream<'s, T>,
    label: &str,
    parent_slide: Duration,
    keep: Duration,
    groups: WindowGroups<T>,
    checkpoint_every: Duration,
    emit: impl FnMut(u64, &Buffered<T>, &mut Vec<Msg<U>>) + 'static,
) -> EStream<'s, U> {
    let out_grid = c.grid();
    // Windows over unkeyed partitions hold them by the key groups of one partition per worker.
    let by_partition = Shuffle::new(c, None);
    let owned_groups = match &groups {
        WindowGroups::ByPartition => by_partition.owned(c).groups,
        WindowGroups::ByKey { shuffle, .. } => shuffle.owned(c).groups,
    };
    let logic = Window {
        buffer: VecDeque::new(),
        keep_ms: keep.as_millis(),
        zero: c.env.zero_ms,
        step: out_grid.step_ms,
        part_space: by_partition.space,
        groups,
        owned_groups,
        emit: Box::new(emit),
    };
    let grid = c.grid_of(parent_slide.as_millis());
    stateful(c, input, &grid, label, checkpoint_every.as_millis(), logic)
}

/// A sliding window's buffer on one worker.
struct Window<T, U> {
    buffer: Buffered<T>,
    keep_ms: u64,
    zero: u64,
    /// The window's slide (ms): it emits at multiples of it past zero.
    step: u64,
    /// Groups of unkeyed partitions, spread as one partition per worker.
    part_space: KeySpace,
    groups: WindowGroups<T>,
    owned_groups: BTreeSet<u32>,
    emit: Box<dyn FnMut(u64, &Buffered<T>, &mut Vec<Msg<U>>)>,
}

/// One key group's share of a window's buffer: `(time, partitions)`.
type WindowGroup<T> = Vec<(u64, Vec<Part<T>>)>;

impl<T: Data, U: Data> StatefulLogic for Window<T, U> {
    type Input = T;
    type Output = U;

    fn on_batch(&mut self, info: BatchInfo, parts: Vec<Part<T>>, out: &mut Vec<Msg<U>>) {
        self.buffer.push_back((info.time, parts));
        while self.buffer.front().is_some_and(|(t, _)| t + self.keep_ms <= info.time) {
            self.buffer.pop_front();
        }
        if info.time > self.zero && (info.time - self.zero).is_multiple_of(self.step) {
            (self.emit)(info.time, &self.buffer, out);
        }
    }

    fn owns(&self, group: u32) -> bool {
        self.owned_groups.contains(&group)
    }

    fn snapshot(&self) -> std::result::Result<BTreeMap<u32, Vec<u8>>, String> {
        let mut groups: BTreeMap<u32, WindowGroup<T>> = BTreeMap::new();
        for (t, parts) in &self.buffer {
            let mut by_group: BTreeMap<u32, Vec<Part<T>>> = BTreeMap::new();
            for part in parts {
                match &self.groups {
                    WindowGroups::ByPartition => by_group.entry(self.part_space.group(&part.id)).or_default().push(part.clone()),
                    WindowGroups::ByKey { group_of, .. } => {
                        for x in &part.data {
                            let parts = by_group.entry(group_of(x)).or_default();
                            match parts.last_mut() {
                                Some(last) => last.data.push(x.clone()),
                                None => parts.push(Part {
                                    id: PartId::default(),
                                    data: vec![x.clone()],
                                }),
                            }
                        }
                    }
                }
            }
            for (group, parts) in by_group {
                groups.entry(group).or_default().push((*t, parts));
            }
        }
        groups
            .into_iter()
            .map(|(group, batches)| encode(&batches).map(|bytes| (group, bytes)))
            .collect()
    }

    fn restore(&mut self, group: u32, bytes: &[u8]) -> std::result::Result<(), String> {
        let batches: WindowGroup<T> = decode(bytes)?;
        for (t, mut parts) in batches {
            if let WindowGroups::ByKey { shuffle, .. } = &self.groups {
                let id = PartId::new(shuffle.space.partition_of_group(group));
                for part in &mut parts {
                    part.id = id.clone();
                }
            }
            let at = self.buffer.partition_point(|(time, _)| *time < t);
            match self.buffer.get_mut(at) {
                Some((time, held)) if *time == t => held.extend(parts),
                _ => self.buffer.insert(at, (t, parts)),
            }
        }
        Ok(())
    }
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
        let spec = NodeSpec::new("window", slide, vec![self.index]);
        let meta = Arc::clone(&spec.meta);
        Ok(self.derive_node(spec, move |c, input, label| {
            let (p, w) = (parent_slide.as_millis(), window.as_millis());
            let every = meta.checkpoint_every(slide);
            sliding(
                c,
                input,
                label,
                parent_slide,
                window,
                WindowGroups::ByPartition,
                every,
                move |time, buffer, out| {
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
                },
            )
        }))
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
