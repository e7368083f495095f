//! A compact JSON value for the OTLP/JSON decoder.
//!
//! `serde_json::Value` keeps objects in a `BTreeMap`, whose first node reserves room for
//! eleven entries: about 600 bytes for `{"intValue":"1"}`, so an 18 MB request of small
//! attribute values grew to 800 MB while decoding. OTLP/JSON objects have a handful of
//! keys, so here an object is a vector of its entries, sized to what it holds (about 100
//! bytes for that value), and a key is looked up by a short linear scan.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
pub use serde_json::Number;

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
        struct V;
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
                Value::deserialize(d)
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
                Ok(Value::String(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
                Ok(Value::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                items.shrink_to_fit();
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(kv) = map.next_entry::<String, Value>()? {
                    entries.push(kv);
                }
                entries.shrink_to_fit();
                Ok(Value::Object(Map(entries)))
            }
        }
        d.deserialize_any(V)
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
}
