//! The source operator: cuts batches on the clock and asks a generator for each batch's data.

use std::rc::Rc;
use std::time::Duration;

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
/// its messages become the batch. When a stop is requested the workers agree on a final batch
/// time, generate up to it, and close the stream. The final batch is the last one already
/// generated, unless some worker's source still holds data (`drain_on_stop`, for receivers):
/// then one more batch is cut right away to carry it.
pub fn batch_source<'s, T, G>(compiler: &mut Compiler<'s>, name: &str, drain_on_stop: bool, mut generate: G) -> EStream<'s, T>
where
    T: Data,
    G: FnMut(SourceBatch) -> Vec<Msg<T>> + 'static,
{
    let env = Rc::clone(&compiler.env);
    let scope = compiler.scope;
    source(scope, name, move |cap, info| {
        let activator = scope.activator_for(Rc::clone(&info.address));
        env.add_source_activator(scope.activator_for(info.address));
        let mut cap = Some(cap);
        let mut next = env.first_batch();
        let interval = env.interval_ms;
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let mut emit = |time: u64, is_final: bool, held: &mut timely::dataflow::operators::Capability<u64>| {
                let at = held.delayed(&time);
                let mut msgs = generate(SourceBatch { time, is_final });
                if !msgs.is_empty() {
                    output.session(&at).give_container(&mut msgs);
                }
                held.downgrade(&(time + interval));
            };
            if env.shared.stop_requested() {
                let proposal = if drain_on_stop { next } else { next - interval };
                let last = env.shared.propose_final_time(proposal);
                while next <= last {
                    emit(next, next == last, held);
                    next += interval;
                }
                cap = None;
                return;
            }
            loop {
                let processed = env.scheduler.borrow().processed();
                let window_end = processed.saturating_add(env.max_batches_in_flight * interval);
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
