//! `slipway init`: create a data directory. Running it again changes nothing that exists.

use std::path::Path;

use anyhow::{bail, Context};
use russh::keys::PublicKey;

use crate::access::config_check_name;
use crate::adminconfig::{seed_access_yaml, ACCESS_FILE, ADMIN_REPO};
use crate::datadir::DataDir;
use crate::git::{RepoName, RepoStore, DEFAULT_BRANCH};

/// What `init` did, for the message it prints.
pub struct InitReport {
    /// Lines describing each step.
    pub lines: Vec<String>,
}

/// Creates (or completes) the data directory with `admin_name` as administrator.
pub fn init(data: &DataDir, admin_key_file: &Path, admin_name: &str) -> anyhow::Result<InitReport> {
    config_check_name(admin_name).map_err(|e| anyhow::anyhow!("--admin-name: {e}"))?;
    let key_text = std::fs::read_to_string(admin_key_file).with_context(|| {
        format!(
            "cannot read the admin key {}; pass a public key file such as ~/.ssh/id_ed25519.pub",
            admin_key_file.display()
        )
    })?;
    let key_line = key_text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if key_line.contains("PRIVATE KEY") {
        bail!(
            "{} is a private key; pass the public key (the .pub file) instead",
            admin_key_file.display()
        );
    }
    PublicKey::from_openssh(key_line).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an OpenSSH public key ({e}); pass a file such as ~/.ssh/id_ed25519.pub",
            admin_key_file.display()
        )
    })?;
    let mut lines = Vec::new();
    for dir in [
        data.root().to_path_buf(),
        data.keys(),
        data.repos(),
        data.run(),
    ] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    set_private(&data.keys())?;
    if data.settings().exists() {
        lines.push(format!("kept      {}", data.settings().display()));
    } else {
        std::fs::write(data.settings(), include_str!("../../etc/slipway.yaml"))
            .with_context(|| format!("cannot write {}", data.settings().display()))?;
        lines.push(format!("created   {}", data.settings().display()));
    }
    if crate::ssh::generate_host_key(&data.host_key())? {
        lines.push(format!(
            "created   {} (SSH host key)",
            data.host_key().display()
        ));
    } else {
        lines.push(format!("kept      {}", data.host_key().display()));
    }
    slipway_actors::Store::open(&data.database())?;
    lines.push(format!("ready     {}", data.database().display()));
    let repos = RepoStore::new(data.repos());
    let admin = RepoName::parse(ADMIN_REPO).expect("valid name");
    if repos.exists(&admin) {
        lines.push(format!(
            "kept      {} (the admin repository exists; its access.yaml is unchanged)",
            repos.path(&admin).display()
        ));
    } else {
        repos.create(&admin)?;
        let access = seed_access_yaml(admin_name, key_line);
        repos.commit_files(
            &admin,
            DEFAULT_BRANCH,
            &[(ACCESS_FILE, access.as_bytes())],
            &format!("slipway init: make {admin_name} the administrator"),
        )?;
        lines.push(format!(
            "created   {} with access.yaml: {admin_name} is the administrator",
            repos.path(&admin).display()
        ));
    }
    Ok(InitReport { lines })
}

fn set_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))
}
