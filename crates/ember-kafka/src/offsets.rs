//! Offsets: what a batch reads of each topic partition, decided from the stream's position
//! and the partitions' watermarks. Pure logic, without a Kafka client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The offsets of one topic partition that one batch reads (Spark's `OffsetRange`): from
/// `from_offset` (included) to `until_offset` (excluded).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OffsetRange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset read.
    pub from_offset: i64,
    /// The offset after the last one read.
    pub until_offset: i64,
}

impl OffsetRange {
    /// How many offsets the range spans (Spark's `count`).
    pub fn count(&self) -> u64 {
        (self.until_offset - self.from_offset).max(0) as u64
    }

    /// The range's topic partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

impl std::fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {} partition {} offsets [{}, {})",
            self.topic, self.partition, self.from_offset, self.until_offset
        )
    }
}

/// Where a stream starts reading the partitions it finds when it starts fresh (not from a
/// checkpoint, which holds its own offsets). Partitions that appear while the stream runs are
/// read from their earliest offset, so that nothing written to them is missed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The earliest offset still available (Kafka's `auto.offset.reset=earliest`).
    Earliest,
    /// The end of each partition: only records written after the start (Kafka's
    /// `auto.offset.reset=latest`, Spark's default for a new consumer group).
    #[default]
    Latest,
    /// The given offset of each listed partition; partitions not listed start at the latest.
    Explicit(BTreeMap<TopicPartition, i64>),
}

/// What a stream does when the next offset it would read is no longer in the partition (the
/// records were deleted by retention before they were read, or the topic was recreated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetReset {
    /// Reports the problem (`await_termination` returns it, naming the partition and the
    /// offsets) and reads nothing more of that partition: records were lost, and the user
    /// decides. The default, as Spark's direct stream, which fails its task.
    #[default]
    Fail,
    /// Goes on from the earliest available offset, with a warning saying how many offsets
    /// were skipped.
    Earliest,
}

/// A partition's watermarks: the earliest available offset and the offset the next record
/// will get.
pub(crate) type Watermarks = (i64, i64);

/// What [`plan`] decided besides the ranges.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) ranges: Vec<OffsetRange>,
    /// Partitions whose next offset is out of range under [`OffsetReset::Fail`].
    pub(crate) out_of_range: Vec<String>,
    /// Partitions moved to their earliest offset under [`OffsetReset::Earliest`].
    pub(crate) reset: Vec<String>,
}

/// The ranges of one batch: for every partition of `positions` (in their order: by topic, then
/// partition number), from its position to its high watermark, at most `per_partition` offsets,
/// and in all at most `total` split over the partitions in proportion to how far behind they are
/// (Spark's backpressure rule); a partition that is behind always gets at least one offset.
/// Partitions without watermarks (the brokers did not answer) get an empty range. Positions move
/// to the end of their ranges.
pub(crate) fn plan(
    positions: &mut BTreeMap<TopicPartition, i64>,
    marks: &BTreeMap<TopicPartition, Watermarks>,
    per_partition: Option<u64>,
    total: Option<u64>,
    reset: OffsetReset,
) -> Planned {
    let mut planned = Planned::default();
    let mut stuck = std::collections::BTreeSet::new();
    for (tp, position) in positions.iter_mut() {
        let Some(&(low, high)) = marks.get(tp) else { continue };
        if *position < low || *position > high {
            let what = format!(
                "the next offset of topic {} partition {} is {position}, but the partition holds offsets [{low}, {high})",
                tp.topic, tp.partition
            );
            match reset {
                OffsetReset::Fail => {
                    planned.out_of_range.push(what);
                    stuck.insert(tp.clone());
                    continue;
                }
                OffsetReset::Earliest => {
                    planned.reset.push(what);
                    *position = low;
                }
            }
        }
    }
    let lag = |tp: &TopicPartition, position: i64| match marks.get(tp) {
        Some(&(_, high)) if !stuck.contains(tp) => (high - position).max(0) as u64,
        _ => 0,
    };
    let total_lag: u64 = positions.iter().map(|(tp, p)| lag(tp, *p)).sum();
    for (tp, position) in positions.iter_mut() {
        let behind = lag(tp, *position);
        let mut take = behind;
        if let Some(cap) = per_partition {
            take = take.min(cap);
        }
        if let Some(total) = total
            && total_lag > 0
        {
            let share = (total as u128 * behind as u128 / total_lag as u128) as u64;
            take = take.min(share);
        }
        if behind > 0 {
            take = take.max(1);
        }
        let from = *position;
        *position += take as i64;
        planned.ranges.push(OffsetRange {
            topic: tp.topic.clone(),
            partition: tp.partition,
            from_offset: from,
            until_offset: *position,
        });
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn range(p: i32, from: i64, until: i64) -> OffsetRange {
        OffsetRange {
            topic: "t".into(),
            partition: p,
            from_offset: from,
            until_offset: until,
        }
    }

    #[test]
    fn ranges_run_from_each_position_to_the_high_watermark_and_move_the_positions() {
        let mut positions = BTreeMap::from([(tp(1), 5), (tp(0), 0)]);
        let marks = BTreeMap::from([(tp(0), (0, 10)), (tp(1), (0, 5))]);
        let planned = plan(&mut positions, &marks, None, None, OffsetReset::Fail);
        assert_eq!(planned.ranges, vec![range(0, 0, 10), range(1, 5, 5)]);
        assert_eq!(positions, BTreeMap::from([(tp(0), 10), (tp(1), 5)]));
    }

    #[test]
    fn a_partition_without_watermarks_gets_an_empty_range() {
        let mut positions = BTreeMap::from([(tp(0), 3), (tp(1), 4)]);
        let marks = BTreeMap::from([(tp(0), (0, 10))]);
        let planned = plan(&mut positions, &marks, None, None, OffsetReset::Fail);
        assert_eq!(planned.ranges, vec![range(0, 3, 10), range(1, 4, 4)]);
    }

    #[test]
    fn the_per_partition_cap_and_the_backpressure_total_split_by_lag() {
        let mut positions = BTreeMap::from([(tp(0), 0), (tp(1), 0), (tp(2), 0)]);
        let marks = BTreeMap::from([(tp(0), (0, 300)), (tp(1), (0, 100)), (tp(2), (0, 1))]);
        let planned = plan(&mut positions, &marks, Some(50), None, OffsetReset::Fail);
        assert_eq!(planned.ranges, vec![range(0, 0, 50), range(1, 0, 50), range(2, 0, 1)]);
        // 401 behind in all, 40 allowed: 29, 9 and at least 1.
        let mut positions = BTreeMap::from([(tp(0), 0), (tp(1), 0), (tp(2), 0)]);
        let planned = plan(&mut positions, &marks, None, Some(40), OffsetReset::Fail);
        assert_eq!(planned.ranges, vec![range(0, 0, 29), range(1, 0, 9), range(2, 0, 1)]);
    }

    #[test]
    fn an_out_of_range_position_fails_or_resets_to_the_earliest_offset() {
        let marks = BTreeMap::from([(tp(0), (100, 150)), (tp(1), (0, 10))]);
        let mut positions = BTreeMap::from([(tp(0), 40), (tp(1), 0)]);
        let planned = plan(&mut positions, &marks, None, None, OffsetReset::Fail);
        assert_eq!(planned.ranges, vec![range(0, 40, 40), range(1, 0, 10)]);
        assert_eq!(
            planned.out_of_range,
            vec!["the next offset of topic t partition 0 is 40, but the partition holds offsets [100, 150)".to_owned()]
        );
        assert_eq!(positions[&tp(0)], 40, "a failed partition does not move");
        let planned = plan(&mut positions, &marks, None, None, OffsetReset::Earliest);
        assert_eq!(planned.ranges[0], range(0, 100, 150));
        assert_eq!(planned.reset.len(), 1);
        // Beyond the end (a recreated topic) is out of range too.
        let mut positions = BTreeMap::from([(tp(1), 20)]);
        let planned = plan(&mut positions, &marks, None, None, OffsetReset::Earliest);
        assert_eq!(planned.ranges, vec![range(1, 0, 10)]);
    }
}
