//! The source operator: cuts batches on the clock and asks a generator for each batch's data;
//! and the pass-through that counts a source's records for listeners.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::operators::generic::operator::source;

use crate::clock::Clock;
use crate::msg::{Data, Msg};
use crate::runtime::{Compiler, EStream};

/// One batch a source is asked to produce.
#[derive(Clone, Copy, Debug)]
pub struct SourceBatch {
    /// Batch time (ms).
    pub time: u64,
    /// This is the last batch before the context stops: the source should hand over
    /// everything it has received.
    pub is_final: bool,
}

/// A source on every worker. At every batch time that is due (by the clock, and while fewer
/// than the allowed number of batches are in flight), `generate` is called on each worker and
/// its messages become the batch. When a stop is requested (here or on another process of the
/// cluster) every source stops cutting batches and proposes a final batch time; once every
/// source of every process has proposed, the largest proposal is the final batch, and each
/// source generates up to it and closes its stream. A source proposes the last batch it already
/// generated, unless it still holds data (`drain_on_stop`, for receivers): then one more batch,
/// cut right away, carries it.
pub fn batch_source<'s, T, G>(compiler: &mut Compiler<'s>, name: &str, drain_on_stop: bool, mut generate: G) -> EStream<'s, T>
where
    T: Data,
    G: FnMut(SourceBatch) -> Vec<Msg<T>> + 'static,
{
    let env = Rc::clone(&compiler.env);
    env.shared.register_source();
    let scope = compiler.scope;
    source(scope, name, move |cap, info| {
        let activator = scope.activator_for(Rc::clone(&info.address));
        env.add_source_activator(scope.worker().sync_activator_for(info.address.to_vec()));
        let mut cap = Some(cap);
        let mut proposed = false;
        let mut next = env.first_batch();
        let interval = env.interval_ms;
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let mut emit = |time: u64, is_final: bool, held: &mut timely::dataflow::operators::Capability<u64>| {
                let at = held.delayed(&time);
                env.shared.note_cut(time);
                let mut msgs = generate(SourceBatch { time, is_final });
                if !msgs.is_empty() {
                    output.session(&at).give_container(&mut msgs);
                }
                held.downgrade(&(time + interval));
            };
            if env.shared.stop_requested() {
                if !proposed {
                    proposed = true;
                    env.shared.propose_final_time(if drain_on_stop { next } else { next - interval });
                }
                let Some(last) = env.shared.final_time() else {
                    // The other sources have not all proposed yet.
                    activator.activate_after(Duration::from_millis(1));
                    return;
                };
                while next <= last {
                    emit(next, next == last, held);
                    next += interval;
                }
                cap = None;
                return;
            }
            loop {
                // At most `max_batches_in_flight` batches ahead of those handed to the outputs,
                // and twice that ahead of those the output threads finished: the dataflow does
                // not wait for each batch's outputs, and a slow output still holds it back.
                let (handed, processed) = {
                    let scheduler = env.scheduler.borrow();
                    (scheduler.handed_over(), scheduler.processed())
                };
                let ahead = env.max_batches_in_flight * interval;
                let window_end = handed.saturating_add(ahead).min(processed.saturating_add(2 * ahead));
                if next >= window_end {
                    // The output scheduler re-activates sources when outputs make progress.
                    break;
                }
                match env.clock.now_ms() {
                    Some(now) if now < next => {
                        let wait = match env.clock {
                            Clock::Manual(_) => Duration::from_millis(1),
                            _ => Duration::from_millis(next - now),
                        };
                        activator.activate_after(wait);
                        break;
                    }
                    _ => {
                        emit(next, false, held);
                        next += interval;
                    }
                }
            }
            // Re-check for a stop request regularly even when nothing is due.
            activator.activate_after(Duration::from_millis(5));
        }
    })
}

/// Passes `stream` through unchanged, reporting how many records each batch of input `source`
/// brought on this worker (no-op without an event sink).
pub fn count_input<'s, T: Data>(compiler: &mut Compiler<'s>, stream: EStream<'s, T>, source: &str) -> EStream<'s, T> {
    count_input_by(compiler, stream, source, <[T]>::len)
}

/// [`count_input`] for a stream whose elements hold several records each (a text receiver's
/// blocks of lines): `records` counts those of a partition.
pub fn count_input_by<'s, T: Data>(
    compiler: &mut Compiler<'s>,
    stream: EStream<'s, T>,
    source: &str,
    records: impl Fn(&[T]) -> usize + 'static,
) -> EStream<'s, T> {
    let Some(sink) = compiler.env.shared.events().cloned() else {
        return stream;
    };
    let source: Arc<str> = Arc::from(source);
    stream.unary(Pipeline, "CountInput", move |_cap, _info| {
        move |input, output| {
            input.for_each(|time, data| {
                let t = crate::ops::stamp_time(&time);
                let records: usize = data
                    .iter()
                    .map(|msg| match msg {
                        Msg::Part(part) => records(&part.data),
                        _ => 0,
                    })
                    .sum();
                if records > 0 {
                    (sink.0)(crate::events::EngineEvent::Input {
                        source: Arc::clone(&source),
                        time: t,
                        records: records as u64,
                    });
                }
                output.session(&time).give_container(data);
            });
        }
    })
}
