//! A compact JSON value for the OTLP/JSON decoder.
//!
//! `serde_json::Value` keeps objects in a `BTreeMap`, whose first node reserves room for
//! eleven entries: about 600 bytes for `{"intValue":"1"}`, so an 18 MB request of small
//! attribute values grew to 800 MB while decoding. OTLP/JSON objects have a handful of
//! keys, so here an object is a vector of its entries, sized to what it holds (about 100
//! bytes for that value), and a key is looked up by a short linear scan.
//!
//! Nesting: serde_json's own limit (128 levels) stopped OTLP/JSON at 39 levels of nested
//! arrays, fewer than protobuf accepts, so the JSON exporter could write lines it could not
//! read back. [`parse`] counts the depth itself and allows [`MAX_DEPTH`] levels, more than
//! any request protobuf's decoder accepts, and still refuses deeper input with an error
//! instead of exhausting the stack.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
pub use serde_json::Number;

use crate::pdata::meter;

/// Deepest nesting of arrays and objects accepted (protobuf's decoders stop at 100 nested
/// messages, which is at most about 200 JSON levels).
pub const MAX_DEPTH: usize = 256;

/// Parses JSON text into a [`Value`], nesting at most [`MAX_DEPTH`] levels.
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let v = Depth(0).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// An object's entries in document order; a key given twice resolves to the last, as with
/// `serde_json::Map`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map(Vec<(String, Value)>);

impl Map {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        Depth(0).deserialize(d)
    }
}

/// A parse error once the decode's memory limit is passed ([`meter`]).
fn metered<E: de::Error>(within_limit: bool) -> Result<(), E> {
    if within_limit {
        Ok(())
    } else {
        Err(E::custom(meter::EXCEEDED_MESSAGE))
    }
}

/// A value at a depth: its children are one level deeper.
#[derive(Clone, Copy)]
struct Depth(usize);

impl<'de> DeserializeSeed<'de> for Depth {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        struct V(usize);
        impl V {
            fn deeper<E: de::Error>(&self) -> Result<Depth, E> {
                if self.0 >= MAX_DEPTH {
                    return Err(E::custom(format_args!("arrays and objects nest deeper than {MAX_DEPTH} levels")));
                }
                Ok(Depth(self.0 + 1))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Depth(self.0).deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
                Ok(Value::Number(n.into()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
                Ok(Value::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
                Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
                metered(meter::charge_bytes(s.len()))?;
                Ok(Value::String(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
                metered(meter::charge_bytes(s.len()))?;
                Ok(Value::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let child = self.deeper()?;
                let mut items = Vec::new();
                while let Some(v) = seq.next_element_seed(child)? {
                    metered(meter::push(&mut items, v))?;
                }
                meter::shrink(&mut items);
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let child = self.deeper()?;
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    metered(meter::charge_bytes(k.len()))?;
                    let v = map.next_value_seed(child)?;
                    metered(meter::push(&mut entries, (k, v)))?;
                }
                meter::shrink(&mut entries);
                Ok(Value::Object(Map(entries)))
            }
        }
        d.deserialize_any(V(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json_and_is_compact() {
        let v: Value = serde_json::from_str(r#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}],"a":7}"#).unwrap();
        let Value::Object(m) = &v else { panic!() };
        assert_eq!(m.get("a"), Some(&Value::Number(7.into())), "the last of a repeated key wins");
        assert_eq!(m.0.len(), 2);
        assert!(m.get("nope").is_none());
        let Value::Array(items) = &m.0[0].1 else { panic!() };
        assert_eq!(items[2], Value::Number(Number::from_f64(3.5).unwrap()));
        assert!(items[5].is_null());
        assert!(std::mem::size_of::<Value>() <= 32);
    }

    #[test]
    fn nesting_is_allowed_to_max_depth_and_refused_beyond_without_overflowing() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        let e = parse(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err().to_string();
        assert!(e.contains("nest deeper than 256 levels"), "{e}");
        assert!(parse(nested(100_000).as_bytes()).is_err());
    }
}
