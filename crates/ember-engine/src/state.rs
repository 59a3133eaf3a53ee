//! Engine-owned operator state: stateful operators implement [`StatefulLogic`], and the engine
//! drives them ([`stateful`]), keeps them in a per-worker registry by operator id, writes their
//! state at checkpoint batches and restores it at start.
//!
//! State is held per key group (see [`crate::keys`]), so a snapshot written by some number of
//! workers restores on any other: each worker takes the groups its partitions now own.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub use crate::snapshot::{KeyedState, OperatorSnapshot, RestoreImage, RestoredState, SnapshotSink, StateRegistry};

use crate::msg::{Data, FailureCause, JobFailure, Msg, Part};
use crate::ops::{BatchInfo, PerBatch, catch_user};
use crate::runtime::{Compiler, EStream, Grid};

/// An operator that keeps state across batches, held per key group.
///
/// The engine calls [`StatefulLogic::on_batch`] once per batch time of the operator's grid, in
/// time order (empty batches too). Between two batches, the state is at a batch boundary:
/// [`StatefulLogic::snapshot`] then describes exactly the state after the last batch, and
/// [`StatefulLogic::restore`] (called before the first batch) puts it back.
pub trait StatefulLogic: 'static {
    /// Input elements.
    type Input: Data;
    /// Output elements.
    type Output: Data;

    /// Processes one batch: every partition this worker received for it, sorted by id.
    fn on_batch(&mut self, info: BatchInfo, parts: Vec<Part<Self::Input>>, out: &mut Vec<Msg<Self::Output>>);

    /// Whether this worker owns key group `group` (restores hand it only those).
    fn owns(&self, group: u32) -> bool;

    /// The state of every key group this worker holds, serialised; groups without state may be
    /// left out.
    fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String>;

    /// Adds a snapshot's state of key group `group` (one this worker owns).
    fn restore(&mut self, group: u32, bytes: &[u8]) -> Result<(), String>;

    /// See [`KeyedState::restored`].
    fn restored(&mut self) {}
}

impl<L: StatefulLogic> KeyedState for L {
    fn owns(&self, group: u32) -> bool {
        StatefulLogic::owns(self, group)
    }

    fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String> {
        StatefulLogic::snapshot(self)
    }

    fn restore(&mut self, group: u32, bytes: &[u8]) -> Result<(), String> {
        StatefulLogic::restore(self, group, bytes)
    }

    fn restored(&mut self) {
        StatefulLogic::restored(self);
    }
}

/// Registers `state` (of `kind`: the Rust type holding it), held by operator `id` (labelled
/// `name` in messages) on the worker being compiled, with the engine: it is restored from the
/// run's restore image now (the key groups this worker owns), and reachable by id in the
/// worker's [`StateRegistry`]. For state that is not driven batch by batch through
/// [`stateful`] (a source's position).
pub fn register_state(c: &Compiler<'_>, name: &str, id: &str, kind: &str, state: Rc<RefCell<dyn KeyedState>>) {
    let env = &c.env;
    if let Some(image) = env.shared.restore_image()
        && let Some(restored) = image.get(id)
    {
        if restored.kind != kind {
            env.shared.refuse_restore(format!(
                "the checkpoint's state of operator {id} ({name}) is a {}, but the plan's operator with that id holds a {kind}; \
                 a stateful operator cannot change across a restart (give it a `name` to keep its id when operators are added before it)",
                restored.kind
            ));
            return;
        }
        let mut held = state.borrow_mut();
        let owned: Vec<(&u32, &Vec<u8>)> = restored.groups.iter().filter(|(g, _)| held.owns(**g)).collect();
        for (group, bytes) in owned {
            if let Err(message) = held.restore(*group, bytes) {
                env.shared.report(JobFailure::new(
                    name,
                    env.zero_ms,
                    FailureCause::State {
                        group: Some(*group),
                        message: format!("cannot restore it: {message}"),
                    },
                ));
            }
        }
        held.restored();
    }
    if !env.states.borrow_mut().insert(id, kind, state) {
        tracing::error!(operator = id, "Two stateful operators share an id; this is a bug in ember.");
    }
}

/// Runs `logic` as operator `id` over `stream`, batch by batch on `grid` (the input's batch
/// times; a windowed operator emits on its own slide from there). The engine owns the logic: it is registered under `id` on this worker, restored
/// from the run's restore image before the first batch, and, when the run has a snapshot sink,
/// written at every checkpoint time ([`WorkerEnv::checkpoint_every`](crate::runtime::WorkerEnv::checkpoint_every),
/// a multiple of `checkpoint_every_ms`).
///
/// A panic in `on_batch` fails the batch, naming `name`.
pub fn stateful<'s, L>(
    c: &mut Compiler<'s>,
    stream: EStream<'s, L::Input>,
    grid: &Grid,
    name: &str,
    id: &str,
    checkpoint_every_ms: u64,
    logic: L,
) -> EStream<'s, L::Output>
where
    L: StatefulLogic,
{
    let env = Rc::clone(&c.env);
    let logic = Rc::new(RefCell::new(logic));
    let kind = std::any::type_name::<L>();
    register_state(c, name, id, kind, Rc::clone(&logic) as Rc<RefCell<dyn KeyedState>>);
    // Every stateful operator has a snapshot at each checkpoint time: a multiple of its own
    // checkpoint interval and on its input's grid.
    env.require_checkpoint_multiple(checkpoint_every_ms);
    env.require_checkpoint_multiple(grid.step_ms);
    env.snapshotting.borrow_mut().push(id.to_owned());
    let (operator, id, zero) = (name.to_owned(), id.to_owned(), env.zero_ms);
    stream.per_batch(
        grid,
        name,
        |acc: &mut Vec<Part<L::Input>>, p| acc.push(p),
        move |info, mut parts, out| {
            parts.sort_by(|a, b| a.id.cmp(&b.id));
            let time = info.time;
            logic.borrow_mut().on_batch(info, parts, out);
            let Some(sink) = env.shared.snapshot_sink() else { return };
            // At least 1: this operator made it a multiple of its interval.
            let every = env.checkpoint_every();
            if !(time - zero).is_multiple_of(every) {
                return;
            }
            match catch_user(&operator, time, || StatefulLogic::snapshot(&*logic.borrow())) {
                Ok(Ok(groups)) => sink.write(OperatorSnapshot {
                    operator: id.clone(),
                    kind: kind.to_owned(),
                    time,
                    worker: env.index,
                    groups,
                }),
                Ok(Err(message)) => out.push(Msg::Failed(JobFailure::new(
                    operator.clone(),
                    time,
                    FailureCause::State {
                        group: None,
                        message: format!("cannot write it: {message}"),
                    },
                ))),
                Err(failure) => out.push(Msg::Failed(failure)),
            }
        },
    )
}
