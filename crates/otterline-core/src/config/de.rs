//! A serde deserializer over a positioned YAML [`Node`] tree.
//!
//! Component configs are plain `#[derive(Deserialize)]` structs (usually with
//! `deny_unknown_fields`). Deserializing them from a node makes every error —
//! unknown key, wrong type, bad value — point at the offending key or value with
//! `file:line:col` and its dotted path in the config.
//!
//! Plain scalars are typed lazily: a struct field that wants a number parses the
//! text; one that wants a string gets the text as written (so `version: 1.10`
//! stays `"1.10"`). Quoted scalars are only ever strings to `deserialize_any`.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::yaml::{Node, NodeKind};
use super::ConfigError;

impl de::Error for ConfigError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        ConfigError { mark: None, path: String::new(), message: msg.to_string() }
    }
}

/// Deserializes `T` from `node`; `path` is the node's dotted path, used in errors.
pub fn from_node<T: de::DeserializeOwned>(node: &Node, path: &str) -> Result<T, ConfigError> {
    let de = NodeDe { node, path: path.to_string() };
    // Errors raised after a value was read (by a type's own checks) get this node's place.
    T::deserialize(NodeDe { node, path: path.to_string() }).map_err(|e| de.locate(e))
}

pub(crate) struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn locate(&self, mut e: ConfigError) -> ConfigError {
        if e.mark.is_none() {
            e.mark = Some(self.node.mark.clone());
            e.path = self.path.clone();
        }
        e
    }

    fn scalar(&self, want: &str) -> Result<&'a str, ConfigError> {
        match &self.node.kind {
            NodeKind::Scalar { text, .. } => Ok(text),
            _ => Err(self.locate(de::Error::custom(format!("expected {want}, found {}", self.node.describe())))),
        }
    }

    fn parse<T: std::str::FromStr>(&self, want: &str) -> Result<T, ConfigError> {
        let text = self.scalar(want)?;
        parse_int_text::<T>(text)
            .ok_or_else(|| self.locate(de::Error::custom(format!("expected {want}, found {text:?}"))))
    }
}

fn parse_int_text<T: std::str::FromStr>(text: &str) -> Option<T> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_').collect();
    cleaned.parse::<T>().ok()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => {
            let looks_numeric =
                text.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))
                    && text.chars().any(|c| c.is_ascii_digit());
            if looks_numeric {
                parse_int_text::<f64>(text)
            } else {
                None
            }
        }
    }
}

macro_rules! deserialize_number {
    ($method:ident, $visit:ident, $ty:ty, $want:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
            let v: $ty = self.parse($want)?;
            visitor.$visit(v).map_err(|e| self.locate(e))
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let r = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Scalar { text, plain: true } => {
                if let Some(b) = parse_bool(text) {
                    visitor.visit_bool(b)
                } else if let Some(i) = parse_int_text::<i64>(text).filter(|_| !text.contains('.')) {
                    visitor.visit_i64(i)
                } else if let Some(u) = parse_int_text::<u64>(text).filter(|_| !text.contains('.')) {
                    visitor.visit_u64(u)
                } else if let Some(f) = parse_float(text) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(text)
                }
            }
            NodeKind::Scalar { text, plain: false } => visitor.visit_str(text),
            NodeKind::Seq(items) => visitor.visit_seq(Seq { items, index: 0, path: &self.path }),
            NodeKind::Map(entries) => visitor.visit_map(Map { entries, index: 0, path: &self.path, value: None }),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let text = self.scalar("true or false")?;
        let b = parse_bool(text)
            .ok_or_else(|| self.locate(de::Error::custom(format!("expected true or false, found {text:?}"))))?;
        visitor.visit_bool(b).map_err(|e| self.locate(e))
    }

    deserialize_number!(deserialize_i8, visit_i8, i8, "an integer");
    deserialize_number!(deserialize_i16, visit_i16, i16, "an integer");
    deserialize_number!(deserialize_i32, visit_i32, i32, "an integer");
    deserialize_number!(deserialize_i64, visit_i64, i64, "an integer");
    deserialize_number!(deserialize_u8, visit_u8, u8, "a non-negative integer (0-255)");
    deserialize_number!(deserialize_u16, visit_u16, u16, "a non-negative integer (0-65535)");
    deserialize_number!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    deserialize_number!(deserialize_u64, visit_u64, u64, "a non-negative integer");

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let text = self.scalar("a number")?;
        let f = parse_float(text)
            .ok_or_else(|| self.locate(de::Error::custom(format!("expected a number, found {text:?}"))))?;
        visitor.visit_f64(f).map_err(|e| self.locate(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let text = self.scalar("a string")?;
        visitor.visit_str(text).map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let text = self.scalar("a string")?;
        visitor.visit_bytes(text.as_bytes()).map_err(|e| self.locate(e))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let r = if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(NodeDe { node: self.node, path: self.path.clone() })
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        if self.node.is_null() {
            visitor.visit_unit().map_err(|e| self.locate(e))
        } else {
            Err(self.locate(de::Error::custom(format!("expected nothing, found {}", self.node.describe()))))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let path = self.path.clone();
        visitor.visit_newtype_struct(NodeDe { node: self.node, path }).map_err(|e| self.locate(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let r = match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(Seq { items, index: 0, path: &self.path }),
            NodeKind::Null => visitor.visit_seq(Seq { items: &[], index: 0, path: &self.path }),
            _ => Err(de::Error::custom(format!("expected a list, found {}", self.node.describe()))),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let r = match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(Map { entries, index: 0, path: &self.path, value: None }),
            NodeKind::Null => visitor.visit_map(Map { entries: &[], index: 0, path: &self.path, value: None }),
            _ => Err(de::Error::custom(format!("expected a map, found {}", self.node.describe()))),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let r = match &self.node.kind {
            NodeKind::Scalar { text, .. } => visitor.visit_enum(text.as_str().into_deserializer()),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                let variant = k.as_str().unwrap_or_default();
                visitor.visit_enum(Enum { variant, value: v, path: join(&self.path, variant) })
            }
            _ => {
                Err(de::Error::custom(format!("expected a name or a map with one key, found {}", self.node.describe())))
            }
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Seq<'a, 'p> {
    items: &'a [Node],
    index: usize,
    path: &'p str,
}

impl<'de, 'a, 'p> SeqAccess<'de> for Seq<'a, 'p> {
    type Error = ConfigError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, ConfigError> {
        let Some(node) = self.items.get(self.index) else { return Ok(None) };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.index)
    }
}

struct Map<'a, 'p> {
    entries: &'a [(Node, Node)],
    index: usize,
    path: &'p str,
    value: Option<(&'a Node, String)>,
}

impl<'de, 'a, 'p> MapAccess<'de> for Map<'a, 'p> {
    type Error = ConfigError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ConfigError> {
        let Some((k, v)) = self.entries.get(self.index) else { return Ok(None) };
        self.index += 1;
        let path = join(self.path, k.as_str().unwrap_or_default());
        self.value = Some((v, path.clone()));
        seed.deserialize(NodeDe { node: k, path }).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ConfigError> {
        let Some((node, path)) = self.value.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        seed.deserialize(NodeDe { node, path })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.index)
    }
}

struct Enum<'a> {
    variant: &'a str,
    value: &'a Node,
    path: String,
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a> {
    type Error = ConfigError;
    type Variant = NodeDe<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, NodeDe<'a>), ConfigError> {
        let v = seed.deserialize(self.variant.into_deserializer())?;
        Ok((v, NodeDe { node: self.value, path: self.path }))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for NodeDe<'a> {
    type Error = ConfigError;
    fn unit_variant(self) -> Result<(), ConfigError> {
        de::Deserialize::deserialize(self)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, ConfigError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, ConfigError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse;
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        max_megabytes: u64,
        ratio: f64,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        None,
        Gzip,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        path: String,
        version: String,
        on: bool,
        mode: Mode,
        rotation: Inner,
        tags: Vec<String>,
        extra: Option<u16>,
    }

    fn de(text: &str) -> Result<Cfg, ConfigError> {
        let root = parse("c.yaml", text).unwrap();
        from_node(root.get("x").unwrap(), "exporters.x")
    }

    #[test]
    fn typed_values() {
        let c = de("x:\n  path: /tmp\n  version: 1.10\n  on: true\n  mode: gzip\n  rotation: {max_megabytes: 1_000, ratio: .5}\n  tags: [a, 'b']\n  extra: 8\n").unwrap();
        assert_eq!(c.path, "/tmp");
        assert_eq!(c.version, "1.10");
        assert!(c.on);
        assert_eq!(c.mode, Mode::Gzip);
        assert_eq!(c.rotation, Inner { max_megabytes: 1000, ratio: 0.5 });
        assert_eq!(c.tags, vec!["a", "b"]);
        assert_eq!(c.extra, Some(8));
        assert_eq!(de("x:\n").unwrap(), Cfg::default());
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let err = de("x:\n  rotation:\n    max_mb: 3\n").unwrap_err();
        let mark = err.mark.clone().unwrap();
        assert_eq!((mark.line, mark.col), (3, 5));
        assert_eq!(err.path, "exporters.x.rotation.max_mb");
        assert!(err.message.contains("unknown field `max_mb`, expected `max_megabytes` or `ratio`"), "{err}");
        assert!(err.to_string().starts_with("c.yaml:3:5: exporters.x.rotation.max_mb: unknown field"), "{err}");
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let err = de("x:\n  extra: 70000\n").unwrap_err();
        assert_eq!(err.mark.as_ref().unwrap().line, 2);
        assert_eq!(err.path, "exporters.x.extra");
        assert!(err.message.contains("0-65535"), "{err}");

        let err = de("x:\n  mode: brotli\n").unwrap_err();
        assert!(err.message.contains("unknown variant `brotli`, expected `none` or `gzip`"), "{err}");
        assert_eq!(err.path, "exporters.x.mode");

        let err = de("x:\n  tags: {a: 1}\n").unwrap_err();
        assert!(err.message.contains("expected a list, found a map"), "{err}");

        let err = de("x:\n  on: maybe\n").unwrap_err();
        assert!(err.message.contains("expected true or false"), "{err}");
    }
}
