//! The script log of one lifecycle event: every line of its scripts' output, prefixed
//! `[stdout]` or `[stderr]`, appended to `logs/scripts.log` with a timestamp, and the
//! last [`LOG_TAIL_BYTES`] kept in memory for the report.
//!
//! The log is shared by the tasks reading a script's two pipes, so it locks inside;
//! the lock is never held across an await.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::diagnostics::LOG_TAIL_BYTES;

/// One event's script log.
#[derive(Debug)]
pub struct ScriptLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` once a write failed (the failure is logged once; the tail goes on).
    file: Option<File>,
    tail: VecDeque<String>,
    tail_bytes: usize,
}

impl ScriptLog {
    /// Appends to the log at `path`, creating it and its directory if needed.
    pub fn open(path: &Path) -> std::io::Result<ScriptLog> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(ScriptLog {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file: Some(file),
                tail: VecDeque::new(),
                tail_bytes: 0,
            }),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one line (`[stdout]text`, `Script - scripts/start.sh`, ...).
    pub fn line(&self, text: &str) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let entry = format!("{text}\n");
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = inner.file.as_mut() {
            let stamped = format!("{} {entry}", timestamp());
            if let Err(e) = file.write_all(stamped.as_bytes()) {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "cannot write the script log; later lines are only reported, not kept");
                inner.file = None;
            }
        }
        inner.tail_bytes += entry.len();
        inner.tail.push_back(entry);
        while inner.tail_bytes > LOG_TAIL_BYTES && inner.tail.len() > 1 {
            if let Some(old) = inner.tail.pop_front() {
                inner.tail_bytes -= old.len();
            }
        }
    }

    /// The last [`LOG_TAIL_BYTES`] (or a little less: whole lines, unless one line is
    /// longer on its own, in which case its end).
    pub fn tail(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let all: String = inner.tail.iter().map(String::as_str).collect();
        if all.len() <= LOG_TAIL_BYTES {
            return all;
        }
        let mut cut = all.len() - LOG_TAIL_BYTES;
        while !all.is_char_boundary(cut) {
            cut += 1;
        }
        all[cut..].to_string()
    }
}

fn timestamp() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_in_the_file_and_the_end_in_the_tail() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log =
            ScriptLog::open(&dir.path().join("logs/scripts.log")).unwrap_or_else(|e| panic!("{e}"));
        for n in 0..200 {
            log.line(&format!("[stdout]line {n}"));
        }
        let tail = log.tail();
        assert!(tail.len() <= LOG_TAIL_BYTES);
        assert!(tail.ends_with("[stdout]line 199\n"), "{tail}");
        assert!(tail.starts_with("[stdout]line "), "whole lines: {tail}");
        assert!(!tail.contains("line 0\n"));
        let file = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert_eq!(file.lines().count(), 200);
        assert!(file.lines().all(|l| l.contains(" [stdout]line ")), "{file}");

        log.line(&format!("[stderr]{}", "é".repeat(3000)));
        let tail = log.tail();
        assert!(tail.len() <= LOG_TAIL_BYTES && tail.ends_with("é\n"));
    }
}
