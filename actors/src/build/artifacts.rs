//! Artifacts: selecting files as CodeBuild does, zipping them, and storing the zip
//! sealed under the master key, content-addressed.
//!
//! Selection: `files` globs relative to `base-directory` (or the source root); `*` stays
//! within one directory, `**` crosses them (`**/*` is everything); `exclude-paths` leave
//! files out; `discard-paths` keeps only base names. Symbolic links are never followed
//! (the workspace belongs to the build; the packager does not).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::spec::Artifacts;
use crate::secrets::MasterKey;

/// The glob set `patterns` make (a leading `./` is dropped; `*` stays within one
/// directory, `**` crosses them); errors read "pattern `p`: why".
pub(crate) fn globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.trim_start_matches("./");
        b.add(
            GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("pattern `{p}`: {}", e.kind()))?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

/// Appends the regular files under `dir` to `out`, as paths relative to `root`, sorted
/// by name; symbolic links (to files or directories) are never followed nor listed.
pub(crate) fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let meta = std::fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            walk(root, &entry.path(), out)?;
        } else if meta.is_file() {
            if let Ok(rel) = entry.path().strip_prefix(root) {
                out.push(rel.to_path_buf());
            }
        }
    }
    Ok(())
}

/// Zips the files `spec` selects under `src`; returns the zip and its file count.
pub fn package(src: &Path, spec: &Artifacts) -> Result<(Vec<u8>, usize), String> {
    let base = match &spec.base_directory {
        Some(b) => {
            let rel = Path::new(b.trim_start_matches("./"));
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "artifacts.base-directory `{b}` must be a path inside the source"
                ));
            }
            src.join(rel)
        }
        None => src.to_path_buf(),
    };
    match std::fs::symlink_metadata(&base) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(format!(
                "artifacts.base-directory `{}` does not exist",
                base.display()
            ))
        }
    }
    let include = globs(&spec.files).map_err(|e| format!("artifact {e}"))?;
    let exclude = globs(&spec.exclude_paths).map_err(|e| format!("artifact {e}"))?;
    let mut all = Vec::new();
    walk(&base, &base, &mut all).map_err(|e| format!("cannot list {}: {e}", base.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let mut count = 0;
    let mut names = std::collections::BTreeSet::new();
    for rel in all {
        if !include.is_match(&rel) || exclude.is_match(&rel) {
            continue;
        }
        let name = if spec.discard_paths {
            rel.file_name().map(PathBuf::from).unwrap_or_default()
        } else {
            rel.clone()
        };
        let name = name.to_string_lossy().into_owned();
        if !names.insert(name.clone()) {
            return Err(format!(
                "two files would be stored as `{name}` (discard-paths flattens them)"
            ));
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(base.join(&rel))
            .map_err(|e| format!("cannot read {}: {e}", rel.display()))?;
        // The file's permission bits travel with it (a hook script stays executable);
        // never setuid, setgid or sticky.
        let mode = file
            .metadata()
            .map(|m| m.permissions().mode() & 0o777)
            .map_err(|e| format!("cannot read {}: {e}", rel.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", rel.display()))?;
        zip.start_file(name, options.unix_permissions(mode))
            .map_err(|e| e.to_string())?;
        zip.write_all(&bytes).map_err(|e| e.to_string())?;
        count += 1;
    }
    if count == 0 {
        return Err(format!(
            "no files match artifacts.files {:?} under {}",
            spec.files,
            spec.base_directory.as_deref().unwrap_or("the source root")
        ));
    }
    let cursor = zip.finish().map_err(|e| e.to_string())?;
    Ok((cursor.into_inner(), count))
}

/// Sealed, content-addressed blobs under `DATA/artifacts/`.
#[derive(Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
    master: MasterKey,
}

impl ArtifactStore {
    /// A store in `dir`.
    pub fn new(dir: PathBuf, master: MasterKey) -> ArtifactStore {
        ArtifactStore { dir, master }
    }

    fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(&sha[..2]).join(format!("{sha}.sealed"))
    }

    /// Stores `plain` (once per content) and returns its SHA-256.
    pub fn put(&self, plain: &[u8]) -> Result<String, String> {
        let sha = hex::encode(Sha256::digest(plain));
        let path = self.path(&sha);
        if !path.exists() {
            let dir = path.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let tmp = dir.join(format!(".{sha}.tmp"));
            std::fs::write(&tmp, self.master.seal(plain))
                .map_err(|e| format!("cannot write an artifact: {e}"))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("cannot store an artifact: {e}"))?;
        }
        Ok(sha)
    }

    /// Reads the blob `sha`, refusing it when it was altered.
    pub fn get(&self, sha: &str) -> Result<Vec<u8>, String> {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("bad artifact id".into());
        }
        let sealed =
            std::fs::read(self.path(sha)).map_err(|e| format!("artifact {sha} is missing: {e}"))?;
        let plain = self
            .master
            .open(&sealed)
            .map_err(|e| format!("artifact {sha} refused: {e}"))?;
        if hex::encode(Sha256::digest(&plain)) != sha {
            return Err(format!(
                "artifact {sha} refused: its content does not match its name"
            ));
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "out/app",
            "out/lib/a.so",
            "out/lib/a.so.map",
            "docs/x.md",
            "top.txt",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("out/passwd")).unwrap();
        d
    }

    fn names(zip_bytes: &[u8]) -> Vec<String> {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
        (0..z.len())
            .map(|i| z.by_index(i).unwrap().name().unwrap().to_string())
            .collect()
    }

    fn spec(files: &[&str], base: Option<&str>, discard: bool, exclude: &[&str]) -> Artifacts {
        Artifacts {
            files: files.iter().map(|s| s.to_string()).collect(),
            base_directory: base.map(str::to_string),
            discard_paths: discard,
            exclude_paths: exclude.iter().map(|s| s.to_string()).collect(),
            ..Artifacts::default()
        }
    }

    #[test]
    fn selection_follows_codebuild_rules() {
        let d = tree();
        let (z, n) = package(
            d.path(),
            &spec(&["**/*"], Some("out"), false, &["**/*.map"]),
        )
        .unwrap();
        assert_eq!(names(&z), vec!["app", "lib/a.so"]);
        assert_eq!(n, 2);
        let (z, _) = package(d.path(), &spec(&["*"], None, false, &[])).unwrap();
        assert_eq!(names(&z), vec!["top.txt"], "`*` stays in one directory");
        let (z, _) = package(d.path(), &spec(&["out/lib/*"], None, true, &[])).unwrap();
        assert_eq!(names(&z), vec!["a.so", "a.so.map"]);
        assert!(package(d.path(), &spec(&["nothing"], None, false, &[]))
            .unwrap_err()
            .contains("no files match"));
        assert!(package(d.path(), &spec(&["*"], Some("../x"), false, &[])).is_err());
    }

    #[test]
    fn permission_bits_travel_but_never_setuid() {
        use std::os::unix::fs::PermissionsExt;
        let d = tree();
        let set = |f: &str, mode: u32| {
            std::fs::set_permissions(d.path().join(f), std::fs::Permissions::from_mode(mode))
                .unwrap()
        };
        set("out/app", 0o4755);
        set("top.txt", 0o640);
        let (z, _) = package(d.path(), &spec(&["out/app", "top.txt"], None, false, &[])).unwrap();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
        let mode = |z: &mut zip::ZipArchive<_>, name: &str| {
            z.by_name(name).unwrap().unix_mode().unwrap() & 0o7777
        };
        assert_eq!(mode(&mut z, "out/app"), 0o755);
        assert_eq!(mode(&mut z, "top.txt"), 0o640);
    }

    #[test]
    fn blobs_are_sealed_deduplicated_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(
            d.path().to_path_buf(),
            MasterKey::from_bytes(&[9; 32]).unwrap(),
        );
        let sha = store.put(b"zip bytes, plaintext").unwrap();
        assert_eq!(store.put(b"zip bytes, plaintext").unwrap(), sha);
        let path = store.path(&sha);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(
            !on_disk.windows(9).any(|w| w == b"plaintext"),
            "not stored in the clear"
        );
        assert_eq!(store.get(&sha).unwrap(), b"zip bytes, plaintext");
        let mut bad = on_disk.clone();
        bad[30] ^= 0xff;
        std::fs::write(&path, bad).unwrap();
        assert!(store.get(&sha).unwrap_err().contains("refused"));
    }
}
