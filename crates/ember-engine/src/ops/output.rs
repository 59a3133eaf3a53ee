//! Output operators: gather each batch to worker 0 and hand it to the output scheduler.

use std::cell::RefCell;
use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;

use super::batch::{Walker, absorb_msgs, frontier_min};
use crate::msg::{Data, JobFailure, Msg, Part};
use crate::ops::stateless::catch_user;
use crate::runtime::{Compiler, EStream};

/// Registers an output: every batch of `stream` (on the grid of the node being compiled) is gathered on worker 0 and, once all outputs
/// have completed the batch, `action(time, partitions)` runs there, partitions sorted by id.
///
/// Outputs run in batch order and, within a batch, in registration order. A batch that failed
/// upstream is not output; its failure is reported instead. A batch with no RDD is skipped (no
/// job, as in Spark). A panic or `Err` from `action` is reported as a failure of `name`.
pub fn output<'s, T, F>(compiler: &mut Compiler<'s>, stream: EStream<'s, T>, name: &str, action: F)
where
    T: Data,
    F: FnMut(u64, Vec<Part<T>>) -> Result<(), String> + 'static,
{
    let grid = compiler.grid();
    let env = Rc::clone(&compiler.env);
    let index = env.scheduler.borrow_mut().register(grid.first());
    let operator = name.to_owned();
    let action = Rc::new(RefCell::new(action));
    let gathered = if env.peers > 1 {
        stream.unary(Exchange::new(|_: &Msg<T>| 0u64), "Gather", |_cap, _info| {
            |input, output| input.for_each(|time, data| output.session(&time).give_container(data))
        })
    } else {
        stream
    };
    gathered.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, name, move |cap, _info| {
        let mut walker = Walker::<Vec<Part<T>>>::new(&grid, cap);
        let mut collect = |acc: &mut Vec<Part<T>>, part: Part<T>| acc.push(part);
        move |(input, frontier), _output| {
            input.for_each(|time, data| {
                let t = crate::ops::stamp_time(&time);
                absorb_msgs(walker.slot(t), 0, data, &mut collect, &operator, t);
            });
            let frontier = frontier_min(&[frontier]);
            walker.complete(frontier, |_cap, info, failed, mut parts| {
                // Batches are gathered on worker 0; the other workers only track progress.
                if env.index != 0 {
                    return;
                }
                if !failed.is_empty() {
                    // A failure seen on several workers arrives once per worker.
                    let mut failed = failed;
                    failed.sort_by(|a, b| (&a.operator, &a.message).cmp(&(&b.operator, &b.message)));
                    failed.dedup();
                    for failure in failed {
                        env.shared.report(failure);
                    }
                    return;
                }
                if info.no_rdd[0] && parts.iter().all(|p| p.data.is_empty()) {
                    return;
                }
                parts.sort_by(|a, b| a.id.cmp(&b.id));
                let (action, shared, operator, time) = (Rc::clone(&action), env.shared.clone(), operator.clone(), info.time);
                let run = move || {
                    let result = catch_user(&operator, time, || (action.borrow_mut())(time, parts));
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(message)) => shared.report(JobFailure { operator, time, message }),
                        Err(failure) => shared.report(failure),
                    }
                };
                env.scheduler.borrow_mut().submit(index, time, Box::new(run));
            });
            let mut scheduler = env.scheduler.borrow_mut();
            scheduler.advance(index, frontier.unwrap_or(u64::MAX));
            scheduler.run_ready();
        }
    });
}
