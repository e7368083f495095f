//! Bearer tokens for Otterline's listeners: the `auth:` key of the OTLP receiver's
//! protocols, the dashboard, the health endpoint and the self-metrics endpoint.
//!
//! ```yaml
//! auth: {bearer_token_file: /etc/otterline/token}   # or bearer_token: ${env:OTTERLINE_TOKEN}
//! ```
//!
//! A request passes with `Authorization: Bearer <token>`; pages a browser opens (the
//! dashboard) may pass it once as `?token=<token>` instead, which the page then sends on
//! with each of its own requests. The token is compared in constant time.

use std::path::PathBuf;

use serde::Deserialize;

/// `auth:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
}

/// A bearer token requests must carry.
#[derive(Debug)]
pub struct Token(String);

impl AuthConfig {
    /// The token (a file's content is trimmed); `Err((key, message))` names the key at fault.
    pub fn load(&self) -> Result<Token, (&'static str, String)> {
        let token = match (&self.bearer_token, &self.bearer_token_file) {
            (Some(t), None) => t.trim().to_string(),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| ("bearer_token_file", format!("cannot read {}: {e}", p.display())))?
                .trim()
                .to_string(),
            (Some(_), Some(_)) => {
                return Err(("bearer_token", "give bearer_token or bearer_token_file, not both".into()))
            }
            (None, None) => return Err(("bearer_token", "give bearer_token or bearer_token_file".into())),
        };
        if token.is_empty() {
            return Err(("bearer_token", "the token is empty (an unset environment variable?)".into()));
        }
        Ok(Token(token))
    }
}

impl Token {
    /// Whether an `Authorization` header value carries the token.
    pub fn allows_header(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization else { return false };
        let Some(given) = given.strip_prefix("Bearer ").or_else(|| given.strip_prefix("bearer ")) else {
            return false;
        };
        self.matches(given.trim())
    }

    /// Whether a request passes: by its `Authorization` header, or by `token=` in its query
    /// string (a page opened in a browser).
    pub fn allows(&self, authorization: Option<&str>, query: Option<&str>) -> bool {
        self.allows_header(authorization)
            || query.is_some_and(|q| {
                q.split('&').filter_map(|kv| kv.strip_prefix("token=")).any(|t| self.matches(&percent_decode(t)))
            })
    }

    fn matches(&self, given: &str) -> bool {
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// `%XX` escapes and `+` decoded (a token in a URL).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_exactly_in_the_header_or_the_query() {
        let t = AuthConfig { bearer_token: Some(" s3c ret ".into()), bearer_token_file: None }.load().unwrap();
        assert!(t.allows_header(Some("Bearer s3c ret")));
        assert!(!t.allows_header(Some("Bearer s3c re")));
        assert!(!t.allows_header(Some("Basic s3c ret")));
        assert!(!t.allows_header(None));
        assert!(t.allows(None, Some("range=1h&token=s3c%20ret")));
        assert!(t.allows(None, Some("token=s3c+ret")));
        assert!(!t.allows(None, Some("token=s3c")));
        assert!(!t.allows(None, None));
        let e = AuthConfig { bearer_token: Some("".into()), bearer_token_file: None }.load().unwrap_err();
        assert!(e.1.contains("empty"));
    }
}
