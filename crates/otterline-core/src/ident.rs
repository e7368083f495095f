//! The leaf types every part of core names components by: [`ComponentId`] (`type[/name]`),
//! [`ComponentKind`] and [`ComponentError`]. They depend on nothing else in core, so
//! `config`, `health` and `net` can use them without depending on the component traits
//! (which depend on `config` and `health`). `component` re-exports them.

use std::fmt;

/// `type[/name]`, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub type_name: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn parse(text: &str) -> Result<ComponentId, String> {
        let (ty, name) = match text.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (text, None),
        };
        let valid_type = !ty.is_empty()
            && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && ty.starts_with(|c: char| c.is_ascii_alphabetic());
        if !valid_type {
            return Err(format!(
                "invalid component id {text:?}: the type must start with a letter and use only letters, digits and `_` (e.g. `otlp` or `otlp/internal`)"
            ));
        }
        if let Some(n) = name {
            if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(format!(
                    "invalid component id {text:?}: the name after `/` must be non-empty, without spaces or `/`"
                ));
            }
        }
        Ok(ComponentId { type_name: ty.to_string(), name: name.map(str::to_string) })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.type_name, n),
            None => f.write_str(&self.type_name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Receiver,
    Processor,
    Exporter,
    Extension,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 4] =
        [ComponentKind::Receiver, ComponentKind::Processor, ComponentKind::Exporter, ComponentKind::Extension];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Extension => "extension",
        }
    }

    /// The top-level config section.
    pub fn section(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receivers",
            ComponentKind::Processor => "processors",
            ComponentKind::Exporter => "exporters",
            ComponentKind::Extension => "extensions",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component failed to start or run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentError(pub String);

impl ComponentError {
    pub fn new(msg: impl Into<String>) -> Self {
        ComponentError(msg.into())
    }
}
