//! Element-wise operations: `map`, `flat_map`, `filter`, `map_partitions`, `glom`, and the
//! accepted no-ops `cache`/`persist`. They keep partition and element order and never move data.

use std::sync::Arc;

use ember_engine::ops::PerPart;
use ember_engine::{Data, Part};

use crate::dstream::DStream;

impl<T: Data> DStream<T> {
    /// A stream with `f` applied to every element.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2], vec![3]], |s| s.map(|x: i32| x * 10)).unwrap();
    /// assert_eq!(out, vec![vec![10, 20], vec![30]]);
    /// ```
    pub fn map<U: Data, F>(&self, f: F) -> DStream<U>
    where
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        self.stage("map", move |x, out: &mut dyn FnMut(U)| out(f(x)))
    }

    /// A stream with every element replaced by the items `f` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use ember::prelude::*;
    /// use ember::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec!["a b".to_owned()]], |s| {
    ///     s.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>())
    /// })
    /// .unwrap();
    /// assert_eq!(out, vec![vec!["a".to_owned(), "b".to_owned()]]);
    /// ```
    pub fn flat_map<U: Data, I, F>(&self, f: F) -> DStream<U>
    where
        I: IntoIterator<Item = U>,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        self.stage("flat_map", move |x, out: &mut dyn FnMut(U)| f(x).into_iter().for_each(&mut *out))
    }

    /// A stream with the elements for which `f` holds.
    pub fn filter<F>(&self, f: F) -> DStream<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.stage("filter", move |x, out: &mut dyn FnMut(T)| {
            if f(&x) {
                out(x)
            }
        })
    }

    /// A stream with `f` applied to each partition as a whole (Spark's `mapPartitions`).
    pub fn map_partitions<U: Data, I, F>(&self, f: F) -> DStream<U>
    where
        I: IntoIterator<Item = U>,
        F: Fn(std::vec::IntoIter<T>) -> I + Send + Sync + 'static,
    {
        self.map_partitions_as("map_partitions", f)
    }

    /// [`DStream::map_partitions`] shown as `operation` in the plan and in failures
    /// (`operation#3`): for bindings whose element-wise operations run a partition at a time
    /// (ember's Python API takes the GIL once per partition), so that a failure names the
    /// operation the user called.
    pub fn map_partitions_as<U: Data, I, F>(&self, operation: &'static str, f: F) -> DStream<U>
    where
        I: IntoIterator<Item = U>,
        F: Fn(std::vec::IntoIter<T>) -> I + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.derive(operation, move |_c, s, label| {
            let f = Arc::clone(&f);
            s.per_part(label, move |p: Part<T>| Part {
                id: p.id,
                data: f(p.data.into_iter()).into_iter().collect(),
            })
        })
    }

    /// A stream whose elements are the partitions of this one, each as a `Vec` (Spark's `glom`).
    pub fn glom(&self) -> DStream<Vec<T>> {
        self.derive("glom", move |_c, s, label| {
            s.per_part(label, |p: Part<T>| Part {
                id: p.id,
                data: vec![p.data],
            })
        })
    }

    /// Accepted for compatibility with Spark: ember keeps batches in memory only as long as an
    /// operator needs them, so there is nothing to cache. Returns the same stream.
    pub fn cache(&self) -> DStream<T> {
        self.clone()
    }

    /// Accepted for compatibility with Spark; see [`DStream::cache`].
    pub fn persist(&self) -> DStream<T> {
        self.clone()
    }
}
