//! The admin configuration: YAML files in the `admin` repository's `main` branch.
//!
//! The running server keeps the validated configuration in memory ([`AdminState`]) and
//! swaps it after an accepted push to `admin`, so the next request sees the change
//! without a restart. Pushes are validated in pre-receive, from git's quarantine,
//! with the same code `slipway check` uses.

mod seed;

use std::path::Path;
use std::sync::{Arc, RwLock};

use slipway_actors::config::builds::{parse_builds_yaml, BuildsConfig, BUILDS_FILE};
use slipway_actors::config::deploy::{parse_deploy_yaml, DeployConfig, DEPLOY_FILE};
use slipway_actors::config::rules::{parse_rules_yaml, RulesConfig, RulesContext, RULES_FILE};

use crate::access::{parse_access_yaml, AccessConfig, ConfigError};
use crate::git::{read_file_at, Quarantine};

pub use seed::seed_access_yaml;

/// The repository holding the admin files.
pub const ADMIN_REPO: &str = "admin";
/// The branch whose tip is the live configuration.
pub const ADMIN_REF: &str = "refs/heads/main";
/// Who may do what.
pub const ACCESS_FILE: &str = "access.yaml";

/// The admin files, validated together.
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    /// `access.yaml`.
    pub access: AccessConfig,
    /// `rules.yaml` (empty when the file does not exist).
    pub rules: Arc<RulesConfig>,
    /// `builds.yaml` (defaults when the file does not exist).
    pub builds: Arc<BuildsConfig>,
    /// `deploy.yaml` (no applications when the file does not exist).
    pub deploy: Arc<DeployConfig>,
}

/// A validated configuration and the commit it came from.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `access.yaml`.
    pub access: AccessConfig,
    /// `rules.yaml`.
    pub rules: Arc<RulesConfig>,
    /// `builds.yaml`.
    pub builds: Arc<BuildsConfig>,
    /// `deploy.yaml`.
    pub deploy: Arc<DeployConfig>,
    /// The admin commit it was read from.
    pub commit: String,
    /// Key fingerprint → user name, for authentication without scanning.
    pub keys: std::collections::HashMap<String, String>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file is invalid.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// A required file is missing from the commit.
    #[error("{file} is missing from the admin repository's main branch; restore it")]
    Missing {
        /// The file.
        file: &'static str,
    },
    /// The file is not UTF-8.
    #[error("{file} is not UTF-8 text")]
    NotText {
        /// The file.
        file: &'static str,
    },
    /// git could not be run.
    #[error("cannot read the admin repository: {0}")]
    Io(#[from] std::io::Error),
}

/// Validates the admin files at `rev` (an object id or ref) of the admin repository at
/// `repo`, reading from the push quarantine when one is given.
pub async fn load_at(
    git: &str,
    repo: &Path,
    rev: &str,
    quarantine: Option<&Quarantine>,
) -> Result<ConfigFiles, LoadError> {
    let bytes = read_file_at(git, repo, rev, ACCESS_FILE, quarantine)
        .await?
        .ok_or(LoadError::Missing { file: ACCESS_FILE })?;
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText { file: ACCESS_FILE })?;
    let access = parse_access_yaml(ACCESS_FILE, &text)?;
    let rules = match read_file_at(git, repo, rev, RULES_FILE, quarantine).await? {
        None => RulesConfig::default(),
        Some(bytes) => {
            let text =
                String::from_utf8(bytes).map_err(|_| LoadError::NotText { file: RULES_FILE })?;
            let context = RulesContext {
                users: access
                    .users
                    .iter()
                    .map(|(name, u)| (name.clone(), u.email.is_some()))
                    .collect(),
            };
            parse_rules_yaml(RULES_FILE, &text, &context)?
        }
    };
    let builds = match read_file_at(git, repo, rev, BUILDS_FILE, quarantine).await? {
        None => BuildsConfig::default(),
        Some(bytes) => {
            let text =
                String::from_utf8(bytes).map_err(|_| LoadError::NotText { file: BUILDS_FILE })?;
            parse_builds_yaml(BUILDS_FILE, &text)?
        }
    };
    let deploy = match read_file_at(git, repo, rev, DEPLOY_FILE, quarantine).await? {
        None => DeployConfig::default(),
        Some(bytes) => {
            let text =
                String::from_utf8(bytes).map_err(|_| LoadError::NotText { file: DEPLOY_FILE })?;
            parse_deploy_yaml(DEPLOY_FILE, &text)?
        }
    };
    Ok(ConfigFiles {
        access,
        rules: Arc::new(rules),
        builds: Arc::new(builds),
        deploy: Arc::new(deploy),
    })
}

/// Loads the live configuration: the tip of the admin repository's main branch.
pub async fn load_current(git: &str, repo: &Path) -> Result<AdminConfig, LoadError> {
    let commit = resolve(git, repo, ADMIN_REF).await?;
    let files = load_at(git, repo, &commit, None).await?;
    let keys = crate::state::key_index(&files.access);
    Ok(AdminConfig {
        access: files.access,
        rules: files.rules,
        builds: files.builds,
        deploy: files.deploy,
        commit,
        keys,
    })
}

async fn resolve(git: &str, repo: &Path, refname: &str) -> Result<String, LoadError> {
    let out = tokio::process::Command::new(git)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{refname}^{{commit}}"))
        .output()
        .await?;
    if !out.status.success() {
        return Err(LoadError::Missing { file: ACCESS_FILE });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The live configuration, swapped atomically on reload.
pub struct AdminState {
    current: RwLock<Arc<AdminConfig>>,
}

impl AdminConfig {
    /// User name → email address, for `user:NAME` recipients.
    pub fn emails(&self) -> std::collections::HashMap<String, String> {
        self.access
            .users
            .iter()
            .filter_map(|(name, u)| u.email.clone().map(|e| (name.clone(), e)))
            .collect()
    }
}

impl AdminConfig {
    /// Users' addresses and group members, for pipeline approvals.
    pub fn people(&self) -> slipway_actors::pipeline::advance::People {
        let mut groups: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (name, u) in &self.access.users {
            for g in &u.groups {
                groups.entry(g.clone()).or_default().push(name.clone());
            }
        }
        let access = std::sync::Arc::new(self.access.clone());
        let may_approve = move |user: &str, pipeline: &str, repo: &str| {
            use crate::access::Resource;
            access
                .evaluate(
                    user,
                    "pipeline:approve",
                    &Resource::other("pipeline", pipeline),
                )
                .allowed()
                && access
                    .evaluate(user, "git:pull", &Resource::repo(repo))
                    .allowed()
        };
        slipway_actors::pipeline::advance::People {
            emails: self.emails(),
            groups,
            may_approve: Some(std::sync::Arc::new(may_approve)),
        }
    }
}

impl AdminState {
    /// Starts with `config`.
    pub fn new(config: AdminConfig) -> AdminState {
        AdminState {
            current: RwLock::new(Arc::new(config)),
        }
    }

    /// The configuration now in force.
    pub fn get(&self) -> Arc<AdminConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `config` in force for every later request.
    pub fn replace(&self, config: AdminConfig) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClNSwlLOKV1n7gN5ORwrQv0ItlVvibQURHxkB4k8rLr admin@test";

    fn git(repo: &Path, args: &[&str], input: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("git")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.test")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.test")
            .arg("--git-dir")
            .arg(repo)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git runs");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.unwrap_or_default())
            .expect("git reads");
        drop(stdin);
        let out = child.wait_with_output().expect("git ends");
        assert!(out.status.success(), "git {args:?} failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A commit in a new bare repository holding a valid access.yaml and `files`.
    fn admin_commit(dir: &Path, files: &[(&str, &[u8])]) -> (std::path::PathBuf, String) {
        let repo = dir.join("admin.git");
        let status = std::process::Command::new("git")
            .args(["init", "--quiet", "--bare"])
            .arg(&repo)
            .status()
            .expect("git init runs");
        assert!(status.success());
        let access = seed_access_yaml("root", KEY);
        let mut tree = String::new();
        for (name, bytes) in [(ACCESS_FILE, access.as_bytes())]
            .into_iter()
            .chain(files.iter().copied())
        {
            let blob = git(&repo, &["hash-object", "-w", "--stdin"], Some(bytes));
            tree.push_str(&format!("100644 blob {blob}\t{name}\n"));
        }
        let tree = git(&repo, &["mktree"], Some(tree.as_bytes()));
        let commit = git(&repo, &["commit-tree", &tree, "-m", "config"], None);
        (repo, commit)
    }

    async fn load(files: &[(&str, &[u8])]) -> Result<ConfigFiles, LoadError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (repo, commit) = admin_commit(dir.path(), files);
        load_at("git", &repo, &commit, None).await
    }

    #[tokio::test]
    async fn deploy_yaml_is_optional() {
        let files = load(&[]).await.unwrap();
        assert!(files.deploy.applications.is_empty());
    }

    #[tokio::test]
    async fn deploy_yaml_is_loaded() {
        let text = "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n        config: all-at-once\n";
        let files = load(&[(DEPLOY_FILE, text.as_bytes())]).await.unwrap();
        let group = files.deploy.group("web", "prod").expect("web/prod");
        assert_eq!(
            group.config,
            slipway_actors::config::deploy::DeploymentConfig::AllAtOnce
        );
    }

    /// What a push of an invalid deploy.yaml to the admin repository is refused with.
    #[tokio::test]
    async fn an_invalid_deploy_yaml_is_refused_with_its_location() {
        let text = "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n        config: two-at-a-time\n";
        let err = load(&[(DEPLOY_FILE, text.as_bytes())]).await.unwrap_err();
        assert!(matches!(err, LoadError::Invalid(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("deploy.yaml:6:17: "), "{message}");
        assert!(message.contains("must be one-at-a-time"), "{message}");

        let err = load(&[(DEPLOY_FILE, b"\xff\xfe")]).await.unwrap_err();
        assert!(
            matches!(err, LoadError::NotText { file: DEPLOY_FILE }),
            "{err:?}"
        );
    }
}
