//! Per-partition operators: they transform each partition as it arrives and never wait for
//! the batch to complete.

use std::panic::{AssertUnwindSafe, catch_unwind};

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Concatenate;
use timely::dataflow::operators::Operator;

use crate::msg::{Data, FailureCause, JobFailure, Msg, Part, panic_message};
use crate::runtime::EStream;

/// Runs a user function, turning a panic into a [`JobFailure`] that names the operator and time.
#[inline]
pub fn catch_user<R>(operator: &str, time: u64, f: impl FnOnce() -> R) -> Result<R, JobFailure> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| JobFailure {
        operator: operator.to_owned(),
        time,
        cause: FailureCause::Panic(panic_message(payload.as_ref())),
    })
}

/// Per-partition building blocks.
pub trait PerPart<'s, T: Data> {
    /// Applies `logic` to every partition; markers pass through unchanged. A panic in `logic`
    /// fails the batch with an error naming `name` and the batch time.
    fn per_part<U: Data, F>(self, name: &str, logic: F) -> EStream<'s, U>
    where
        F: FnMut(Part<T>) -> Part<U> + 'static;

    /// Like [`PerPart::per_part`], where `logic` may also fail a partition: an `Err(message)`
    /// fails the batch with an error naming `name`, the batch time and the message.
    fn try_per_part<U: Data, F>(self, name: &str, logic: F) -> EStream<'s, U>
    where
        F: FnMut(Part<T>) -> Result<Part<U>, String> + 'static;

    /// Like [`PerPart::per_part`], where `logic` gets the batch time and reports its own
    /// failures, naming the operator it chooses (a fused chain names the operation that
    /// failed). A panic that escapes `logic` is reported under `name`.
    fn per_part_or_fail<U: Data, F>(self, name: &str, logic: F) -> EStream<'s, U>
    where
        F: FnMut(u64, Part<T>) -> Result<Part<U>, JobFailure> + 'static;

    /// Applies `logic` to every partition, which may produce any number of partitions;
    /// markers pass through unchanged. A panic fails the batch, as for [`PerPart::per_part`].
    fn per_parts<U: Data, F>(self, name: &str, logic: F) -> EStream<'s, U>
    where
        F: FnMut(Part<T>, &mut Vec<Part<U>>) + 'static;

    /// Moves every partition to worker `route(part) % peers`. A `NoRdd` marker reaches every
    /// worker (each needs to know the batch has no RDD); failures go to worker 0.
    fn exchange_parts<F>(self, route: F) -> EStream<'s, T>
    where
        F: Fn(&Part<T>) -> u64 + 'static;

    /// Nests every partition id under `prefix` (for unions). A `NoRdd` marker becomes a
    /// failure with `no_rdd_message`, as a combining operator cannot build its batch.
    fn tag_parts(self, name: &str, prefix: u32, no_rdd_message: &'static str) -> EStream<'s, T>;

    /// Merges several streams into one.
    fn concat_all(streams: Vec<EStream<'s, T>>) -> Option<EStream<'s, T>>;
}

impl<'s, T: Data> PerPart<'s, T> for EStream<'s, T> {
    fn per_part<U: Data, F>(self, name: &str, mut logic: F) -> EStream<'s, U>
    where
        F: FnMut(Part<T>) -> Part<U> + 'static,
    {
        self.try_per_part(name, move |part| Ok(logic(part)))
    }

    fn try_per_part<U: Data, F>(self, name: &str, mut logic: F) -> EStream<'s, U>
    where
        F: FnMut(Part<T>) -> Result<Part<U>, String> + 'static,
    {
        let operator = name.to_owned();
        self.per_part_or_fail(name, move |t, part| {
            logic(part).map_err(|message| JobFailure {
                operator: operator.clone(),
                time: t,
                cause: FailureCause::Error(message),
            })
        })
    }

    fn per_part_or_fail<U: Data, F>(self, name: &str, mut logic: F) -> EStream<'s, U>
    where
        F: FnMut(u64, Part<T>) -> Result<Part<U>, JobFailure> + 'static,
    {
        let operator = name.to_owned();
        self.unary(Pipeline, name, move |_cap, _info| {
            move |input, output| {
                input.for_each(|time, data| {
                    let t = crate::ops::stamp_time(&time);
                    let mut session = output.session(&time);
                    for msg in data.drain(..) {
                        let out = match msg {
                            Msg::Part(part) => match catch_user(&operator, t, || logic(t, part)) {
                                Ok(Ok(part)) => Msg::Part(part),
                                Ok(Err(failure)) | Err(failure) => Msg::Failed(failure),
                            },
                            Msg::NoRdd => Msg::NoRdd,
                            Msg::Failed(f) => Msg::Failed(f),
                        };
                        session.give(out);
                    }
                });
            }
        })
    }

    fn per_parts<U: Data, F>(self, name: &str, mut logic: F) -> EStream<'s, U>
    where
        F: FnMut(Part<T>, &mut Vec<Part<U>>) + 'static,
    {
        let operator = name.to_owned();
        self.unary(Pipeline, name, move |_cap, _info| {
            let mut produced = Vec::new();
            move |input, output| {
                input.for_each(|time, data| {
                    let t = crate::ops::stamp_time(&time);
                    let mut session = output.session(&time);
                    for msg in data.drain(..) {
                        match msg {
                            Msg::Part(part) => match catch_user(&operator, t, || logic(part, &mut produced)) {
                                Ok(()) => session.give_iterator(produced.drain(..).map(Msg::Part)),
                                Err(failure) => {
                                    produced.clear();
                                    session.give(Msg::Failed(failure));
                                }
                            },
                            Msg::NoRdd => session.give(Msg::NoRdd),
                            Msg::Failed(f) => session.give(Msg::Failed(f)),
                        }
                    }
                });
            }
        })
    }

    fn exchange_parts<F>(self, route: F) -> EStream<'s, T>
    where
        F: Fn(&Part<T>) -> u64 + 'static,
    {
        let peers = self.scope().peers();
        let stream = if peers > 1 {
            // One `NoRdd` copy per worker; the router below sends the copies round-robin.
            self.unary(Pipeline, "BroadcastNoRdd", move |_cap, _info| {
                move |input, output| {
                    input.for_each(|time, data| {
                        let copies = data.iter().filter(|m| matches!(m, Msg::NoRdd)).count() * (peers - 1);
                        data.extend(std::iter::repeat_with(|| Msg::NoRdd).take(copies));
                        output.session(&time).give_container(data);
                    });
                }
            })
        } else {
            self
        };
        let mut next_marker = 0u64;
        let pact = Exchange::new(move |msg: &Msg<T>| match msg {
            Msg::Part(part) => route(part),
            Msg::NoRdd => {
                next_marker = next_marker.wrapping_add(1);
                next_marker % peers as u64
            }
            Msg::Failed(_) => 0,
        });
        stream.unary(pact, "Exchange", |_cap, _info| {
            |input, output| {
                input.for_each(|time, data| {
                    output.session(&time).give_container(data);
                });
            }
        })
    }

    fn tag_parts(self, name: &str, prefix: u32, no_rdd_message: &'static str) -> EStream<'s, T> {
        let operator = name.to_owned();
        self.unary(Pipeline, name, move |_cap, _info| {
            move |input, output| {
                input.for_each(|time, data| {
                    let t = crate::ops::stamp_time(&time);
                    let mut session = output.session(&time);
                    for msg in data.drain(..) {
                        session.give(match msg {
                            Msg::Part(Part { id, data }) => Msg::Part(Part {
                                id: id.prefixed(prefix),
                                data,
                            }),
                            Msg::NoRdd => Msg::Failed(JobFailure {
                                operator: operator.clone(),
                                time: t,
                                cause: FailureCause::MissingInput(format!("{no_rdd_message} at time {t} ms")),
                            }),
                            failed @ Msg::Failed(_) => failed,
                        });
                    }
                });
            }
        })
    }

    fn concat_all(streams: Vec<EStream<'s, T>>) -> Option<EStream<'s, T>> {
        let first = streams.first()?;
        let scope = first.scope();
        if streams.len() == 1 {
            return streams.into_iter().next();
        }
        Some(scope.concatenate(streams))
    }
}
