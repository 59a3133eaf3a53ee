//! Runs one vector: builds its sources and pipeline on a manual clock, runs `num_batches`
//! batches, and compares every emission of the final stream with `expected`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ember::prelude::*;
use serde_json::Value as Json;

use crate::value::V;
use crate::vocabulary::{bin_fn, elem_fn, flat_fn, multi_fn, mws_fn, part_fn, pred, rdd_fn, rdd2_fn, upd_fn};

/// How a vector ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Pass,
    /// A check failed; the text says which and shows the difference.
    Fail(String),
    /// The vector needs something this build does not implement yet.
    Skip(String),
}

/// Why building a pipeline stopped.
enum BuildError {
    Skip(String),
    Invalid(String),
    Construction(ember::Error),
}

type Built<T> = Result<T, BuildError>;

fn invalid<T>(msg: impl Into<String>) -> Built<T> {
    Err(BuildError::Invalid(msg.into()))
}

struct Builder<'a> {
    ssc: &'a StreamingContext,
    vector: &'a Json,
    sources: HashMap<String, DStream<V>>,
    /// The keyed stateful stream the last stage built, seen through `unpairs`: a `checkpoint`
    /// stage right after it sets the interval of the state, not of the `map` after it.
    state: Option<DStream<(V, V)>>,
}

fn field<'j>(j: &'j Json, name: &str) -> Built<&'j Json> {
    j.get(name).ok_or_else(|| BuildError::Invalid(format!("missing field `{name}`")))
}

fn func_name<'j>(stage: &'j Json, name: &str) -> Built<&'j str> {
    field(stage, name)?
        .as_str()
        .ok_or_else(|| BuildError::Invalid(format!("`{name}` must be a function name")))
}

fn pairs(s: &DStream<V>) -> DStream<(V, V)> {
    s.map(V::into_pair)
}

fn unpairs(s: &DStream<(V, V)>) -> DStream<V> {
    s.map(|(k, v)| V::pair(k, v))
}

impl Builder<'_> {
    fn source(&mut self, name: &str) -> Built<DStream<V>> {
        if let Some(s) = self.sources.get(name) {
            return Ok(s.clone());
        }
        let batches = field(self.vector, name)?
            .as_array()
            .ok_or_else(|| BuildError::Invalid(format!("`{name}` must be a list")))?;
        let partitions = self.vector.get("input_partitions").and_then(Json::as_u64).unwrap_or(1) as usize;
        let mut parsed: Vec<Option<Vec<V>>> = Vec::new();
        for b in batches {
            parsed.push(match b {
                Json::Null => None,
                Json::Array(items) => Some(
                    items
                        .iter()
                        .map(V::from_json)
                        .collect::<Result<_, _>>()
                        .map_err(BuildError::Invalid)?,
                ),
                _ => return invalid(format!("a batch of `{name}` must be a list or null")),
            });
        }
        let stream = if self.vector.get("input_kind").and_then(Json::as_str) == Some("queue") {
            let queue = BatchQueue::new();
            for b in parsed {
                let items = b.unwrap_or_default();
                let n = partitions.max(1);
                let len = items.len();
                let mut it = items.into_iter();
                queue.push_partitions(
                    (0..n)
                        .map(|i| it.by_ref().take((i + 1) * len / n - i * len / n).collect())
                        .collect(),
                );
            }
            self.ssc.queue_stream(&queue, true, None)
        } else {
            self.ssc.replay_stream(parsed, partitions)
        };
        self.sources.insert(name.to_owned(), stream.clone());
        Ok(stream)
    }

    fn expr(&mut self, e: &Json) -> Built<DStream<V>> {
        if let Json::Array(stages) = e {
            let input = self.source("input")?;
            return self.pipeline(input, stages);
        }
        let base = if let Some(name) = e.get("source").and_then(Json::as_str) {
            self.source(name)?
        } else if let Some(list) = e.get("ssc_union").and_then(Json::as_array) {
            let streams = list.iter().map(|x| self.expr(x)).collect::<Built<Vec<_>>>()?;
            self.ssc.union(&streams).map_err(BuildError::Construction)?
        } else if let Some(list) = e.get("ssc_transform").and_then(Json::as_array) {
            let streams = list.iter().map(|x| self.expr(x)).collect::<Built<Vec<_>>>()?;
            let name = func_name(e, "func")?;
            let f = multi_fn(name).ok_or_else(|| BuildError::Invalid(format!("unknown MultiFn {name}")))?;
            self.ssc.transform(&streams, f).map_err(BuildError::Construction)?
        } else {
            return invalid("a stream expression needs `source`, `ssc_union` or `ssc_transform`");
        };
        let stages = e.get("pipeline").and_then(Json::as_array).cloned().unwrap_or_default();
        self.pipeline(base, &stages)
    }

    fn pipeline(&mut self, mut s: DStream<V>, stages: &[Json]) -> Built<DStream<V>> {
        let mut rest = stages;
        while let Some((stage, tail)) = rest.split_first() {
            rest = tail;
            if func_name(stage, "op")? == "mapWithState" {
                s = self.map_with_state(&s, stage, &mut rest)?;
            } else {
                s = self.stage(s, stage)?;
            }
        }
        Ok(s)
    }

    /// `mapWithState`, with the `checkpoint` and `stateSnapshots` stages that follow it, which
    /// apply to its state rather than to its mapped stream.
    fn map_with_state(&mut self, s: &DStream<V>, stage: &Json, rest: &mut &[Json]) -> Built<DStream<V>> {
        let name = func_name(stage, "func")?;
        let f = mws_fn(name).ok_or_else(|| BuildError::Invalid(format!("unknown MwsFn `{name}`")))?;
        let mut spec = StateSpec::function_with_time(move |_: Time, k: &V, v: Option<V>, state: &mut State<V>| f(k, v, state));
        if let Some(initial) = stage.get("initial_state") {
            spec = spec.initial_state(pair_list(initial)?);
        }
        if let Some(ms) = stage.get("timeout_ms").and_then(Json::as_u64) {
            spec = spec.timeout(milliseconds(ms));
        }
        if let Some(n) = stage.get("num_partitions").and_then(Json::as_u64) {
            spec = spec.num_partitions(n as usize);
        }
        let mut mapped = pairs(s).map_with_state(spec);
        while let Some((next, tail)) = rest.split_first() {
            match func_name(next, "op")? {
                "checkpoint" => {
                    let ms = field(next, "interval_ms")?
                        .as_u64()
                        .ok_or_else(|| BuildError::Invalid("bad interval_ms".into()))?;
                    mapped = mapped.checkpoint(milliseconds(ms)).map_err(BuildError::Construction)?;
                }
                "stateSnapshots" => {
                    *rest = tail;
                    return Ok(unpairs(&mapped.state_snapshots()));
                }
                _ => break,
            }
            *rest = tail;
        }
        Ok(mapped.into_dstream())
    }

    fn stage(&mut self, s: DStream<V>, stage: &Json) -> Built<DStream<V>> {
        let op = func_name(stage, "op")?;
        let state = self.state.take();
        let unknown = |kind: &str, name: &str| BuildError::Invalid(format!("unknown {kind} `{name}`"));
        let partitions = stage.get("num_partitions").and_then(Json::as_u64).map(|n| n as usize);
        Ok(match op {
            "map" => {
                let f = elem_fn(func_name(stage, "func")?).ok_or_else(|| unknown("ElemFn", op))?;
                s.map(f)
            }
            "filter" => {
                let name = func_name(stage, "func")?;
                let f = pred(name).ok_or_else(|| unknown("Pred", name))?;
                s.filter(f)
            }
            "flatMap" => {
                let name = func_name(stage, "func")?;
                let f = flat_fn(name).ok_or_else(|| unknown("FlatFn", name))?;
                s.flat_map(f)
            }
            "mapPartitions" => {
                let name = func_name(stage, "func")?;
                let f = part_fn(name).ok_or_else(|| unknown("PartFn", name))?;
                s.map_partitions(move |it| f(it.collect()))
            }
            "glom" => s.glom().map(V::List),
            "repartition" => s.repartition(partitions.unwrap_or(1)).map_err(BuildError::Construction)?,
            "transform" => {
                let name = func_name(stage, "func")?;
                let f = rdd_fn(name).ok_or_else(|| unknown("RddFn", name))?;
                s.try_transform(f)
            }
            "transformWith" => {
                let name = func_name(stage, "func")?;
                let f = rdd2_fn(name).ok_or_else(|| unknown("Rdd2Fn", name))?;
                let other = self.expr(field(stage, "other")?)?;
                s.transform_with(&other, f)
            }
            "union" => {
                let other = self.expr(field(stage, "other")?)?;
                s.union(&other).map_err(BuildError::Construction)?
            }
            "count" => s.count().map(|n| V::Int(n as i64)),
            "reduce" => {
                let name = func_name(stage, "func")?;
                s.reduce(bin_fn(name).ok_or_else(|| unknown("BinFn", name))?)
            }
            "countByValue" => s.count_by_value().map(|(v, n)| V::pair(v, V::Int(n as i64))),
            "mapValues" => {
                let f = elem_fn(func_name(stage, "func")?).ok_or_else(|| unknown("ElemFn", op))?;
                unpairs(&pairs(&s).map_values(f))
            }
            "flatMapValues" => {
                let name = func_name(stage, "func")?;
                let f = flat_fn(name).ok_or_else(|| unknown("FlatFn", name))?;
                unpairs(&pairs(&s).flat_map_values(f))
            }
            "groupByKey" => {
                let p = pairs(&s);
                let grouped = match partitions {
                    Some(n) => p.group_by_key_with_partitions(n),
                    None => p.group_by_key(),
                };
                grouped.map(|(k, vs)| V::pair(k, V::List(vs)))
            }
            "reduceByKey" => {
                let name = func_name(stage, "func")?;
                let f = bin_fn(name).ok_or_else(|| unknown("BinFn", name))?;
                let p = pairs(&s);
                unpairs(&match partitions {
                    Some(n) => p.reduce_by_key_with_partitions(f, n),
                    None => p.reduce_by_key(f),
                })
            }
            "combineByKey" => {
                let create = elem_fn(func_name(stage, "create")?).ok_or_else(|| unknown("ElemFn", "create"))?;
                let mv = bin_fn(func_name(stage, "merge_value")?).ok_or_else(|| unknown("BinFn", "merge_value"))?;
                let mc = bin_fn(func_name(stage, "merge_combiners")?).ok_or_else(|| unknown("BinFn", "merge_combiners"))?;
                let p = pairs(&s);
                unpairs(&match partitions {
                    Some(n) => p.combine_by_key_with_partitions(create, mv, mc, n),
                    None => p.combine_by_key(create, mv, mc),
                })
            }
            "join" | "leftOuterJoin" | "rightOuterJoin" | "fullOuterJoin" | "cogroup" => {
                let other = pairs(&self.expr(field(stage, "other")?)?);
                let p = pairs(&s);
                let opt = |x: Option<V>| x.unwrap_or(V::Null);
                match op {
                    "join" => p.join(&other).map(|(k, (v, w))| V::pair(k, V::pair(v, w))),
                    "leftOuterJoin" => p.left_outer_join(&other).map(move |(k, (v, w))| V::pair(k, V::pair(v, opt(w)))),
                    "rightOuterJoin" => p.right_outer_join(&other).map(move |(k, (v, w))| V::pair(k, V::pair(opt(v), w))),
                    "fullOuterJoin" => p
                        .full_outer_join(&other)
                        .map(move |(k, (v, w))| V::pair(k, V::pair(opt(v), opt(w)))),
                    _ => p.cogroup(&other).map(|(k, (vs, ws))| V::pair(k, V::pair(V::List(vs), V::List(ws)))),
                }
            }
            "window" | "countByWindow" | "reduceByWindow" | "reduceByKeyAndWindow" | "countByValueAndWindow" | "groupByKeyAndWindow" => {
                self.windowed(&s, stage, op, partitions)?
            }
            "updateStateByKey" => {
                let name = func_name(stage, "func")?;
                let f = upd_fn(name).ok_or_else(|| unknown("UpdFn", name))?;
                let initial = stage.get("initial").map(pair_list).transpose()?;
                let updated = pairs(&s).update_state_by_key_with_time(
                    move |t: Time, _k: &V, values: Vec<V>, state: Option<V>| f(t.milliseconds(), values, state),
                    partitions,
                    initial,
                );
                self.state = Some(updated.clone());
                unpairs(&updated)
            }
            "checkpoint" => {
                let ms = field(stage, "interval_ms")?
                    .as_u64()
                    .ok_or_else(|| unknown("interval", "interval_ms"))?;
                match state {
                    Some(state) => {
                        state.checkpoint(milliseconds(ms)).map_err(BuildError::Construction)?;
                        s
                    }
                    None => s.checkpoint(milliseconds(ms)).map_err(BuildError::Construction)?,
                }
            }
            "stateSnapshots" => return invalid("`stateSnapshots` must follow `mapWithState`"),
            "persist" => s.persist(),
            other => return Err(BuildError::Skip(format!("stage `{other}` is not in this runner's vocabulary"))),
        })
    }
}

impl Builder<'_> {
    /// The windowed stages. A `null` function (construction-error vectors) is replaced by
    /// `add`, so that the durations are still checked.
    fn windowed(&mut self, s: &DStream<V>, stage: &Json, op: &str, partitions: Option<usize>) -> Built<DStream<V>> {
        let ms = |name: &str| stage.get(name).and_then(Json::as_u64).map(milliseconds);
        let window = ms("window_ms").ok_or_else(|| BuildError::Invalid("missing window_ms".into()))?;
        let slide = ms("slide_ms").unwrap_or_else(|| s.slide_duration());
        let bin = |name: &str| -> Built<Option<fn(V, V) -> V>> {
            match stage.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(f)) => bin_fn(f)
                    .map(Some)
                    .ok_or_else(|| BuildError::Invalid(format!("unknown BinFn `{f}`"))),
                Some(_) => invalid(format!("`{name}` must be a function name")),
            }
        };
        let func = bin("func")?.unwrap_or(|a, b| V::Int(a.int() + b.int()));
        let inv = bin("inv_func")?;
        let c = BuildError::Construction;
        Ok(match op {
            "window" => s.window(window, slide).map_err(c)?,
            "countByWindow" => s.count_by_window(window, slide).map_err(c)?.map(|n| V::Int(n as i64)),
            "reduceByWindow" => match inv {
                Some(inv) => s.reduce_by_window_inv(func, inv, window, slide).map_err(c)?,
                None => s.reduce_by_window(func, window, slide).map_err(c)?,
            },
            "reduceByKeyAndWindow" => {
                let p = pairs(s);
                let filter = match stage.get("filter").and_then(Json::as_str) {
                    Some(name) => Some(pred(name).ok_or_else(|| BuildError::Invalid(format!("unknown Pred `{name}`")))?),
                    None => None,
                };
                let windowed = match (inv, filter) {
                    (Some(inv), Some(keep)) => p
                        .reduce_by_key_and_window_inv_filtered(func, inv, window, slide, partitions, move |k: &V, v: &V| {
                            keep(&V::pair(k.clone(), v.clone()))
                        })
                        .map_err(c)?,
                    (Some(inv), None) if partitions.is_none() => p.reduce_by_key_and_window_inv(func, inv, window, slide).map_err(c)?,
                    (Some(inv), None) => p
                        .reduce_by_key_and_window_inv_filtered(func, inv, window, slide, partitions, |_: &V, _: &V| true)
                        .map_err(c)?,
                    (None, _) => match partitions {
                        Some(n) => p.reduce_by_key_and_window_with_partitions(func, window, slide, n).map_err(c)?,
                        None => p.reduce_by_key_and_window(func, window, slide).map_err(c)?,
                    },
                };
                self.state = Some(windowed.clone());
                unpairs(&windowed)
            }
            "countByValueAndWindow" => s
                .count_by_value_and_window(window, slide)
                .map_err(c)?
                .map(|(v, n)| V::pair(v, V::Int(n as i64))),
            _ => pairs(s)
                .group_by_key_and_window(window, slide)
                .map_err(c)?
                .map(|(k, vs)| V::pair(k, V::List(vs))),
        })
    }
}

/// A JSON list of `[key, value]` pairs.
fn pair_list(j: &Json) -> Built<Vec<(V, V)>> {
    let items = j.as_array().ok_or_else(|| BuildError::Invalid("expected a list of pairs".into()))?;
    items
        .iter()
        .map(|item| match V::from_json(item) {
            Ok(V::List(l)) if l.len() == 2 => Ok(V::List(l).into_pair()),
            Ok(other) => invalid(format!("expected a [key, state] pair, got {other}")),
            Err(e) => invalid(e),
        })
        .collect()
}

/// One emission of the final stream: its time and partitions.
type Emission = (u64, Vec<Vec<V>>);

/// Sorts grouped collections inside an item (for `nested_unordered`).
fn normalize_nested(item: &V) -> V {
    match item {
        V::List(l) if l.len() == 2 && matches!(l[1], V::List(_)) => {
            let V::List(inner) = &l[1] else { return item.clone() };
            let inner = if !inner.is_empty() && inner.iter().all(|x| matches!(x, V::List(_))) {
                inner.iter().map(sort_list).collect()
            } else {
                let mut v = inner.clone();
                v.sort();
                v
            };
            V::pair(l[0].clone(), V::List(inner))
        }
        V::List(_) => sort_list(item),
        other => other.clone(),
    }
}

fn sort_list(v: &V) -> V {
    match v {
        V::List(l) => {
            let mut l = l.clone();
            l.sort();
            V::List(l)
        }
        other => other.clone(),
    }
}

fn render(items: &[V]) -> String {
    V::List(items.to_vec()).to_string()
}

/// Runs one vector on `workers` worker threads.
pub fn run_vector(vector: &Json, workers: usize) -> Outcome {
    match run_inner(vector, workers) {
        Ok(outcome) => outcome,
        Err(message) => Outcome::Fail(message),
    }
}

fn run_inner(vector: &Json, workers: usize) -> Result<Outcome, String> {
    let batch_ms = vector.get("batch_ms").and_then(Json::as_u64).ok_or("missing batch_ms")?;
    let num_batches = vector.get("num_batches").and_then(Json::as_u64).ok_or("missing num_batches")?;
    if let Some(recovery) = vector.get("recovery") {
        return run_with_recovery(vector, workers, recovery, batch_ms, num_batches);
    }
    let clock = ManualClock::new();
    let emissions: Arc<Mutex<Vec<Emission>>> = Arc::new(Mutex::new(Vec::new()));
    let ssc = match make(vector, workers, &clock, Arc::clone(&emissions))? {
        Made::Context(ssc) => ssc,
        Made::Done(outcome) => return Ok(outcome),
    };
    let (done, failures) = run_to(&ssc, &clock, num_batches * batch_ms)?;
    if !done {
        return Ok(Outcome::Fail("the batches did not complete within 60 s".into()));
    }
    let emissions = std::mem::take(&mut *emissions.lock().unwrap_or_else(|e| e.into_inner()));
    compare(vector, batch_ms, emissions, &failures)
}

/// A vector's job, built; or the outcome, when building it decides the vector.
enum Made {
    Context(StreamingContext),
    Done(Outcome),
}

/// Builds the vector's job on a context with `clock`; its emissions go to `sink`.
fn make(vector: &Json, workers: usize, clock: &ManualClock, sink: Arc<Mutex<Vec<Emission>>>) -> Result<Made, String> {
    let batch_ms = vector.get("batch_ms").and_then(Json::as_u64).ok_or("missing batch_ms")?;
    let ssc = StreamingContext::builder(milliseconds(batch_ms))
        .workers(workers)
        .manual_clock(clock)
        .build()
        .map_err(|e| e.to_string())?;
    let mut builder = Builder {
        ssc: &ssc,
        vector,
        sources: HashMap::new(),
        state: None,
    };
    let expect_error = vector.get("expect_error");
    let phase = expect_error.and_then(|e| e.get("phase")).and_then(Json::as_str);
    let built = builder.expr(field(vector, "op").map_err(|_| "missing op")?);
    let stream = match built {
        Ok(s) => s,
        Err(BuildError::Skip(reason)) => return Ok(Made::Done(Outcome::Skip(reason))),
        Err(BuildError::Invalid(reason)) => return Err(format!("malformed vector: {reason}")),
        Err(BuildError::Construction(e)) => {
            return Ok(Made::Done(if phase == Some("construction") {
                check_message(expect_error, &e.to_string())
            } else {
                Outcome::Fail(format!("building the pipeline failed: {e}"))
            }));
        }
    };
    if phase == Some("construction") {
        return Ok(Made::Done(Outcome::Fail("building the pipeline should have failed".into())));
    }
    stream
        .foreach_rdd(move |b, t| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((t.milliseconds(), b.into_partitions()))
        })
        .map_err(|e| e.to_string())?;
    Ok(Made::Context(ssc))
}

/// Starts `ssc`, advances `clock` to `until_ms` and stops once that batch is done (or after
/// 60 s); whether it was done, and the failures.
fn run_to(ssc: &StreamingContext, clock: &ManualClock, until_ms: u64) -> Result<(bool, Vec<ember::Error>), String> {
    ssc.start().map_err(|e| e.to_string())?;
    clock.set_ms(until_ms);
    let done = ssc
        .await_batch(Time::from_millis(until_ms), seconds(60))
        .map_err(|e| e.to_string())?;
    ssc.stop(false).map_err(|e| e.to_string())?;
    Ok((done, ssc.failures()))
}

/// Spark's checkpoint-recovery harness: runs `restart_after_batches` batches with checkpoints
/// on, stops, builds the job again with `get_or_create` (which restores the state) and runs
/// it to the end. Batches after the restored checkpoint run again; each must equal its first
/// emission exactly, and the merged emissions are compared with `expected`.
fn run_with_recovery(vector: &Json, workers: usize, recovery: &Json, batch_ms: u64, num_batches: u64) -> Result<Outcome, String> {
    let restart_after = recovery
        .get("restart_after_batches")
        .and_then(Json::as_u64)
        .ok_or("recovery needs restart_after_batches")?;
    let dir = ember::testing::TempDir::new("conformance").map_err(|e| format!("cannot create a checkpoint directory: {e}"))?;
    let mut runs: Vec<Vec<Emission>> = Vec::new();
    let mut failures = Vec::new();
    let mut resumed_after = None;
    for until in [restart_after, num_batches] {
        let clock = ManualClock::new();
        let sink: Arc<Mutex<Vec<Emission>>> = Arc::new(Mutex::new(Vec::new()));
        let mut decided = None;
        let made = StreamingContext::get_or_create(dir.path(), || match make(vector, workers, &clock, Arc::clone(&sink)) {
            Ok(Made::Context(ssc)) => Ok(ssc),
            Ok(Made::Done(outcome)) => {
                decided = Some(outcome);
                Err(ember::Error::IllegalState("the vector was decided while building".into()))
            }
            Err(message) => {
                decided = Some(Outcome::Fail(message));
                Err(ember::Error::IllegalState("building failed".into()))
            }
        });
        let ssc = match (made, decided) {
            (_, Some(outcome)) => return Ok(outcome),
            (Ok(ssc), None) => ssc,
            (Err(e), None) => return Ok(Outcome::Fail(format!("get_or_create failed: {e}"))),
        };
        let (done, failed) = run_to(&ssc, &clock, until * batch_ms)?;
        if !done {
            return Ok(Outcome::Fail(format!("batch {} did not complete within 60 s", until * batch_ms)));
        }
        failures.extend(failed);
        let emissions = std::mem::take(&mut *sink.lock().unwrap_or_else(|e| e.into_inner()));
        // The inputs replay, so a fresh start would give the same output: the first run must
        // commit a checkpoint, and the second must resume after it.
        match resumed_after {
            None => match newest_checkpoint(dir.path()) {
                Some(checkpoint) => resumed_after = Some(checkpoint),
                None => {
                    return Ok(Outcome::Fail(
                        "the first run committed no checkpoint: recovery would restore nothing".into(),
                    ));
                }
            },
            Some(checkpoint) => {
                if let Some((time, _)) = emissions.first().filter(|(time, _)| *time <= checkpoint) {
                    return Ok(Outcome::Fail(format!(
                        "the recovered run emitted batch {time} ms, not after the checkpoint of {checkpoint} ms: it did not resume"
                    )));
                }
            }
        }
        runs.push(emissions);
    }
    let mut merged: std::collections::BTreeMap<u64, Emission> = std::collections::BTreeMap::new();
    for (run, emissions) in runs.into_iter().enumerate() {
        for emission in emissions {
            match merged.get(&emission.0) {
                None => {
                    merged.insert(emission.0, emission);
                }
                Some(first) => {
                    let flat = |e: &Emission| {
                        let mut items: Vec<V> = e.1.iter().flatten().cloned().collect();
                        items.sort();
                        items
                    };
                    if flat(first) != flat(&emission) {
                        return Ok(Outcome::Fail(format!(
                            "batch {} ms was emitted again after recovery (run {run}) with other data: {} before, {} after",
                            emission.0,
                            render(&flat(first)),
                            render(&flat(&emission))
                        )));
                    }
                }
            }
        }
    }
    compare(vector, batch_ms, merged.into_values().collect(), &failures)
}

/// The batch time of the newest committed checkpoint in `dir` (`checkpoint-<ms>.manifest`).
fn newest_checkpoint(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix("checkpoint-")?.strip_suffix(".manifest")?.parse().ok()
        })
        .max()
}

fn check_message(expect_error: Option<&Json>, message: &str) -> Outcome {
    let wanted = expect_error
        .and_then(|e| e.get("message_contains"))
        .and_then(Json::as_str)
        .unwrap_or("");
    if message.contains(wanted) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!("error `{message}` does not contain `{wanted}`"))
    }
}

fn compare(vector: &Json, batch_ms: u64, mut emissions: Vec<Emission>, failures: &[ember::Error]) -> Result<Outcome, String> {
    let expected: Vec<Vec<V>> = field(vector, "expected")
        .map_err(|_| "missing expected")?
        .as_array()
        .ok_or("expected must be a list")?
        .iter()
        .map(|b| {
            b.as_array()
                .ok_or("each expected batch must be a list".to_owned())
                .and_then(|items| items.iter().map(V::from_json).collect())
        })
        .collect::<Result<_, _>>()?;
    let ordered = vector.get("ordered").and_then(Json::as_bool).unwrap_or(true);
    let nested = vector.get("nested_unordered").and_then(Json::as_bool).unwrap_or(false);
    let nonempty = vector.get("output_mode").and_then(Json::as_str) == Some("nonempty");

    if let Some(err) = vector.get("expect_error") {
        let at = err.get("at_batch").and_then(Json::as_u64).unwrap_or(0) * batch_ms;
        let wanted = err.get("message_contains").and_then(Json::as_str).unwrap_or("");
        let found = failures
            .iter()
            .any(|f| matches!(f, ember::Error::JobFailed { time, message, .. } if time.milliseconds() == at && message.contains(wanted)));
        if !found {
            let seen: Vec<String> = failures.iter().map(ToString::to_string).collect();
            return Ok(Outcome::Fail(format!(
                "expected a failure at {at} ms containing `{wanted}`, got {seen:?}"
            )));
        }
        if !err.get("stream_continues").and_then(Json::as_bool).unwrap_or(false) {
            emissions.retain(|(t, _)| *t < at);
        }
    } else if let Some(f) = failures.first() {
        return Ok(Outcome::Fail(format!("unexpected failure: {f}")));
    }

    if let Some(parts) = vector.get("expected_partitions").and_then(Json::as_array) {
        for (i, want) in parts.iter().enumerate() {
            let got = emissions.get(i).map(|(_, p)| p.len() as u64);
            if got != want.as_u64() {
                return Ok(Outcome::Fail(format!("emission {i}: expected {want} partitions, got {got:?}")));
            }
        }
    }

    let mut actual: Vec<(u64, Vec<V>)> = emissions
        .into_iter()
        .map(|(t, parts)| (t, parts.into_iter().flatten().collect()))
        .collect();
    if nonempty {
        actual.retain(|(_, items)| !items.is_empty());
        actual.truncate(expected.len());
    }
    if actual.len() != expected.len() {
        let got: Vec<String> = actual.iter().map(|(t, items)| format!("{t}: {}", render(items))).collect();
        return Ok(Outcome::Fail(format!(
            "expected {} emissions, got {}: {got:?}",
            expected.len(),
            actual.len()
        )));
    }
    for (i, ((time, got), want)) in actual.into_iter().zip(expected).enumerate() {
        let prepare = |items: Vec<V>| -> Vec<V> {
            let mut items: Vec<V> = if nested {
                items.iter().map(normalize_nested).collect()
            } else {
                items
            };
            if !ordered {
                items.sort();
            }
            items
        };
        let (got_n, want_n) = (prepare(got.clone()), prepare(want.clone()));
        if got_n != want_n {
            return Ok(Outcome::Fail(format!(
                "emission {i} (time {time} ms): expected {}, got {}",
                render(&want),
                render(&got)
            )));
        }
    }
    Ok(Outcome::Pass)
}
