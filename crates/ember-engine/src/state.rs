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

    /// How many keys this worker's state holds, for metrics; `None` when it has no keys.
    fn keys(&self) -> Option<u64> {
        None
    }
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

/// State the engine keeps in checkpoints, registered by [`checkpointed_state`]: its owner calls
/// [`Checkpointed::after_batch`] after every batch it produced.
pub struct Checkpointed {
    env: Rc<crate::runtime::WorkerEnv>,
    name: String,
    id: String,
    kind: &'static str,
    state: Rc<RefCell<dyn KeyedState>>,
}

impl Checkpointed {
    /// Writes the state after batch `time` to the run's snapshot sink if `time` is a
    /// checkpoint time; the failure to report if it cannot be serialised.
    pub fn after_batch(&self, time: u64) -> Option<JobFailure> {
        let sink = self.env.shared.snapshot_sink()?;
        // At least 1: the owner made it a multiple of its interval.
        let every = self.env.checkpoint_every();
        if !(time - self.env.zero_ms).is_multiple_of(every) {
            return None;
        }
        match catch_user(&self.name, time, || self.state.borrow().snapshot()) {
            Ok(Ok(groups)) => {
                sink.write(OperatorSnapshot {
                    operator: self.id.clone(),
                    kind: self.kind.to_owned(),
                    time,
                    worker: self.env.index,
                    groups,
                });
                None
            }
            Ok(Err(message)) => Some(JobFailure::new(
                self.name.clone(),
                time,
                FailureCause::State {
                    group: None,
                    message: format!("cannot write it: {message}"),
                },
            )),
            Err(failure) => Some(failure),
        }
    }
}

/// Registers `state` (of type `S`), held by the operator being compiled (labelled `name` in
/// messages), with the engine: it is restored from the run's restore image now (the key groups
/// this worker owns; a kind that differs from the checkpoint's refuses the restore), kept in
/// the worker's [`StateRegistry`], and written at every checkpoint time, which becomes a
/// multiple of `every_ms` (the operator's checkpoint interval) and `step_ms` (the grid it runs
/// on). [`stateful`] does this for operators; a source calls it for its position.
pub fn checkpointed_state<S: KeyedState + 'static>(
    c: &Compiler<'_>,
    name: &str,
    state: Rc<RefCell<S>>,
    every_ms: u64,
    step_ms: u64,
) -> Checkpointed {
    let env = &c.env;
    let (id, kind) = (c.operator_id().to_owned(), std::any::type_name::<S>());
    if let Some(image) = env.shared.restore_image()
        && let Some(restored) = image.get(&id)
    {
        if restored.kind == kind {
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
        } else {
            env.shared.refuse_restore(format!(
                "the checkpoint's state of operator {id} ({name}) is a {}, but the plan's operator with that id holds a {kind}; \
                 a stateful operator cannot change across a restart (give it a `name` to keep its id when operators are added before it)",
                restored.kind
            ));
        }
    }
    let state = state as Rc<RefCell<dyn KeyedState>>;
    if !env.states.borrow_mut().insert(&id, kind, Rc::clone(&state)) {
        tracing::error!(operator = id, "Two stateful operators share an id; this is a bug in ember.");
    }
    // Every checkpointed state has a snapshot at each checkpoint time.
    env.require_checkpoint_multiple(every_ms);
    env.require_checkpoint_multiple(step_ms);
    env.snapshotting.borrow_mut().push(id.clone());
    Checkpointed {
        env: Rc::clone(env),
        name: name.to_owned(),
        id,
        kind,
        state,
    }
}

/// Runs `logic` over `stream` as the operator being compiled, batch by batch on `grid` (the
/// input's batch times; a windowed operator emits on its own slide from there). The engine owns
/// the logic (see [`checkpointed_state`]): restored before the first batch, and written at
/// every checkpoint time, a multiple of `checkpoint_every_ms`.
///
/// A panic in `on_batch` fails the batch, naming `name`.
pub fn stateful<'s, L>(
    c: &mut Compiler<'s>,
    stream: EStream<'s, L::Input>,
    grid: &Grid,
    name: &str,
    checkpoint_every_ms: u64,
    logic: L,
) -> EStream<'s, L::Output>
where
    L: StatefulLogic,
{
    let logic = Rc::new(RefCell::new(logic));
    let checkpointed = checkpointed_state(c, name, Rc::clone(&logic), checkpoint_every_ms, grid.step_ms);
    let shared = c.env.shared.clone();
    let operator: std::sync::Arc<str> = std::sync::Arc::from(name);
    stream.per_batch(
        grid,
        name,
        |acc: &mut Vec<Part<L::Input>>, p| acc.push(p),
        move |info, mut parts, out| {
            parts.sort_by(|a, b| a.id.cmp(&b.id));
            let time = info.time;
            logic.borrow_mut().on_batch(info, parts, out);
            if let Some(keys) = logic.borrow().keys() {
                shared.emit(|| crate::events::EngineEvent::StateKeys {
                    operator: std::sync::Arc::clone(&operator),
                    time,
                    keys,
                });
            }
            if let Some(failure) = checkpointed.after_batch(time) {
                out.push(Msg::Failed(failure));
            }
        },
    )
}
