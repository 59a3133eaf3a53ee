//! Output operators: hand each batch (gathered to worker 0, or each worker's own partitions)
//! to the worker's output scheduler, which runs it off the dataflow thread.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;

use super::batch::{Walker, absorb_msgs, frontier_min};
use crate::events::EngineEvent;
use crate::msg::{Data, FailureCause, JobFailure, Msg, Part};
use crate::ops::stateless::catch_user;
use crate::runtime::{Compiler, EStream};

/// Where an output runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputPlacement {
    /// The whole batch, gathered on worker 0 (`print`, `foreach_rdd`).
    Gathered,
    /// Every worker, with the partitions it holds (`foreach_partition`, sinks).
    PerWorker,
}

/// Registers an output: once every output of the worker has completed batch `time` (on the
/// grid of the node being compiled), `action(time, partitions)` runs on the worker's output
/// thread, partitions sorted by id. `placement` says whether worker 0 gets the whole batch or
/// every worker its own partitions.
///
/// Outputs run in batch order and, within a batch, in registration order. A batch that failed
/// upstream is not output; its failure is reported instead (once, by worker 0). A batch with
/// no RDD is skipped (no job, as in Spark). A panic or `Err` from `action` is reported as a
/// failure of `name`.
pub fn output<'s, T, F>(compiler: &mut Compiler<'s>, stream: EStream<'s, T>, name: &str, placement: OutputPlacement, action: F)
where
    T: Data,
    F: FnMut(u64, Vec<Part<T>>) -> Result<(), String> + Send + 'static,
{
    let grid = compiler.grid();
    let env = Rc::clone(&compiler.env);
    let index = env.scheduler.borrow_mut().register(grid.first());
    let operator = name.to_owned();
    let event_name: Arc<str> = Arc::from(name);
    let per_worker = placement == OutputPlacement::PerWorker;
    let action = Arc::new(Mutex::new(action));
    let gathered = if env.peers > 1 && placement == OutputPlacement::Gathered {
        stream.unary(Exchange::new(|_: &Msg<T>| 0u64), "Gather", |_cap, _info| {
            |input, output| input.for_each(|time, data| output.session(&time).give_container(data))
        })
    } else {
        stream
    };
    let runs_here = placement == OutputPlacement::PerWorker || env.index == 0;
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
                if !failed.is_empty() {
                    // Failures reach the worker that runs the output: worker 0 for a gathered
                    // batch (a failure seen on several workers arrives once per worker), every
                    // worker for its own partitions.
                    if runs_here {
                        let mut failed = failed;
                        failed.sort_by(|a, b| (&a.operator, &a.cause).cmp(&(&b.operator, &b.cause)));
                        failed.dedup();
                        let at = Instant::now();
                        let reason = failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                        for failure in failed {
                            env.shared.report(failure);
                        }
                        let name = Arc::clone(&event_name);
                        env.shared.emit(|| EngineEvent::OutputCompleted {
                            output: index,
                            name,
                            per_worker,
                            time: info.time,
                            started: at,
                            ended: at,
                            failure: Some(reason),
                        });
                    }
                    return;
                }
                if !runs_here || (info.no_rdd[0] && parts.iter().all(|p| p.data.is_empty())) {
                    return;
                }
                parts.sort_by(|a, b| a.id.cmp(&b.id));
                let (action, shared, operator, time) = (Arc::clone(&action), env.shared.clone(), operator.clone(), info.time);
                let name = Arc::clone(&event_name);
                let run = move || {
                    let started = Instant::now();
                    shared.emit(|| EngineEvent::OutputStarted {
                        output: index,
                        name: Arc::clone(&name),
                        per_worker,
                        time,
                        at: started,
                    });
                    let result = catch_user(&operator, time, || {
                        let mut action = crate::msg::lock(&action);
                        (*action)(time, parts)
                    });
                    let failure = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(message)) => Some(JobFailure::new(operator, time, FailureCause::Error(message))),
                        Err(failure) => Some(failure),
                    };
                    let reason = failure.as_ref().map(ToString::to_string);
                    if let Some(failure) = failure {
                        shared.report(failure);
                    }
                    shared.emit(|| EngineEvent::OutputCompleted {
                        output: index,
                        name,
                        per_worker,
                        time,
                        started,
                        ended: Instant::now(),
                        failure: reason,
                    });
                };
                env.scheduler.borrow_mut().submit(index, time, Box::new(run));
            });
            let mut scheduler = env.scheduler.borrow_mut();
            scheduler.advance(index, frontier.unwrap_or(u64::MAX));
            scheduler.run_ready();
        }
    });
}
