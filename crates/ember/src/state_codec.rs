//! How operator state is serialised in snapshots: postcard (compact, varint integers, a
//! maintained format with a stable wire specification), one value per key group.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises one key group's state.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| format!("cannot serialise the state: {e}"))
}

/// Reads one key group's state back.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("corrupt state ({} bytes): {e}", bytes.len()))
}
