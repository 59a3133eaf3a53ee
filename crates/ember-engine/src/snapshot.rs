//! Operator state as the engine keeps and moves it, whatever the operator: the registry of a
//! worker's stateful operators by id, the snapshots they write at checkpoint batches, and the
//! image restored at start. The operators' side is [`crate::state`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// Operator state the engine can snapshot and restore, per key group (every
/// [`StatefulLogic`](crate::state::StatefulLogic) is one; so is a source's position).
pub trait KeyedState {
    /// Whether this worker owns key group `group` (restores hand it only those).
    fn owns(&self, group: u32) -> bool;
    /// The state of every key group this worker holds, serialised; groups without state may
    /// be left out.
    fn snapshot(&self) -> Result<BTreeMap<u32, Vec<u8>>, String>;
    /// Adds a snapshot's state of key group `group` (one this worker owns).
    fn restore(&mut self, group: u32, bytes: &[u8]) -> Result<(), String>;

    /// Called once the restore image holds this operator, after every owned group was
    /// restored, even when none was (a snapshot leaves out groups without state): the
    /// operator is then a restored one, not a new one (for example, it must not take its
    /// initial state).
    fn restored(&mut self) {}
}

/// One operator's state on one worker after one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSnapshot {
    /// The operator's stable id.
    pub operator: String,
    /// What kind of state it is: the Rust type of the operator's logic, with its key, value
    /// and state types. A checkpoint only restores into an operator of the same kind.
    pub kind: String,
    /// The batch after which the state was taken (ms).
    pub time: u64,
    /// The worker that held it.
    pub worker: usize,
    /// The serialised state of each key group.
    pub groups: BTreeMap<u32, Vec<u8>>,
}

/// Receives the snapshots that stateful operators write at their checkpoint batches (the
/// fault-tolerance layer writes them to the checkpoint directory).
#[derive(Clone)]
pub struct SnapshotSink(pub Arc<dyn Fn(OperatorSnapshot) + Send + Sync>);

impl SnapshotSink {
    /// Hands over one snapshot.
    pub fn write(&self, snapshot: OperatorSnapshot) {
        (self.0)(snapshot)
    }
}

impl std::fmt::Debug for SnapshotSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotSink")
    }
}

/// One operator's state in a restore image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredState {
    /// What kind of state it is (see [`OperatorSnapshot::kind`]).
    pub kind: String,
    /// Key group → serialised state.
    pub groups: BTreeMap<u32, Vec<u8>>,
}

/// State to restore at start, by operator id.
pub type RestoreImage = Arc<BTreeMap<String, RestoredState>>;

/// Every stateful operator of one worker, by operator id, with the kind of its state.
#[derive(Default)]
pub struct StateRegistry {
    operators: BTreeMap<String, (String, Rc<RefCell<dyn KeyedState>>)>,
}

impl StateRegistry {
    /// Registers `state` (of `kind`) as operator `id`'s; `false` if another was registered
    /// under that id (it is replaced).
    pub fn insert(&mut self, id: &str, kind: &str, state: Rc<RefCell<dyn KeyedState>>) -> bool {
        self.operators.insert(id.to_owned(), (kind.to_owned(), state)).is_none()
    }

    /// The ids of the registered operators.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.operators.keys().map(String::as_str)
    }

    /// The kind of operator `id`'s state, if there is such an operator.
    pub fn kind(&self, id: &str) -> Option<&str> {
        self.operators.get(id).map(|(kind, _)| kind.as_str())
    }
}
