//! Turning a record's key and value bytes into values (Kafka's deserializers).

use std::marker::PhantomData;

use ember::Data;
use serde::de::DeserializeOwned;

/// Decodes the bytes of a record's key or value (Kafka's `Deserializer`). A key that is absent
/// is `None` in the record without calling the deserializer; a value that is absent (null, a
/// tombstone) is a bad record, as is anything `deserialize` refuses; see [`OnBadRecord`].
pub trait Deserializer: Send + Sync + 'static {
    /// What the bytes become.
    type Output: Data;

    /// Decodes `bytes`.
    ///
    /// # Errors
    ///
    /// A message saying why the bytes are not an `Output`; the stream names the record.
    fn deserialize(&self, bytes: &[u8]) -> Result<Self::Output, String>;
}

/// UTF-8 text (Kafka's `StringDeserializer`); invalid UTF-8 is a bad record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8;

impl Deserializer for Utf8 {
    type Output = String;

    fn deserialize(&self, bytes: &[u8]) -> Result<String, String> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("not valid UTF-8: {e}"))
    }
}

/// The bytes as they are (Kafka's `ByteArrayDeserializer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes;

impl Deserializer for Bytes {
    type Output = Vec<u8>;

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// A JSON document decoded into `T` with serde.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// A JSON deserializer for `T`.
    pub fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Json::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: Data + DeserializeOwned> Deserializer for Json<T> {
    type Output = T;

    fn deserialize(&self, bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON {}: {e}", std::any::type_name::<T>()))
    }
}

/// What a stream does with a record its deserializers refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnBadRecord {
    /// Fails the batch with an error naming the topic, partition and offset of the record and
    /// why it was refused (the default: nothing is dropped silently). A recovered or restarted
    /// job meets the same record again.
    #[default]
    Fail,
    /// Leaves the record out of the batch, with a warning naming it (the first ten one by one,
    /// then one in a thousand), and counts it in
    /// [`KafkaStream::skipped_records`](crate::KafkaStream::skipped_records).
    Skip,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializers_decode_or_say_why_not() {
        assert_eq!(Utf8.deserialize(b"hi").unwrap(), "hi");
        assert!(Utf8.deserialize(&[0xff]).unwrap_err().starts_with("not valid UTF-8"));
        assert_eq!(Bytes.deserialize(&[1, 2]).unwrap(), vec![1, 2]);
        let json = Json::<(String, u32)>::new();
        assert_eq!(json.deserialize(br#"["a", 3]"#).unwrap(), ("a".to_owned(), 3));
        assert!(
            json.deserialize(b"{")
                .unwrap_err()
                .contains("not a JSON (alloc::string::String, u32)")
        );
    }
}
