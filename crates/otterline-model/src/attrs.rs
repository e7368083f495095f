//! Reading and building OTLP attributes (`KeyValue` lists): the one set of accessors every
//! component uses, so a value is read the same way wherever it is read.

use otterline_core::pdata::common::{any_value, AnyValue, KeyValue};

/// The value of `key` (the first occurrence), if it has one.
#[inline]
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(value_of)
}

/// The value a `KeyValue` carries, if any.
#[inline]
pub fn value_of(kv: &KeyValue) -> Option<&any_value::Value> {
    kv.value.as_ref().and_then(|v| v.value.as_ref())
}

/// An integer attribute (ints, integral doubles, numeric strings).
#[inline]
pub fn attr_i64(attrs: &[KeyValue], key: &str) -> Option<i64> {
    value_i64(attr(attrs, key)?)
}

/// An integer value (ints, integral doubles, numeric strings).
#[inline]
pub fn value_i64(v: &any_value::Value) -> Option<i64> {
    match v {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::DoubleValue(d) if d.fract() == 0.0 => Some(*d as i64),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A numeric attribute as f64 (ints, doubles, numeric strings).
#[inline]
pub fn attr_f64(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match attr(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i as f64),
        any_value::Value::DoubleValue(d) => Some(*d),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string attribute (only string values).
#[inline]
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// A scalar attribute as text (strings as they are, numbers and booleans printed); empty
/// when absent or not a scalar.
#[inline]
pub fn attr_text(attrs: &[KeyValue], key: &str) -> String {
    scalar_text(attr(attrs, key))
}

/// A scalar value as text, as [`attr_text`] prints it; empty for none or a non-scalar.
#[inline]
pub fn scalar_text(v: Option<&any_value::Value>) -> String {
    match v {
        Some(any_value::Value::StringValue(v)) => v.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// An attribute with any value.
#[inline]
pub fn kv(key: impl Into<String>, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// A string attribute.
#[inline]
pub fn kv_str(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// An integer attribute.
#[inline]
pub fn kv_i64(key: impl Into<String>, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// A double attribute.
#[inline]
pub fn kv_f64(key: impl Into<String>, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

/// A boolean attribute.
#[inline]
pub fn kv_bool(key: impl Into<String>, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_convert_as_documented_and_the_first_occurrence_wins() {
        let a = vec![
            kv_str("s", "12"),
            kv_f64("d", 3.0),
            kv_f64("frac", 2.5),
            kv_i64("i", 7),
            kv_bool("b", true),
            kv_str("s", "later"),
        ];
        assert_eq!(attr_i64(&a, "s"), Some(12));
        assert_eq!(attr_i64(&a, "d"), Some(3));
        assert_eq!(attr_i64(&a, "frac"), None);
        assert_eq!(attr_f64(&a, "frac"), Some(2.5));
        assert_eq!(attr_f64(&a, "i"), Some(7.0));
        assert_eq!(attr_str(&a, "s"), Some("12"));
        assert_eq!(attr_str(&a, "i"), None);
        assert_eq!(attr_text(&a, "i"), "7");
        assert_eq!(attr_text(&a, "b"), "true");
        assert_eq!(attr_text(&a, "missing"), "");
    }
}
