//! Input streams: queues, pre-recorded batches, receivers (sockets and custom), files.

pub(crate) mod direct;
mod file;
pub mod lines;
mod queue;
mod receiver;
mod replay;
mod socket;
mod wal;

pub use direct::{DirectBatch, DirectSource};
pub(crate) use lines::BadRecords;
pub use lines::{BadRecordCounts, LongLinePolicy};
pub use queue::BatchQueue;
pub use receiver::{Receiver, ReceiverContext, ReceiverInfo};
pub use socket::Utf8Policy;

use ember_engine::{Msg, Part, PartId};

/// An operator id as part of a file name: characters other than ASCII letters, digits, `-`
/// and `.` become `_`.
pub(crate) fn file_name_of(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Splits `items` into `n` partitions by Spark's `parallelize` rule: partition `i` holds
/// indices `[i*L/n, (i+1)*L/n)`.
pub(crate) fn parallelize<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let n = n.max(1);
    let len = items.len();
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(n);
    let mut iter = items.into_iter();
    for i in 0..n {
        let (start, end) = (i * len / n, (i + 1) * len / n);
        parts.push(iter.by_ref().take(end - start).collect());
    }
    parts
}

/// Messages for a batch made of `partitions`, numbered from 0.
pub(crate) fn partition_msgs<T>(partitions: Vec<Vec<T>>) -> Vec<Msg<T>> {
    partitions
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            Msg::Part(Part {
                id: PartId::new(i as u32),
                data,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parallelize_matches_spark() {
        assert_eq!(super::parallelize(vec![1, 2, 3, 4], 2), vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(super::parallelize(vec![1], 2), vec![vec![], vec![1]]);
        assert_eq!(super::parallelize(vec![1, 2, 3], 2), vec![vec![1], vec![2, 3]]);
    }
}
