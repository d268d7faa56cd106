//! Shared pieces of config-file parsing: located errors and located checks.
//!
//! Every admin file is read with serde_yaml; a value that fails a check inside its own
//! deserialization is reported at its own line and column (see [`checked_str`]).

pub mod builds;
pub mod deploy;
pub mod rules;
pub mod settings;

use serde::Deserializer;

/// The largest admin file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// A configuration file problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file name, as in the admin repository.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    /// An error at `line:column` of `file`.
    pub fn at(file: &str, line: usize, column: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Converts a serde_yaml error, keeping its position.
    pub fn from_yaml(file: &str, e: serde_yaml::Error) -> ConfigError {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        // serde_yaml appends the location to the message; keep just the message.
        let msg = e.to_string();
        let msg = msg
            .split_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or(msg);
        ConfigError::at(file, line, column, msg)
    }
}

/// Refuses files over [`MAX_FILE_BYTES`].
pub fn check_size(file: &str, text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ConfigError::at(
            file,
            1,
            1,
            format!(
                "the file is {} bytes; the limit is {MAX_FILE_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Reads a string and checks it *inside* the scalar's own deserialization, so that
/// serde_yaml reports the position of the offending value itself (an error raised after
/// `String::deserialize` returns would be reported at the enclosing list or map).
pub fn checked_str<'de, D, T>(
    d: D,
    check: impl FnOnce(String) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Check<F>(F);
    impl<'de, T, F: FnOnce(String) -> Result<T, String>> serde::de::Visitor<'de> for Check<F> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v.to_string()).map_err(E::custom)
        }
    }
    d.deserialize_str(Check(check))
}

/// `s`, cut to 80 characters for messages.
pub fn truncate(s: &str) -> String {
    if s.len() <= 80 {
        s.to_string()
    } else {
        let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    }
}

/// Parses a duration written the human way (`30d`, `6h`, `90s`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!(
            "`{}` is not a duration ({e}); write e.g. `30d`, `6h` or `90s`",
            truncate(s)
        )
    })
}
