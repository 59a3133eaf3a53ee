//! API rows of docs/spark-api.md that had no test of their own: the `*_with_partitions`
//! variants, `Batch`'s RDD actions, `State::exists`/`remove`, `queue_stream`'s default batch,
//! `print_n`, the line-decoding `socket_stream`, and the builder's settings, each checked
//! against Spark's documented answer.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use ember::prelude::*;
use ember::testing::run_batches;
use ember::{Data, StreamingContextBuilder};

/// Each output batch: its time in ms and its partitions.
type Seen<U> = Vec<(u64, Vec<Vec<U>>)>;

/// Runs `pipeline` over `batches` (one per 1 s, two partitions each) on `workers` workers with a
/// manual clock set through `.clock(Clock::Manual(..))`, after `configure` adjusted the builder.
fn run_with<T: Data, U: Data>(
    workers: usize,
    configure: impl FnOnce(StreamingContextBuilder) -> StreamingContextBuilder,
    batches: Vec<Vec<T>>,
    pipeline: impl FnOnce(&DStream<T>) -> DStream<U>,
) -> Seen<U> {
    let clock = ManualClock::new();
    let builder = StreamingContext::builder(seconds(1))
        .workers(workers)
        .clock(Clock::Manual(clock.clone()));
    let ssc = configure(builder).build().unwrap();
    let n = batches.len() as u64;
    let input = ssc.replay_stream(batches.into_iter().map(Some).collect(), 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    pipeline(&input)
        .foreach_rdd(move |b, t| sink.lock().unwrap().push((t.milliseconds(), b.partitions().to_vec())))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(n));
    assert!(ssc.await_batch(Time::from_millis(n * 1000), seconds(60)).unwrap());
    ssc.stop(false).unwrap();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    std::mem::take(&mut *seen.lock().unwrap())
}

fn run2<T: Data, U: Data>(batches: Vec<Vec<T>>, pipeline: impl FnOnce(&DStream<T>) -> DStream<U>) -> Seen<U> {
    run_with(2, |b| b, batches, pipeline)
}

/// Each batch's elements, sorted (debug text order, so that any `Debug` type sorts), by time.
fn flat<U: std::fmt::Debug>(seen: &Seen<U>) -> Vec<(u64, Vec<String>)> {
    seen.iter()
        .map(|(t, parts)| {
            let mut v: Vec<String> = parts.iter().flatten().map(|x| format!("{x:?}")).collect();
            v.sort();
            (*t, v)
        })
        .collect()
}

fn assert_partitions<U>(seen: &Seen<U>, n: usize) {
    assert!(!seen.is_empty());
    for (t, parts) in seen {
        assert_eq!(parts.len(), n, "batch {t} has {} partitions, not {n}", parts.len());
    }
}

fn words() -> Vec<Vec<(String, i64)>> {
    let b = |s: &str| {
        s.split_whitespace()
            .enumerate()
            .map(|(i, w)| (w.to_owned(), i as i64 + 1))
            .collect::<Vec<_>>()
    };
    vec![b("a b a c d e a b"), b("b b c"), vec![], b("e f g a a"), b("x y z a b c d e f g")]
}

fn sorted_groups(s: &DStream<(String, Vec<i64>)>) -> DStream<(String, Vec<i64>)> {
    s.map(|(k, mut vs)| {
        vs.sort();
        (k, vs)
    })
}

#[test]
fn group_by_key_with_partitions_matches_group_by_key_in_n_partitions() {
    let want = run2(words(), |s| sorted_groups(&s.group_by_key()));
    let got = run2(words(), |s| sorted_groups(&s.group_by_key_with_partitions(3)));
    assert_partitions(&got, 3);
    assert_eq!(flat(&got), flat(&want));
    // Spark's answer for the first batch: a -> [1, 3, 7], b -> [2, 8], ...
    assert_eq!(
        flat(&got)[0].1,
        [
            r#"("a", [1, 3, 7])"#,
            r#"("b", [2, 8])"#,
            r#"("c", [4])"#,
            r#"("d", [5])"#,
            r#"("e", [6])"#
        ]
    );
}

#[test]
fn reduce_by_key_with_partitions_matches_reduce_by_key_in_n_partitions() {
    let want = run2(words(), |s| s.reduce_by_key(|a, b| a + b));
    let got = run2(words(), |s| s.reduce_by_key_with_partitions(|a, b| a + b, 3));
    assert_partitions(&got, 3);
    assert_eq!(flat(&got), flat(&want));
    assert_eq!(flat(&got)[1].1, [r#"("b", 3)"#, r#"("c", 3)"#]);
}

#[test]
fn combine_by_key_with_partitions_matches_combine_by_key_in_n_partitions() {
    // (sum, count) per key, as in Spark's combineByKey average example.
    let want = run2(words(), |s| {
        s.combine_by_key(|v| (v, 1u32), |(s, c), v| (s + v, c + 1), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let got = run2(words(), |s| {
        s.combine_by_key_with_partitions(|v| (v, 1u32), |(s, c), v| (s + v, c + 1), |a, b| (a.0 + b.0, a.1 + b.1), 4)
    });
    assert_partitions(&got, 4);
    assert_eq!(flat(&got), flat(&want));
    assert!(flat(&got)[0].1.contains(&r#"("a", (11, 3))"#.to_owned()));
}

#[test]
fn group_by_key_and_window_with_partitions_matches_the_plain_variant_in_n_partitions() {
    let want = run2(words(), |s| {
        sorted_groups(&s.group_by_key_and_window(seconds(2), seconds(1)).unwrap())
    });
    let got = run2(words(), |s| {
        sorted_groups(&s.group_by_key_and_window_with_partitions(seconds(2), seconds(1), 3).unwrap())
    });
    assert_partitions(&got, 3);
    assert_eq!(flat(&got), flat(&want));
    // The window at 2000 ms holds batches 1 and 2: b -> [1, 2, 2, 8].
    assert!(flat(&got)[1].1.contains(&r#"("b", [1, 2, 2, 8])"#.to_owned()));
}

#[test]
fn reduce_by_key_and_window_with_partitions_matches_the_plain_variant_in_n_partitions() {
    let want = run2(words(), |s| {
        s.reduce_by_key_and_window(|a, b| a + b, seconds(2), seconds(2)).unwrap()
    });
    let got = run2(words(), |s| {
        s.reduce_by_key_and_window_with_partitions(|a, b| a + b, seconds(2), seconds(2), 3)
            .unwrap()
    });
    assert_partitions(&got, 3);
    assert_eq!(flat(&got), flat(&want));
    assert_eq!(got.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [2000, 4000]);
    // Window at 2000 ms: batches 1 and 2; c = 4 + 3.
    assert!(flat(&got)[0].1.contains(&r#"("c", 7)"#.to_owned()));
}

#[test]
fn update_state_by_key_with_partitions_matches_the_plain_variant_in_n_partitions() {
    let f = |vs: Vec<i64>, st: Option<i64>| Some(st.unwrap_or(0) + vs.iter().sum::<i64>());
    let want = run2(words(), move |s| s.update_state_by_key(f));
    let got = run2(words(), move |s| s.update_state_by_key_with_partitions(f, 3));
    assert_partitions(&got, 3);
    assert_eq!(flat(&got), flat(&want));
    // Running totals: a = 1 + 3 + 7 after batch 1, + 4 + 5 after batch 4, + 4 after batch 5.
    assert!(flat(&got)[0].1.contains(&r#"("a", 11)"#.to_owned()));
    assert!(flat(&got)[3].1.contains(&r#"("a", 20)"#.to_owned()));
    assert!(flat(&got)[4].1.contains(&r#"("a", 24)"#.to_owned()));
}

#[test]
fn cogroup_with_partitions_matches_cogroup_in_n_partitions() {
    let pipeline = |n: Option<usize>| {
        move |s: &DStream<(String, i64)>| {
            let other = s.filter(|(_, v)| *v % 2 == 0).map(|(k, v)| (k, format!("w{v}")));
            let c = match n {
                Some(n) => s.cogroup_with_partitions(&other, n),
                None => s.cogroup(&other),
            };
            c.map(|(k, (mut vs, mut ws))| {
                vs.sort();
                ws.sort();
                (k, (vs, ws))
            })
        }
    };
    let want = run2(words(), pipeline(None));
    let got = run2(words(), pipeline(Some(3)));
    assert_partitions(&got, 3);
    assert_eq!(flat(&got), flat(&want));
    assert!(flat(&got)[0].1.contains(&r#"("b", ([2, 8], ["w2", "w8"]))"#.to_owned()));
}

#[test]
fn count_by_value_and_window_with_partitions_matches_the_plain_variant_in_n_partitions() {
    let want = run2(words(), |s| {
        s.map(|(k, _)| k).count_by_value_and_window(seconds(2), seconds(1)).unwrap()
    });
    let got = run2(words(), |s| {
        s.map(|(k, _)| k)
            .count_by_value_and_window_with_partitions(seconds(2), seconds(1), 3)
            .unwrap()
    });
    assert_partitions(&got, 3);
    assert_eq!(flat(&got), flat(&want));
    // Window at 2000 ms: b appears 2 + 2 times.
    assert!(flat(&got)[1].1.contains(&r#"("b", 4)"#.to_owned()));
}

#[test]
fn cache_and_persist_return_the_same_stream() {
    let want = run2(words(), |s| s.reduce_by_key(|a, b| a + b));
    let cached = run2(words(), |s| s.cache().reduce_by_key(|a, b| a + b).cache());
    let persisted = run2(words(), |s| s.persist().reduce_by_key(|a, b| a + b).persist());
    assert_eq!(flat(&cached), flat(&want));
    assert_eq!(flat(&persisted), flat(&want));
}

#[test]
fn key_groups_do_not_change_the_answers() {
    let job = |s: &DStream<(String, i64)>| {
        s.reduce_by_key(|a, b| a + b)
            .update_state_by_key(|vs: Vec<i64>, st: Option<i64>| Some(st.unwrap_or(0) + vs.iter().sum::<i64>()))
    };
    let want = run_with(2, |b| b, words(), job);
    let got = run_with(2, |b| b.key_groups(4), words(), job);
    assert_eq!(flat(&got), flat(&want));
    assert!(flat(&got)[4].1.contains(&r#"("a", 24)"#.to_owned()));
}

#[test]
fn max_batches_in_flight_one_does_not_change_the_answers() {
    let job = |s: &DStream<(String, i64)>| s.reduce_by_key_and_window(|a, b| a + b, seconds(3), seconds(1)).unwrap();
    let want = run_with(2, |b| b, words(), job);
    let got = run_with(2, |b| b.max_batches_in_flight(1), words(), job);
    assert_eq!(flat(&got), flat(&want));
    assert_eq!(got.len(), 5);
}

#[test]
fn remember_is_accepted_before_start_and_refused_after() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    ssc.remember(minutes(1)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    ssc.replay_stream(vec![Some(vec![1, 2]), Some(vec![3])], 1)
        .map(|x: i32| x * 10)
        .foreach_rdd(move |b, _| sink.lock().unwrap().push(b.into_vec()))
        .unwrap();
    ssc.start().unwrap();
    let err = ssc.remember(seconds(5)).unwrap_err();
    assert!(matches!(err, ember::Error::IllegalState(_)), "{err}");
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![vec![10, 20], vec![30]]);
}

fn queue_batches(one_at_a_time: bool) -> Vec<Vec<i32>> {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .workers(2)
        .manual_clock(&clock)
        .build()
        .unwrap();
    let queue = BatchQueue::new();
    queue.push(vec![1, 2]);
    queue.push(vec![3]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    ssc.queue_stream(&queue, one_at_a_time, Some(vec![0]))
        .foreach_rdd(move |b, _| {
            let mut v = b.into_vec();
            v.sort();
            sink.lock().unwrap().push(v);
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(4));
    assert!(ssc.await_batch(Time::from_millis(4000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    seen.lock().unwrap().clone()
}

#[test]
fn queue_stream_gives_the_default_batch_when_the_queue_is_empty() {
    // Spark's queueStream(queue, oneAtATime = true, defaultRDD): one queued RDD per interval,
    // then defaultRDD once the queue is empty.
    assert_eq!(queue_batches(true), vec![vec![1, 2], vec![3], vec![0], vec![0]]);
    // oneAtATime = false: everything queued at once, then defaultRDD.
    assert_eq!(queue_batches(false), vec![vec![1, 2, 3], vec![0], vec![0], vec![0]]);
}

#[test]
fn state_exists_and_remove_inside_map_with_state() {
    // -1 removes the key's state; anything else adds to it. The mapped value tells whether the
    // state existed before and after the call, as Spark's State.exists does.
    let spec = StateSpec::function(|_k: &char, v: Option<i32>, st: &mut State<i32>| {
        let before = st.exists();
        match v {
            Some(-1) => st.remove(),
            Some(v) => {
                let total = st.get().copied().unwrap_or(0) + v;
                st.update(total);
            }
            None => {}
        }
        (before, st.exists(), st.get().copied())
    });
    let batches = vec![vec![('a', 1)], vec![('a', 2)], vec![('a', -1)], vec![('a', 5)], vec![('b', 1)]];
    let out = run_batches(batches.clone(), {
        let spec = spec.clone();
        move |s| s.map_with_state(spec).into_dstream()
    })
    .unwrap();
    assert_eq!(
        out,
        vec![
            vec![(false, true, Some(1))],
            vec![(true, true, Some(3))],
            vec![(true, false, None)],
            vec![(false, true, Some(5))],
            vec![(false, true, Some(1))],
        ]
    );
    // The removed state is gone from the snapshots until the key is updated again.
    let snapshots = run_batches(batches, move |s| s.map_with_state(spec).state_snapshots()).unwrap();
    let snapshots: Vec<Vec<(char, i32)>> = snapshots
        .into_iter()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    assert_eq!(
        snapshots,
        vec![vec![('a', 1)], vec![('a', 3)], vec![], vec![('a', 5)], vec![('a', 5), ('b', 1)]]
    );
}

fn batch<T>(partitions: Vec<Vec<T>>) -> Batch<T> {
    Batch::from_partitions(Time::from_millis(1000), partitions)
}

#[test]
fn batch_first_top_top_by_reduce_sum() {
    let b = batch(vec![vec![5, 1], vec![], vec![9, 3, 7]]);
    let empty = batch(Vec::<Vec<i32>>::new());
    // first: the first element of the first non-empty partition (Spark throws when empty).
    assert_eq!(b.first(), Some(5));
    assert_eq!(empty.first(), None);
    assert_eq!(batch(vec![vec![], vec![4]]).first(), Some(4));
    // top: the n largest, largest first; fewer when there are fewer.
    assert_eq!(b.top(3), vec![9, 7, 5]);
    assert_eq!(b.top(10), vec![9, 7, 5, 3, 1]);
    assert_eq!(b.top(0), Vec::<i32>::new());
    assert_eq!(empty.top(2), Vec::<i32>::new());
    // top(n)(ord): ordered by the key, largest first.
    let words = batch(vec![vec!["ccc", "a"], vec!["bb", "dddd"]]);
    assert_eq!(words.top_by(2, |w| w.len()), vec!["dddd", "ccc"]);
    assert_eq!(b.top_by(2, |x| std::cmp::Reverse(*x)), vec![1, 3]);
    // reduce: None on an empty batch (Spark throws), else the reduction.
    assert_eq!(b.clone().reduce(|x, y| x + y), Some(25));
    assert_eq!(b.clone().reduce(i32::max), Some(9));
    assert_eq!(empty.clone().reduce(|x, y| x + y), None);
    // sum: 0 for an empty batch, as Spark's sum.
    assert_eq!(b.sum(), 25);
    assert_eq!(empty.sum(), 0);
    assert_eq!(batch(vec![vec![0.5f64], vec![1.25]]).sum(), 1.75);
}

#[test]
fn batch_foreach_filter_cartesian_keys_values() {
    let b = batch(vec![vec![1, 2, 3], vec![4, 5]]);
    let mut visited = Vec::new();
    b.foreach(|x| visited.push(*x));
    assert_eq!(visited, vec![1, 2, 3, 4, 5]);
    // filter keeps the partitioning, as Spark's.
    let even = b.clone().filter(|x| x % 2 == 0);
    assert_eq!(even.num_partitions(), 2);
    assert_eq!(even.partitions(), &[vec![2], vec![4]]);
    assert_eq!(even.time(), Time::from_millis(1000));
    // cartesian: every pair, the left side outer; count is the product.
    let c = batch(vec![vec![1], vec![2]]).cartesian(&batch(vec![vec!['x', 'y']]));
    assert_eq!(c.collect(), vec![(1, 'x'), (1, 'y'), (2, 'x'), (2, 'y')]);
    assert_eq!(c.num_partitions(), 1);
    assert_eq!(b.cartesian(&batch(Vec::<Vec<u8>>::new())).count(), 0);
    let pairs = batch(vec![vec![("a", 1), ("b", 2)], vec![("a", 3)]]);
    let keys = pairs.clone().keys();
    assert_eq!(keys.partitions(), &[vec!["a", "b"], vec!["a"]]);
    let values = pairs.values();
    assert_eq!(values.partitions(), &[vec![1, 2], vec![3]]);
}

#[test]
fn batch_actions_inside_foreach_rdd() {
    // The same actions on real batches of a running job on 2 workers.
    let seen = run2(vec![vec![3i64, 1, 4, 1, 5], vec![], vec![9, 2, 6]], |s| {
        s.transform(|b| {
            let summary = vec![
                b.first().unwrap_or(-1),
                b.top(1).first().copied().unwrap_or(-1),
                b.clone().reduce(|x, y| x * y).unwrap_or(-1),
                b.sum(),
                b.clone().filter(|x| *x > 2).count() as i64,
            ];
            Batch::from_vec(b.time(), summary)
        })
    });
    let got: Vec<Vec<i64>> = seen.into_iter().map(|(_, p)| p.into_iter().flatten().collect()).collect();
    assert_eq!(got, vec![vec![3, 5, 60, 14, 3], vec![-1, -1, -1, 0, 0], vec![9, 9, 108, 17, 2]]);
}

#[test]
fn durations_in_minutes_and_milliseconds() {
    assert_eq!(minutes(2).as_millis(), 120_000);
    assert_eq!(minutes(1), seconds(60));
    assert_eq!(Duration::from_mins(3), minutes(3));
    assert_eq!(seconds(3).as_millis(), 3000);
    assert_eq!(milliseconds(250).as_millis(), 250);
    assert_eq!(Duration::from_secs(0).as_millis(), 0);
}

#[test]
fn a_manual_clock_given_to_clock_cuts_batches_only_when_advanced() {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1))
        .clock(Clock::Manual(clock.clone()))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    ssc.replay_stream(vec![Some(vec![1]), Some(vec![2]), Some(vec![3])], 1)
        .foreach_rdd(move |b: Batch<i32>, t| sink.lock().unwrap().push((t.milliseconds(), b.into_vec())))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(2));
    assert!(ssc.await_batch(Time::from_millis(2000), seconds(30)).unwrap());
    // Nothing is cut for 3000 ms while the clock stays at 2000 ms.
    assert!(!ssc.await_batch(Time::from_millis(3000), milliseconds(300)).unwrap());
    assert_eq!(*seen.lock().unwrap(), vec![(1000, vec![1]), (2000, vec![2])]);
    clock.advance(seconds(1));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(1000, vec![1]), (2000, vec![2]), (3000, vec![3])]);
}

#[test]
fn from_args_reads_timely_arguments() {
    // -w sets the workers: the job runs and gives the same answer on 2 workers.
    // -w sets the worker threads: after the shuffle, the keys are reduced on 2 threads.
    let threads = |args: &'static [&'static str]| {
        let ids = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let sink = Arc::clone(&ids);
        let seen = run_with(
            1,
            |b| b.from_args(args.iter().map(|a| (*a).to_owned())).unwrap(),
            words(),
            move |s| {
                s.reduce_by_key(|a, b| a + b).map(move |kv| {
                    sink.lock().unwrap().insert(std::thread::current().id());
                    kv
                })
            },
        );
        assert_eq!(flat(&seen), flat(&run2(words(), |s| s.reduce_by_key(|a, b| a + b))));
        ids.lock().unwrap().len()
    };
    assert_eq!(threads(&["-w", "2", "--unknown"]), 2);
    assert_eq!(threads(&[]), 1);
    let bad = |args: &[&str]| {
        StreamingContext::builder(seconds(1))
            .from_args(args.iter().map(|a| (*a).to_owned()))
            .unwrap_err()
            .to_string()
    };
    assert!(bad(&["-w", "two"]).contains("-w"), "{}", bad(&["-w", "two"]));
    assert!(bad(&["-w"]).contains("-w needs a value"), "{}", bad(&["-w"]));
    let m = bad(&["-n", "2", "-p", "5"]);
    assert!(m.contains("process 5 of 2"), "{m}");
}

/// Stores its own name once.
struct Namer;

impl Receiver<String> for Namer {
    fn on_start(&mut self, ctx: &ReceiverContext<String>) {
        ctx.store(ctx.name().to_owned());
    }
}

#[test]
fn receiver_context_names_the_receiver() {
    let ssc = StreamingContext::new(milliseconds(20)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    ssc.receiver_stream(Namer)
        .foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect()))
        .unwrap();
    ssc.start().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while seen.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(StdDuration::from_millis(10));
    }
    ssc.stop(true).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec!["receiver_stream(Namer)".to_owned()]);
}

/// Stores numbers as fast as `store` takes them; counts those stored in the first 500 ms.
struct Flood {
    early: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl Receiver<u64> for Flood {
    fn on_start(&mut self, ctx: &ReceiverContext<u64>) {
        let began = Instant::now();
        let mut i = 0;
        while !ctx.is_stopped() && i < 1_000_000 {
            ctx.store(i);
            i += 1;
            self.total.store(i, Ordering::SeqCst);
            if began.elapsed() < StdDuration::from_millis(500) {
                self.early.store(i, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn backpressure_initial_rate_limits_storing_before_the_first_estimate() {
    let (early, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // 2 s batches: no rate estimate can exist before the first batch completes.
    let ssc = StreamingContext::builder(seconds(2))
        .backpressure(true)
        .backpressure_initial_rate(100)
        .build()
        .unwrap();
    ssc.receiver_stream(Flood {
        early: Arc::clone(&early),
        total: Arc::clone(&total),
    })
    .foreach_rdd(|_, _| {})
    .unwrap();
    ssc.start().unwrap();
    std::thread::sleep(StdDuration::from_millis(700));
    ssc.stop(false).unwrap();
    let early = early.load(Ordering::SeqCst);
    // About 50 at 100 records/s; far from what an unlimited loop stores in 500 ms.
    assert!(early > 0, "nothing stored");
    assert!(
        early < 200,
        "{early} records stored in the first 500 ms at an initial rate of 100/s"
    );
}

fn serve_lines(text: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            conn.write_all(text.as_bytes()).unwrap();
            // Keep the connection open so the receiver does not reconnect and read it twice.
            std::thread::sleep(StdDuration::from_secs(10));
        }
    });
    port
}

#[test]
fn socket_stream_decodes_lines_and_counts_and_reports_a_bad_one() {
    let port = serve_lines("1\n2\nthree\n4\r\n5\n");
    let ssc = StreamingContext::builder(milliseconds(50)).workers(2).build().unwrap();
    let numbers = ssc.socket_stream("127.0.0.1", port, |line: &[u8]| {
        let text = std::str::from_utf8(line).map_err(|e| e.to_string())?;
        text.parse::<i64>().map_err(|e| format!("not an integer: {text:?}: {e}"))
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    numbers.foreach_rdd(move |b, _| sink.lock().unwrap().extend(b.collect())).unwrap();
    ssc.start().unwrap();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while seen.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(StdDuration::from_millis(10));
    }
    let err = ssc.await_termination_or_timeout(seconds(10)).unwrap_err().to_string();
    ssc.stop(true).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 4, 5]);
    // The error names the stream, the bad line's position and the decoder's message.
    assert!(err.contains(&format!("socket_stream(127.0.0.1:{port})")), "{err}");
    assert!(err.contains("line 3 (byte offset 4) of connection 1"), "{err}");
    assert!(err.contains("not an integer: \"three\""), "{err}");
    let bad = ssc.bad_records();
    let counts = bad
        .iter()
        .find(|c| c.source == format!("socket_stream(127.0.0.1:{port})"))
        .unwrap_or_else(|| panic!("{bad:?}"));
    assert_eq!((counts.rejected, counts.repaired, counts.too_long), (1, 0, 0));
}

const PRINT_CHILD: &str = "EMBER_API_COVERAGE_PRINT_CHILD";

/// Run by `print_n_prints_sparks_format` in a child process, whose standard output it reads.
#[test]
fn print_n_child() {
    if std::env::var_os(PRINT_CHILD).is_none() {
        return;
    }
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(seconds(1)).manual_clock(&clock).build().unwrap();
    let s = ssc.replay_stream(vec![Some(vec![1, 2, 3]), Some(vec![]), Some(vec![7, 8])], 1);
    s.map(|x: i32| (format!("k{x}"), x)).print_n(2).unwrap();
    ssc.start().unwrap();
    clock.advance(seconds(3));
    assert!(ssc.await_batch(Time::from_millis(3000), seconds(30)).unwrap());
    ssc.stop(false).unwrap();
}

#[test]
fn print_n_prints_sparks_format() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["print_n_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(PRINT_CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rule = "-------------------------------------------";
    let want = format!(
        "{rule}\nTime: 1000 ms\n{rule}\n(k1,1)\n(k2,2)\n...\n\n\
         {rule}\nTime: 2000 ms\n{rule}\n\n\
         {rule}\nTime: 3000 ms\n{rule}\n(k7,7)\n(k8,8)\n\n"
    );
    assert!(text.contains(&want), "{text}");
}
