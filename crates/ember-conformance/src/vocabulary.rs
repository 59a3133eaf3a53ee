//! The function vocabulary of FORMAT.md §4, mapped to real closures over [`V`].

use ember::Batch;

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
