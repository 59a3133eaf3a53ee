//! How operator state is serialised in snapshots: bincode 1 with its default (little-endian,
//! fixed-width integer) encoding, one value per key group.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises one key group's state.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serialize(value).map_err(|e| format!("cannot serialise the state: {e}"))
}

/// Reads one key group's state back.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::deserialize(bytes).map_err(|e| format!("corrupt state ({} bytes): {e}", bytes.len()))
}
