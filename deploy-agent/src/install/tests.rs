use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::appspec;

/// A host root, a state file and revisions to install.
struct Host {
    _dir: tempfile::TempDir,
    root: HostRoot,
    cleanup: PathBuf,
    revisions: PathBuf,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root_dir = dir.path().join("root");
        std::fs::create_dir(&root_dir).unwrap_or_else(|e| panic!("{e}"));
        Host {
            root: HostRoot::new(&root_dir).unwrap_or_else(|e| panic!("{e}")),
            cleanup: dir.path().join("cleanup"),
            revisions: dir.path().join("revisions"),
            _dir: dir,
        }
    }

    /// Writes revision `name`: `files` are (path, content) pairs next to appspec.yml.
    fn revision(&self, name: &str, appspec: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.revisions.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("appspec.yml"), appspec).unwrap_or_else(|e| panic!("{e}"));
        for (path, content) in files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(path, content).unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    }

    fn install(&self, archive: &Path) -> Result<InstallReport, InstallError> {
        let spec = appspec::load(archive).unwrap_or_else(|e| panic!("{e}"));
        install(InstallRequest {
            spec: &spec,
            archive,
            root: &self.root,
            cleanup_file: &self.cleanup,
            file_exists_behavior: None,
        })
    }

    fn path(&self, host_path: &str) -> PathBuf {
        self.root.dir().join(host_path.trim_start_matches('/'))
    }

    fn read(&self, host_path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(host_path)).ok()
    }

    fn mode(&self, host_path: &str) -> u32 {
        std::fs::symlink_metadata(self.path(host_path))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or_else(|e| panic!("{host_path}: {e}"))
    }
}

const APP: &str = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /srv/web\n  - source: config/web.toml\n    destination: /etc/web\n";

#[test]
fn installs_then_replaces_what_the_previous_deployment_installed() {
    let host = Host::new();
    let v1 = host.revision(
        "v1",
        APP,
        &[
            ("app/index.html", "v1"),
            ("app/old.html", "old"),
            ("app/css/site.css", "css"),
            ("config/web.toml", "port=1"),
        ],
    );
    let report = host.install(&v1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host.read("/srv/web/index.html").as_deref(), Some("v1"));
    assert_eq!(host.read("/srv/web/css/site.css").as_deref(), Some("css"));
    assert_eq!(host.read("/etc/web/web.toml").as_deref(), Some("port=1"));
    // srv, srv/web, srv/web/css, etc, etc/web.
    assert_eq!(
        (report.files, report.directories, report.removed),
        (4, 5, 0)
    );

    // A file a script made in an installed directory is not the agent's to remove.
    std::fs::write(host.path("/srv/web/cache.db"), "data").unwrap_or_else(|e| panic!("{e}"));

    let v2 = host.revision(
        "v2",
        APP,
        &[("app/index.html", "v2"), ("config/web.toml", "port=2")],
    );
    let report = host.install(&v2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        host.read("/srv/web/index.html").as_deref(),
        Some("v2"),
        "no DISALLOW failure for our own files"
    );
    assert_eq!(
        host.read("/srv/web/old.html"),
        None,
        "the previous revision's file is gone"
    );
    assert!(
        !host.path("/srv/web/css").exists(),
        "and its emptied directory"
    );
    assert_eq!(host.read("/srv/web/cache.db").as_deref(), Some("data"));
    assert_eq!(host.read("/etc/web/web.toml").as_deref(), Some("port=2"));
    // srv/web stayed (cache.db), so it is not created again.
    assert_eq!((report.files, report.directories), (2, 2));
    // Everything but srv/web (cache.db is in it) and srv (so is srv/web).
    assert_eq!(report.removed, 9 - 2);
}

#[test]
fn file_exists_behavior_decides_about_files_someone_else_put_there() {
    let host = Host::new();
    std::fs::create_dir_all(host.path("/srv/web")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(host.path("/srv/web/index.html"), "hand-made").unwrap_or_else(|e| panic!("{e}"));
    let files = [
        ("app/index.html", "new"),
        ("app/other.html", "other"),
        ("config/web.toml", "x"),
    ];

    let disallow = host.revision("disallow", APP, &files);
    let err = host.install(&disallow).unwrap_err();
    let expected = format!(
        "a file already exists at {}",
        host.path("/srv/web/index.html").display()
    );
    assert!(err.to_string().contains(&expected), "{err}");
    assert!(
        err.to_string().contains("file_exists_behavior: OVERWRITE"),
        "{err}"
    );
    assert_eq!(
        host.read("/srv/web/other.html"),
        None,
        "nothing is copied when the plan fails"
    );

    let retain = host.revision(
        "retain",
        &format!("{APP}file_exists_behavior: RETAIN\n"),
        &files,
    );
    let report = host.install(&retain).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        host.read("/srv/web/index.html").as_deref(),
        Some("hand-made")
    );
    assert_eq!(host.read("/srv/web/other.html").as_deref(), Some("other"));
    assert_eq!(report.retained, [host.path("/srv/web/index.html")]);

    let overwrite = host.revision(
        "overwrite",
        &format!("{APP}file_exists_behavior: OVERWRITE\n"),
        &files,
    );
    let report = host.install(&overwrite).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host.read("/srv/web/index.html").as_deref(), Some("new"));
    assert_eq!(report.overwritten, [host.path("/srv/web/index.html")]);

    // The overwritten file is now ours: the next deployment removes it.
    let none = host.revision("none", "version: 0.0\nos: linux\n", &[]);
    host.install(&none).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host.read("/srv/web/index.html"), None);
}

#[test]
fn permissions_apply_to_what_install_created_only() {
    let host = Host::new();
    std::fs::create_dir_all(host.path("/srv/web")).unwrap_or_else(|e| panic!("{e}"));
    let before = host.path("/srv/web/before.sh");
    std::fs::write(&before, "").unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&before, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = format!(
        r#"{APP}permissions:
  - object: /srv/web
    pattern: "**/*.sh"
    except: ["keep.sh"]
    mode: "0750"
    type: [file]
  - object: /srv/web
    mode: "0700"
    type: [directory]
  - object: /etc/web/web.toml
    mode: "0600"
"#
    );
    let rev = host.revision(
        "perm",
        &spec,
        &[
            ("app/run.sh", ""),
            ("app/keep.sh", ""),
            ("app/bin/deep.sh", ""),
            ("app/index.html", ""),
            ("config/web.toml", ""),
        ],
    );
    host.install(&rev).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host.mode("/srv/web/run.sh"), 0o750);
    assert_eq!(host.mode("/srv/web/bin/deep.sh"), 0o750);
    assert_eq!(host.mode("/srv/web/keep.sh"), 0o644, "except");
    assert_eq!(host.mode("/srv/web/index.html"), 0o644, "pattern");
    assert_eq!(host.mode("/srv/web/bin"), 0o700, "created directory");
    assert_eq!(
        host.mode("/srv/web"),
        0o755,
        "existing directory: the object itself is not set"
    );
    assert_eq!(
        host.mode("/srv/web/before.sh"),
        0o644,
        "not created by this install"
    );
    assert_eq!(host.mode("/etc/web/web.toml"), 0o600, "file object");

    let bad =
        format!("{APP}permissions:\n  - object: /etc/web/web.toml\n    pattern: \"*.toml\"\n");
    let rev = host.revision("bad", &bad, &[("app/x", ""), ("config/web.toml", "")]);
    let err = host.install(&rev).unwrap_err();
    assert!(err.to_string().contains("apply to directories"), "{err}");

    let twice = format!("{APP}permissions:\n  - object: /srv/web\n    mode: \"0600\"\n  - object: /srv\n    mode: \"0644\"\n");
    let rev = host.revision("twice", &twice, &[("app/x", ""), ("config/web.toml", "")]);
    let err = host.install(&rev).unwrap_err();
    assert!(err.to_string().contains("more than one entry"), "{err}");
}

#[test]
fn owner_and_group_when_root() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: changing owners needs root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("skipped: no user `nobody`");
        return;
    };
    let host = Host::new();
    let spec = format!("{APP}permissions:\n  - object: /srv/web\n    owner: nobody\n");
    let rev = host.revision("own", &spec, &[("app/x", ""), ("config/web.toml", "")]);
    host.install(&rev).unwrap_or_else(|e| panic!("{e}"));
    let meta = std::fs::metadata(host.path("/srv/web/x")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meta.uid(), nobody.uid.as_raw());

    let spec = format!("{APP}permissions:\n  - object: /srv/web\n    owner: no-such-user-here\n");
    let rev = host.revision("nouser", &spec, &[("app/x", ""), ("config/web.toml", "")]);
    let err = host.install(&rev).unwrap_err();
    assert!(
        err.to_string()
            .contains("owner `no-such-user-here` in permissions does not exist"),
        "{err}"
    );
}

#[test]
fn symlinks_are_copied_as_links_and_never_lead_out() {
    let host = Host::new();
    let spec = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /srv/web\n";
    let rev = host.revision("links", spec, &[("app/v1/index.html", "hi")]);
    std::os::unix::fs::symlink("v1", rev.join("app/current")).unwrap_or_else(|e| panic!("{e}"));
    host.install(&rev).unwrap_or_else(|e| panic!("{e}"));
    let link = std::fs::read_link(host.path("/srv/web/current")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(link, Path::new("v1"));
    assert_eq!(
        host.read("/srv/web/current/index.html").as_deref(),
        Some("hi")
    );

    for (name, target) in [("abs", "/etc/passwd"), ("up", "../../../etc/passwd")] {
        let rev = host.revision(name, spec, &[("app/ok", "")]);
        std::os::unix::fs::symlink(target, rev.join("app/leak")).unwrap_or_else(|e| panic!("{e}"));
        let err = host.install(&rev).unwrap_err();
        assert!(err.to_string().contains("app/leak points to"), "{err}");
        assert!(err.to_string().contains("outside the bundle"), "{err}");
    }

    // A source reached through a symlinked directory that leads out is refused too.
    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(outside.path().join("secret"), "s").unwrap_or_else(|e| panic!("{e}"));
    let spec =
        "version: 0.0\nos: linux\nfiles:\n  - source: out/secret\n    destination: /srv/web\n";
    let rev = host.revision("via-dir", spec, &[]);
    std::os::unix::fs::symlink(outside.path(), rev.join("out")).unwrap_or_else(|e| panic!("{e}"));
    let err = host.install(&rev).unwrap_err();
    assert!(
        err.to_string().contains("files source `out/secret`"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("leads out of the bundle through a symlink"),
        "{err}"
    );
}

#[test]
fn a_missing_source_or_duplicate_destination_is_named() {
    let host = Host::new();
    let spec = "version: 0.0\nos: linux\nfiles:\n  - source: nope\n    destination: /srv\n";
    let rev = host.revision("missing", spec, &[]);
    let err = host.install(&rev).unwrap_err();
    assert!(
        err.to_string()
            .contains("files source `nope`: it does not exist in the bundle"),
        "{err}"
    );

    let spec = "version: 0.0\nos: linux\nfiles:\n  - source: a/x\n    destination: /srv\n  - source: b/x\n    destination: /srv\n";
    let rev = host.revision("dup", spec, &[("a/x", ""), ("b/x", "")]);
    let err = host.install(&rev).unwrap_err();
    assert!(
        err.to_string()
            .contains("is the destination of both a/x and b/x"),
        "{err}"
    );
}

#[test]
fn cleanup_does_not_follow_a_directory_replaced_by_a_symlink() {
    let host = Host::new();
    let spec = "version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: /srv/web\n";
    let rev = host.revision("v1", spec, &[("app/data/file", "x")]);
    host.install(&rev).unwrap_or_else(|e| panic!("{e}"));
    // Someone moves the installed directory away and puts a symlink to another one there.
    let elsewhere = host.path("/elsewhere");
    std::fs::create_dir(&elsewhere).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(elsewhere.join("file"), "precious").unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(host.path("/srv/web/data"), host.path("/moved"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&elsewhere, host.path("/srv/web/data"))
        .unwrap_or_else(|e| panic!("{e}"));
    let empty = host.revision("v2", "version: 0.0\nos: linux\n", &[]);
    host.install(&empty).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("file"))
            .ok()
            .as_deref(),
        Some("precious")
    );
}
