//! Glob patterns as used in every slipway config file.

use globset::{GlobBuilder, GlobMatcher};

/// A compiled glob that remembers its source text. `*` matches any characters, `/`
/// included, as in IAM policies.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Compiles `text`; the error says why it is not a valid glob.
    pub fn new(text: &str) -> Result<Pattern, String> {
        Pattern::build(text, false)
    }

    /// Compiles `text` as a path glob: `*` stays within one `/`-separated part and `**`
    /// crosses parts (branch, tag and file filters of pipeline triggers).
    pub fn path(text: &str) -> Result<Pattern, String> {
        Pattern::build(text, true)
    }

    fn build(text: &str, literal_separator: bool) -> Result<Pattern, String> {
        let glob = GlobBuilder::new(text)
            .literal_separator(literal_separator)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("`{text}` is not a valid pattern: {}", e.kind()))?;
        Ok(Pattern {
            text: text.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_crosses_slashes_like_iam() {
        let p = Pattern::new("refs/heads/*").unwrap();
        assert!(p.is_match("refs/heads/feature/x"));
        assert!(!p.is_match("refs/tags/v1"));
        assert!(Pattern::new("a[").is_err());
    }
}
