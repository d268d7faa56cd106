//! Reading files out of commits, including commits still in git's push quarantine.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The quarantine directories git names while pre-receive runs, checked to lie inside
/// the repository so a forged request cannot point slipway at other files.
#[derive(Debug, Clone, Default)]
pub struct Quarantine {
    object_directory: Option<PathBuf>,
    alternates: Option<String>,
}

impl Quarantine {
    /// Validates the hook's quarantine paths against `repo`. Returns `None` (no
    /// quarantine) when none were given; an error when one points outside the repo.
    pub fn checked(
        repo: &Path,
        object_directory: Option<&str>,
        alternates: Option<&str>,
    ) -> Result<Option<Quarantine>, String> {
        let Some(dir) = object_directory else {
            return Ok(None);
        };
        let objects = repo
            .join("objects")
            .canonicalize()
            .map_err(|e| format!("cannot resolve the repository's objects: {e}"))?;
        let inside = |p: &str| -> Result<PathBuf, String> {
            let c = Path::new(p)
                .canonicalize()
                .map_err(|_| "quarantine directory does not exist".to_string())?;
            if c.starts_with(&objects) {
                Ok(c)
            } else {
                Err("quarantine directory is outside the repository".into())
            }
        };
        let object_directory = inside(dir)?;
        if let Some(alt) = alternates {
            for part in alt.split(':').filter(|p| !p.is_empty()) {
                inside(part)?;
            }
        }
        Ok(Some(Quarantine {
            object_directory: Some(object_directory),
            alternates: alternates.map(str::to_string),
        }))
    }
}

/// Reads `path` from commit `rev` of the repository at `repo`; `Ok(None)` when the file
/// is not in that commit.
pub async fn read_file_at(
    git: &str,
    repo: &Path,
    rev: &str,
    path: &str,
    quarantine: Option<&Quarantine>,
) -> std::io::Result<Option<Vec<u8>>> {
    if !rev.bytes().all(|b| b.is_ascii_hexdigit()) && !rev.starts_with("refs/") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "revision must be an object id or a full ref name",
        ));
    }
    let mut cmd = tokio::process::Command::new(git);
    cmd.env_clear();
    if let Some(p) = std::env::var_os("PATH") {
        cmd.env("PATH", p);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", repo);
    if let Some(q) = quarantine {
        if let Some(d) = &q.object_directory {
            cmd.env("GIT_OBJECT_DIRECTORY", d);
        }
        if let Some(a) = &q.alternates {
            cmd.env("GIT_ALTERNATE_OBJECT_DIRECTORIES", a);
        }
    }
    cmd.arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        stdin
            .write_all(format!("{rev}:{path}\n").as_bytes())
            .await?;
    }
    let out = child.wait_with_output().await?;
    // `--batch` answers `<id> blob <size>\n<data>\n` or `<spec> missing\n`.
    let Some(nl) = out.stdout.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let header = String::from_utf8_lossy(&out.stdout[..nl]);
    let mut parts = header.split(' ');
    let (_, kind, size) = (parts.next(), parts.next(), parts.next());
    match (kind, size.and_then(|s| s.parse::<usize>().ok())) {
        (Some("blob"), Some(size)) if out.stdout.len() > nl + size => {
            Ok(Some(out.stdout[nl + 1..nl + 1 + size].to_vec()))
        }
        _ => Ok(None),
    }
}
