//! A YAML document as a tree of [`Node`]s that remember where they came from.
//!
//! Built from `saphyr-parser` events so that every key and value carries its
//! file, line and column; anchors and aliases are resolved while building.
//! Environment references in scalar values are expanded here (see [`expand_env`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::ConfigError;

/// Where a node starts: file, 1-based line and 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    /// `plain` is false for quoted and block scalars and for `!!str`: their text is never
    /// re-typed as a number or boolean.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in document order; keys are nodes so that they keep their positions.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn null(mark: Mark) -> Node {
        Node { kind: NodeKind::Null, mark }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Null)
    }

    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Map entries (an empty slice for null, `None` for anything else).
    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(e) => Some(e),
            NodeKind::Null => Some(&[]),
            _ => None,
        }
    }

    /// The value under `key` in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// A short description for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "nothing (null)",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
        }
    }
}

/// Parses one YAML document. Errors carry the file and position.
/// Most nodes a config may expand to, aliases counted at their full size: a "billion
/// laughs" file (aliases of aliases) is refused at once instead of filling memory.
pub const MAX_NODES: usize = 1_000_000;
/// Deepest nesting of sequences and maps (a config needs a handful of levels).
pub const MAX_DEPTH: usize = 128;

pub fn parse(file: &str, text: &str) -> Result<Node, ConfigError> {
    let file: Arc<str> = Arc::from(file);
    let mark_at = |m: &saphyr_parser::Marker| Mark { file: file.clone(), line: m.line(), col: m.col() + 1 };

    /// A container being built, its mark and anchor, and the nodes inside it so far.
    enum Frame {
        Seq(Vec<Node>, Mark, usize, usize),
        /// Entries, the key waiting for its value, the keys seen (for duplicates in O(1)).
        Map(Vec<(Node, Node)>, Option<Node>, Mark, usize, usize, std::collections::HashSet<String>),
    }

    // Anchor id → (node, nodes in it).
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut total = 0usize;
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;

    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| ConfigError {
            mark: Some(mark_at(e.marker())),
            path: String::new(),
            message: format!("YAML syntax error: {}", e.info()),
        })?;
        let mark = mark_at(&span.start);
        let too_many = |mark: &Mark| {
            ConfigError::at(
                mark,
                "",
                format!("the config expands to more than {MAX_NODES} values (aliases of aliases?); write it out or split it"),
            )
        };
        // (node, anchor, nodes in it)
        let finished: Option<(Node, usize, usize)> = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(ConfigError::at(
                        &mark,
                        "",
                        "a config file holds one YAML document; split it into several files and pass each with --config",
                    ));
                }
                None
            }
            Event::Scalar(value, style, anchor, tag) => {
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !forced_str;
                let kind = if plain && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar { text: value.into_owned(), plain }
                };
                total += 1;
                Some((Node { kind, mark }, anchor, 1))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((node, size)) => {
                    // Counted (and refused) before the copy is made.
                    total = total.saturating_add(*size);
                    if total > MAX_NODES {
                        return Err(too_many(&mark));
                    }
                    Some((node.clone(), 0, *size))
                }
                None => return Err(ConfigError::at(&mark, "", "alias refers to an unknown anchor")),
            },
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                return Err(ConfigError::at(
                    &mark,
                    "",
                    format!("sequences and maps nest deeper than {MAX_DEPTH} levels; a config needs a few"),
                ));
            }
            Event::SequenceStart(anchor, _) => {
                total += 1;
                stack.push(Frame::Seq(Vec::new(), mark, anchor, 1));
                None
            }
            Event::MappingStart(anchor, _) => {
                total += 1;
                stack.push(Frame::Map(Vec::new(), None, mark, anchor, 1, Default::default()));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, m, anchor, size)) => {
                    Some((Node { kind: NodeKind::Seq(items), mark: m }, anchor, size))
                }
                _ => return Err(ConfigError::at(&mark, "", "unbalanced YAML sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(entries, _, m, anchor, size, _)) => {
                    Some((Node { kind: NodeKind::Map(entries), mark: m }, anchor, size))
                }
                _ => return Err(ConfigError::at(&mark, "", "unbalanced YAML mapping")),
            },
            _ => None,
        };
        let Some((node, anchor, size)) = finished else { continue };
        if total > MAX_NODES {
            return Err(too_many(&node.mark));
        }
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(items, _, _, n)) => {
                *n = n.saturating_add(size);
                items.push(node)
            }
            Some(Frame::Map(entries, pending, _, _, n, keys)) => {
                *n = n.saturating_add(size);
                match pending.take() {
                    None => {
                        let Some(key) = node.as_str() else {
                            return Err(ConfigError::at(
                                &node.mark,
                                "",
                                format!("map keys must be scalars, found {}", node.describe()),
                            ));
                        };
                        if !keys.insert(key.to_string()) {
                            let first = entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k.mark.line);
                            return Err(ConfigError::at(
                                &node.mark,
                                key,
                                format!("duplicate key `{key}` (first defined at line {})", first.unwrap_or(0)),
                            ));
                        }
                        *pending = Some(node);
                    }
                    Some(key) => entries.push((key, node)),
                }
            }
        }
    }

    Ok(root.unwrap_or_else(|| Node::null(Mark { file, line: 1, col: 1 })))
}

/// Merges `over` into `base`: maps merge key by key (recursively), anything else is replaced.
/// This is how several `--config` files combine, the later winning.
pub fn merge(base: &mut Node, over: Node) {
    match (&mut base.kind, over.kind) {
        (NodeKind::Map(base_entries), NodeKind::Map(over_entries)) => {
            for (k, v) in over_entries {
                match base_entries.iter_mut().find(|(bk, _)| bk.as_str() == k.as_str()) {
                    Some((_, bv)) => merge(bv, v),
                    None => base_entries.push((k, v)),
                }
            }
        }
        (_, kind) => {
            base.kind = kind;
            base.mark = over.mark;
        }
    }
}

/// Expands environment references in every scalar value (not in keys).
///
/// Unset variables without a default expand to the empty string, as in the
/// OpenTelemetry Collector, and are reported as warnings.
pub fn expand_tree(
    node: &mut Node,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<ConfigError>,
) -> Result<(), ConfigError> {
    match &mut node.kind {
        NodeKind::Scalar { text, plain } => {
            if text.contains('$') {
                let mut unset = Vec::new();
                let expanded =
                    expand_env(text, lookup, &mut unset).map_err(|msg| ConfigError::at(&node.mark, path, msg))?;
                for var in unset {
                    warnings.push(ConfigError::at(
                        &node.mark,
                        path,
                        format!("environment variable {var} is not set; using an empty value"),
                    ));
                }
                if *plain && expanded.is_empty() {
                    node.kind = NodeKind::Null;
                } else {
                    *text = expanded;
                }
            }
            Ok(())
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{path}[{i}]"), lookup, warnings)?;
            }
            Ok(())
        }
        NodeKind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let key = k.as_str().unwrap_or_default();
                let child = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
                expand_tree(v, &child, lookup, warnings)?;
            }
            Ok(())
        }
        NodeKind::Null => Ok(()),
    }
}

/// Expands `${VAR}`, `${env:VAR}`, `${env:VAR:-default}` (default when unset or empty) and
/// `${env:VAR-default}` (default only when unset); `$$` is a literal `$`;
/// a bare `$VAR` is left alone. Names of unset variables without a default are
/// pushed to `unset`.
pub fn expand_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let Some(end) = body_start.find('}') else {
                return Err(format!(
                    "unterminated `${{` in {text:?}: add the closing `}}`, or write `$$` for a literal `$`"
                ));
            };
            let body = &body_start[..end];
            // `:-` falls back when unset or empty; `-` only when unset (an empty value stays
            // empty, e.g. to turn a listener off), as in the shell.
            let (name, default, empty_ok) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d), false),
                None => match body.split_once('-') {
                    Some((n, d)) => (n, Some(d), true),
                    None => (body, None, false),
                },
            };
            let name = match name.split_once(':') {
                Some(("env", n)) => n,
                Some((provider, _)) => {
                    return Err(format!(
                        "unsupported config provider `{provider}` in `${{{body}}}`: only `env` is supported"
                    ))
                }
                None => name,
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "invalid environment variable name {name:?} in `${{{body}}}` (use letters, digits and `_`)"
                ));
            }
            match (lookup(name), default) {
                (Some(v), _) if !v.is_empty() || default.is_none() || empty_ok => out.push_str(&v),
                (_, Some(d)) => out.push_str(d),
                (None, None) => unset.push(name.to_string()),
                (Some(_), None) => {}
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn expand(s: &str) -> (Result<String, String>, Vec<String>) {
        let mut unset = Vec::new();
        (expand_env(s, &env, &mut unset), unset)
    }

    #[test]
    fn env_expansion_forms() {
        assert_eq!(expand("${HOST}:4317").0.unwrap(), "10.0.0.1:4317");
        assert_eq!(expand("${env:HOST}").0.unwrap(), "10.0.0.1");
        assert_eq!(expand("${env:NOPE:-127.0.0.1}:1").0.unwrap(), "127.0.0.1:1");
        assert_eq!(expand("${env:EMPTY:-dflt}").0.unwrap(), "dflt");
        assert_eq!(expand("[${env:EMPTY-dflt}]").0.unwrap(), "[]", "`-`: an empty value stays empty");
        assert_eq!(expand("${env:NOPE-127.0.0.1:8888}").0.unwrap(), "127.0.0.1:8888");
        assert_eq!(expand("${env:HOST-x}").0.unwrap(), "10.0.0.1");
        assert_eq!(expand("$$HOME and $${HOST}").0.unwrap(), "$HOME and ${HOST}");
        assert_eq!(expand("$$$${HOST}").0.unwrap(), "$${HOST}");
        assert_eq!(expand("$HOST stays, cost $5").0.unwrap(), "$HOST stays, cost $5");
        let (v, unset) = expand("a${MISSING}b");
        assert_eq!(v.unwrap(), "ab");
        assert_eq!(unset, vec!["MISSING".to_string()]);
        assert!(expand("${HOST").0.unwrap_err().contains("unterminated"));
        assert!(expand("${file:/x}").0.unwrap_err().contains("unsupported config provider `file`"));
        assert!(expand("${1BAD}").0.unwrap_err().contains("invalid environment variable name"));
    }

    #[test]
    fn parse_keeps_positions_and_resolves_aliases() {
        let text = "a:\n  b: 1\n  c: &x [1, 'two']\nd: *x\ne:\n";
        let root = parse("f.yaml", text).unwrap();
        let b = root.get("a").unwrap().get("b").unwrap();
        assert_eq!((b.mark.line, b.mark.col), (2, 6));
        assert_eq!(b.as_str(), Some("1"));
        let d = root.get("d").unwrap();
        let NodeKind::Seq(items) = &d.kind else { panic!() };
        assert_eq!(items[1].kind, NodeKind::Scalar { text: "two".into(), plain: false });
        assert!(root.get("e").unwrap().is_null());
    }

    #[test]
    fn parse_errors_have_positions() {
        let err = parse("f.yaml", "a:\n  b: [1, 2\n").unwrap_err();
        assert!(err.to_string().starts_with("f.yaml:"), "{err}");
        assert!(err.to_string().contains("YAML syntax error"), "{err}");
        let err = parse("f.yaml", "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.mark.as_ref().unwrap().line, 3);
        assert!(err.to_string().contains("duplicate key `a` (first defined at line 1)"), "{err}");
    }

    #[test]
    fn merge_is_deep_for_maps_and_replaces_the_rest() {
        let mut a = parse("a", "x: {p: 1, q: [1]}\ny: 1\n").unwrap();
        let b = parse("b", "x: {q: [2], r: 3}\n").unwrap();
        merge(&mut a, b);
        let x = a.get("x").unwrap();
        assert_eq!(x.get("p").unwrap().as_str(), Some("1"));
        assert_eq!(x.get("r").unwrap().as_str(), Some("3"));
        let NodeKind::Seq(q) = &x.get("q").unwrap().kind else { panic!() };
        assert_eq!(q[0].as_str(), Some("2"));
        assert_eq!(&*x.get("q").unwrap().mark.file, "b");
    }
}
