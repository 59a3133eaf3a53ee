//! The function vocabulary of FORMAT.md §4, mapped to real closures over [`V`].

use ember::{Batch, State};

use crate::value::V;

/// An element function.
pub type ElemFn = fn(V) -> V;

fn plus(x: V, n: i64) -> V {
    V::Int(x.int() + n)
}

/// `x -> y` functions. `plus_N` is parsed by [`elem_fn`].
pub fn elem_fn(name: &str) -> Option<Box<dyn Fn(V) -> V + Send + Sync>> {
    if let Some(n) = name.strip_prefix("plus_") {
        let n: i64 = n.parse().ok()?;
        return Some(Box::new(move |x| plus(x, n)));
    }
    let f: ElemFn = match name {
        "identity" | "to_list" => |x| x,
        "to_string" => |x| V::Str(x.int().to_string()),
        "len" => |x| V::Int(x.str().chars().count() as i64),
        "upper" => |x| V::Str(x.str().to_ascii_uppercase()),
        "swap" => |x| {
            let (a, b) = x.into_pair();
            V::pair(b, a)
        },
        "key" => |x| x.into_pair().0,
        "value" => |x| x.into_pair().1,
        "to_pair_with_1" => |x| V::pair(x, V::Int(1)),
        "to_pair_with_x" => |x| V::pair(x, V::Str("x".into())),
        "to_pair_with_len" => |x| {
            let n = x.str().chars().count() as i64;
            V::pair(x, V::Int(n))
        },
        "mod_10_pair_with_1" => |x| V::pair(V::Int(x.int().rem_euclid(10)), V::Int(1)),
        "get_counter" => |x| match x {
            V::List(mut l) if l.len() == 2 => l.swap_remove(0),
            other => panic!("get_counter: expected a {{counter, idle}} state, got {other}"),
        },
        "fail_on_1" => |x| {
            if x == V::Int(1) {
                panic!("fail_on_1: the element is 1");
            }
            x
        },
        _ => return None,
    };
    Some(Box::new(f))
}

/// Predicates.
pub fn pred(name: &str) -> Option<fn(&V) -> bool> {
    Some(match name {
        "is_even" => |x| x.int() % 2 == 0,
        "contains_a" => |x| x.str().contains('a'),
        "key_contains_a" => |x| x.clone().into_pair().0.str().contains('a'),
        "value_nonzero" => |x| x.clone().into_pair().1.int() != 0,
        "value_positive" => |x| x.clone().into_pair().1.int() > 0,
        _ => return None,
    })
}

/// `x -> list` functions.
pub fn flat_fn(name: &str) -> Option<fn(V) -> Vec<V>> {
    Some(match name {
        "self_and_double" => |x| {
            let n = x.int();
            vec![V::Int(n), V::Int(2 * n)]
        },
        "chars" => |x| x.str().chars().map(|c| V::Str(c.to_string())).collect(),
        "chars_keyed_by_len" => |x| {
            let n = x.str().chars().count() as i64;
            x.str().chars().map(|c| V::pair(V::Int(n), V::Str(c.to_string()))).collect()
        },
        "value_with_key_chars" => |x| {
            let (k, v) = x.into_pair();
            k.str().chars().map(|c| V::pair(v.clone(), V::Str(c.to_string()))).collect()
        },
        "v_and_v_plus_10" => |x| {
            let n = x.int();
            vec![V::Int(n), V::Int(n + 10)]
        },
        "suffix_1_and_2" => |x| vec![V::Str(format!("{}1", x.str())), V::Str(format!("{}2", x.str()))],
        _ => return None,
    })
}

/// Partition functions.
pub fn part_fn(name: &str) -> Option<fn(Vec<V>) -> Vec<V>> {
    Some(match name {
        "sum_partition" => |p| vec![V::Int(p.iter().map(V::int).sum())],
        "concat_upper_partition" => |p| vec![V::Str(p.iter().map(|x| x.str().to_ascii_uppercase()).collect())],
        "swap_each" => |p| {
            p.into_iter()
                .map(|x| {
                    let (a, b) = x.into_pair();
                    V::pair(b, a)
                })
                .collect()
        },
        _ => return None,
    })
}

/// Binary functions.
pub fn bin_fn(name: &str) -> Option<fn(V, V) -> V> {
    Some(match name {
        "add" => |a, b| V::Int(a.int() + b.int()),
        "subtract" => |a, b| V::Int(a.int() - b.int()),
        "concat_str" => |a, b| {
            let b = match b {
                V::Str(s) => s,
                other => other.to_string(),
            };
            V::Str(format!("{}{}", a.str(), b))
        },
        _ => return None,
    })
}

/// What a transform function returns: a batch, or Spark's null.
pub type RddResult = Result<Batch<V>, String>;

/// Batch functions for `transform`.
pub fn rdd_fn(name: &str) -> Option<fn(Batch<V>) -> RddResult> {
    Some(match name {
        "rdd_map_to_string" => |b| Ok(b.map(|x| V::Str(x.int().to_string()))),
        "rdd_map_plus_2" => |b| Ok(b.map(|x| plus(x, 2))),
        "rdd_sort_by_key" => |b| Ok(b.map(V::into_pair).sort_by_key().map(|(k, v)| V::pair(k, v))),
        "rdd_keys" => |b| Ok(b.map(|x| x.into_pair().0)),
        "rdd_cartesian_self" => |b| Ok(b.cartesian(&b).map(|(x, y)| V::pair(x, y))),
        "rdd_return_null" => |_| Err("Transform function must not return null".into()),
        _ => return None,
    })
}

/// Batch functions for `transformWith`.
pub fn rdd2_fn(name: &str) -> Option<fn(Batch<V>, Batch<V>) -> Batch<V>> {
    Some(match name {
        "rdd_join" => |a, b| {
            a.map(V::into_pair)
                .join(b.map(V::into_pair))
                .map(|(k, (v, w))| V::pair(k, V::pair(v, w)))
        },
        "rdd_union" => |a, b| a.union(b),
        _ => return None,
    })
}

/// Batch functions for `StreamingContext.transform`.
pub fn multi_fn(name: &str) -> Option<fn(Vec<Batch<V>>) -> Batch<V>> {
    Some(match name {
        "union_all" => |bs| {
            let mut it = bs.into_iter();
            let first = it.next().unwrap_or_else(|| Batch::empty(ember::Time::from_millis(0)));
            it.fold(first, Batch::union)
        },
        "union_2_3_1" => |bs| {
            let mut it = bs.into_iter();
            let (b1, b2, b3) = (it.next(), it.next(), it.next());
            match (b1, b2, b3) {
                (Some(b1), Some(b2), Some(b3)) => b2.union(b3).union(b1),
                _ => panic!("union_2_3_1 needs three streams"),
            }
        },
        "union_first_two_pair_self_join_third" => |bs| {
            let mut it = bs.into_iter();
            match (it.next(), it.next(), it.next()) {
                (Some(b1), Some(b2), Some(b3)) => b1
                    .union(b2)
                    .map(|i| (i.clone(), i))
                    .join(b3.map(V::into_pair))
                    .map(|(k, (v, w))| V::pair(k, V::pair(v, w))),
                _ => panic!("union_first_two_pair_self_join_third needs three streams"),
            }
        },
        _ => return None,
    })
}

/// An `updateStateByKey` function: batch time (ms), the key's new values, its previous state.
pub type UpdFn = fn(u64, Vec<V>, Option<V>) -> Option<V>;

fn sum(values: &[V]) -> i64 {
    values.iter().map(V::int).sum()
}

/// `updateStateByKey` functions.
pub fn upd_fn(name: &str) -> Option<UpdFn> {
    Some(match name {
        "sum_state" => |_, values, state| Some(V::Int(sum(&values) + state.map_or(0, |s| s.int()))),
        "time_sum_state" => |time, values, state| {
            let prev = state.map_or(0, |s| s.int());
            Some(V::Int(if values.is_empty() { prev } else { time as i64 + prev }))
        },
        "append_values" => |_, values, state| {
            let mut list = match state {
                Some(V::List(l)) => l,
                Some(other) => panic!("append_values: expected a list state, got {other}"),
                None => Vec::new(),
            };
            list.extend(values);
            Some(V::List(list))
        },
        "counter_expire_after_2_idle" => |_, values, state| {
            let (mut counter, mut idle) = match state {
                Some(V::List(l)) if l.len() == 2 => (l[0].int(), l[1].int()),
                Some(other) => panic!("counter_expire_after_2_idle: bad state {other}"),
                None => (0, 0),
            };
            let n = sum(&values);
            if n == 0 {
                idle += 1;
            } else {
                counter += n;
                idle = 0;
            }
            (idle != 2).then(|| V::pair(V::Int(counter), V::Int(idle)))
        },
        _ => return None,
    })
}

/// A `mapWithState` function: key, value (`None` when timing out), the key's state.
pub type MwsFn = fn(&V, Option<V>, &mut State<V>) -> Option<V>;

/// The running sum of the `ms_running_sum_*` family: updates the state and returns it.
fn running_sum(value: Option<V>, state: &mut State<V>) -> V {
    let s = V::Int(value.map_or(0, |v| v.int()) + state.get().map_or(0, V::int));
    state.update(s.clone());
    s
}

/// `mapWithState` functions.
pub fn mws_fn(name: &str) -> Option<MwsFn> {
    Some(match name {
        "ms_running_sum_return_sum" | "ms_running_sum_return_state" => |_, v, state| Some(running_sum(v, state)),
        "ms_running_sum_return_key_twice" => |k, v, state| {
            running_sum(v, state);
            Some(V::Str(k.str().repeat(2)))
        },
        "ms_running_sum_return_pair" => |k, v, state| Some(V::pair(k.clone(), running_sum(v, state))),
        "ms_running_sum_return_none" => |_, v, state| {
            running_sum(v, state);
            None
        },
        "ms_toggle_remove_return_key" => |k, v, state| {
            if state.exists() {
                state.remove();
                Some(k.clone())
            } else {
                state.update(v.unwrap_or(V::Null));
                None
            }
        },
        "ms_touch_emit_key_on_timeout" => |k, v, state| {
            if v.is_some() {
                state.update(V::Int(1));
            }
            state.is_timing_out().then(|| k.clone())
        },
        _ => return None,
    })
}
