//! `buildspec.yml` version 0.2, as CodeBuild reads it, with file:line:column errors.
//!
//! Supported: `version`, `run-as`, `env` (`shell`, `variables`, `parameter-store`,
//! `secrets-manager`, `exported-variables`, `git-credential-helper`), `phases`
//! (`install`, `pre_build`, `build`, `post_build`, each with `run-as`, `on-failure`,
//! `commands`, `finally`; `runtime-versions` in install is accepted and ignored, as the
//! image decides), `artifacts`, `cache`, `reports` (accepted, not processed yet).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::config::{check_size, checked_str, ConfigError};

/// The four phases, in the order they run.
pub const PHASES: [&str; 4] = ["install", "pre_build", "build", "post_build"];

/// A validated buildspec.
#[derive(Debug, Clone, Default)]
pub struct BuildSpec {
    /// User to run every command as (phase `run-as` overrides).
    pub run_as: Option<String>,
    /// The `env` section.
    pub env: Env,
    /// Phases by name; absent phases are skipped.
    pub phases: BTreeMap<String, Phase>,
    /// The `artifacts` section.
    pub artifacts: Option<Artifacts>,
    /// `cache.paths`.
    pub cache_paths: Vec<String>,
}

/// The `env` section.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `bash` (default) or `sh`.
    pub shell: Shell,
    /// Plain variables, in file order.
    pub variables: Vec<(String, String)>,
    /// Variable ← parameter name (slipway's parameter store).
    pub parameter_store: Vec<(String, String)>,
    /// Variable ← secret id (also slipway's parameter store; `id:json-key` picks a key
    /// of a JSON value).
    pub secrets_manager: Vec<(String, String)>,
    /// Variables whose final values the build exports.
    pub exported_variables: Vec<String>,
}

/// The shell commands run in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shell {
    /// `/bin/bash`.
    #[default]
    Bash,
    /// `/bin/sh`.
    Sh,
}

impl Shell {
    /// The program.
    pub fn program(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Sh => "sh",
        }
    }
}

/// What a failed phase does to the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop: go to finalizing.
    Abort,
    /// Run the next phase anyway (the build still fails).
    Continue,
}

/// One phase.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// User for this phase's commands.
    pub run_as: Option<String>,
    /// Explicit failure handling; `None` is CodeBuild's default transition.
    pub on_failure: Option<OnFailure>,
    /// Commands, run one at a time; the first failure skips the rest.
    pub commands: Vec<String>,
    /// Commands run after `commands`, whatever happened.
    pub finally: Vec<String>,
}

/// The `artifacts` section (and each secondary artifact).
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    /// Globs of files to package (relative to `base_directory`).
    pub files: Vec<String>,
    /// Name of the artifact.
    pub name: Option<String>,
    /// Flatten paths to base names.
    pub discard_paths: bool,
    /// Directory whose contents are packaged.
    pub base_directory: Option<String>,
    /// Globs to leave out.
    pub exclude_paths: Vec<String>,
    /// Secondary artifacts by identifier.
    pub secondary: BTreeMap<String, Artifacts>,
}

// ---- raw shapes ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSpec {
    // Checked while reading; accepted keys that slipway does not act on yet are kept
    // under `_` names so typos still fail (deny_unknown_fields) without warnings.
    #[serde(rename = "version")]
    _version: Version,
    #[serde(default)]
    run_as: Option<UserName>,
    #[serde(default)]
    env: Option<RawEnv>,
    #[serde(default, rename = "proxy")]
    _proxy: Option<serde_yaml::Value>,
    #[serde(default, rename = "batch")]
    _batch: Option<serde_yaml::Value>,
    phases: RawPhases,
    #[serde(default, rename = "reports")]
    _reports: Option<serde_yaml::Value>,
    #[serde(default)]
    artifacts: Option<RawArtifacts>,
    #[serde(default)]
    cache: Option<RawCache>,
}

struct Version;
impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |text| {
            if text == "0.2" {
                Ok(Version)
            } else {
                Err(format!(
                    "`{text}` is not supported; slipway runs buildspec version 0.2 (write `version: 0.2`)"
                ))
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEnv {
    #[serde(default)]
    shell: Option<ShellName>,
    #[serde(default)]
    variables: Option<serde_yaml::Mapping>,
    #[serde(default)]
    parameter_store: Option<BTreeMap<VarName, String>>,
    #[serde(default)]
    secrets_manager: Option<BTreeMap<VarName, String>>,
    #[serde(default)]
    exported_variables: Vec<VarName>,
    #[serde(default, rename = "git-credential-helper")]
    _git_credential_helper: Option<serde_yaml::Value>,
}

struct ShellName(Shell);
impl<'de> Deserialize<'de> for ShellName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "bash" | "/bin/bash" => Ok(ShellName(Shell::Bash)),
            "sh" | "/bin/sh" => Ok(ShellName(Shell::Sh)),
            other => Err(format!(
                "shell `{other}` is not supported on Linux; use bash or /bin/sh"
            )),
        })
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct VarName(String);
impl<'de> Deserialize<'de> for VarName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| check_var_name(&s).map(|()| VarName(s)))
    }
}

/// Checks an environment variable name (and the CODEBUILD_ reservation).
pub fn check_var_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(format!("`{s}` is not a valid environment variable name"));
    }
    if s.starts_with("CODEBUILD_") || s.starts_with("SLIPWAY_") {
        return Err(format!(
            "`{s}`: names starting with CODEBUILD_ or SLIPWAY_ are reserved"
        ));
    }
    Ok(())
}

struct UserName(String);
impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let ok = !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if ok {
                Ok(UserName(s))
            } else {
                Err(format!("`{s}` is not a user name"))
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhases {
    #[serde(default)]
    install: Option<RawPhase>,
    #[serde(default)]
    pre_build: Option<RawPhase>,
    #[serde(default)]
    build: Option<RawPhase>,
    #[serde(default)]
    post_build: Option<RawPhase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPhase {
    #[serde(default)]
    run_as: Option<UserName>,
    #[serde(default)]
    on_failure: Option<OnFailureName>,
    #[serde(default, rename = "runtime-versions")]
    _runtime_versions: Option<serde_yaml::Value>,
    #[serde(default)]
    commands: Vec<Command>,
    #[serde(default)]
    finally: Vec<Command>,
}

struct OnFailureName(OnFailure);
impl<'de> Deserialize<'de> for OnFailureName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "ABORT" => Ok(OnFailureName(OnFailure::Abort)),
            "CONTINUE" => Ok(OnFailureName(OnFailure::Continue)),
            other => Err(format!("on-failure `{other}` must be ABORT or CONTINUE")),
        })
    }
}

/// A command: YAML may write `- echo yes` or `- 42`; all are text.
struct Command(String);
impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(Command(s)),
            serde_yaml::Value::Number(n) => Ok(Command(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(Command(b.to_string())),
            _ => Err(serde::de::Error::custom(
                "a command must be text; quote it if it contains `: ` or starts with a special character",
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawArtifacts {
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    discard_paths: Option<YesNo>,
    #[serde(default)]
    base_directory: Option<String>,
    #[serde(default)]
    exclude_paths: Vec<String>,
    #[serde(default, rename = "enable-symlinks")]
    _enable_symlinks: Option<YesNo>,
    #[serde(default, rename = "s3-prefix")]
    _s3_prefix: Option<String>,
    #[serde(default)]
    secondary_artifacts: Option<BTreeMap<String, RawArtifacts>>,
}

/// `yes`/`no`/`true`/`false` as CodeBuild writes them.
struct YesNo(bool);
impl<'de> Deserialize<'de> for YesNo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Bool(b) => Ok(YesNo(b)),
            serde_yaml::Value::String(s) if s == "yes" => Ok(YesNo(true)),
            serde_yaml::Value::String(s) if s == "no" => Ok(YesNo(false)),
            _ => Err(serde::de::Error::custom("write yes or no")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default)]
    paths: Vec<String>,
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn artifacts(raw: RawArtifacts) -> Artifacts {
    Artifacts {
        files: raw.files,
        name: raw.name,
        discard_paths: raw.discard_paths.is_some_and(|y| y.0),
        base_directory: raw.base_directory,
        exclude_paths: raw.exclude_paths,
        secondary: raw
            .secondary_artifacts
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, artifacts(v)))
            .collect(),
    }
}

/// Parses and validates a buildspec (`file` names it in errors).
pub fn parse_buildspec(file: &str, text: &str) -> Result<BuildSpec, ConfigError> {
    check_size(file, text)?;
    let raw: RawSpec = serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(file, e))?;
    let at_key = |key: &str, message: String| {
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{key}:")))
            .map(|i| i + 1)
            .unwrap_or(1);
        ConfigError::at(file, line, 1, message)
    };
    let mut spec = BuildSpec {
        run_as: raw.run_as.map(|u| u.0),
        ..BuildSpec::default()
    };
    if let Some(env) = raw.env {
        spec.env.shell = env.shell.map(|s| s.0).unwrap_or_default();
        for (k, v) in env.variables.unwrap_or_default() {
            let (Some(name), Some(value)) = (scalar_text(&k), scalar_text(&v)) else {
                return Err(at_key(
                    "variables",
                    "env.variables must map names to text values".into(),
                ));
            };
            check_var_name(&name)
                .map_err(|e| at_key("variables", format!("env.variables: {e}")))?;
            spec.env.variables.push((name, value));
        }
        spec.env.parameter_store = env
            .parameter_store
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.0, v))
            .collect();
        spec.env.secrets_manager = env
            .secrets_manager
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.0, v))
            .collect();
        spec.env.exported_variables = env.exported_variables.into_iter().map(|v| v.0).collect();
    }
    let phases = [
        ("install", raw.phases.install),
        ("pre_build", raw.phases.pre_build),
        ("build", raw.phases.build),
        ("post_build", raw.phases.post_build),
    ];
    for (name, phase) in phases {
        if let Some(p) = phase {
            spec.phases.insert(
                name.to_string(),
                Phase {
                    run_as: p.run_as.map(|u| u.0),
                    on_failure: p.on_failure.map(|o| o.0),
                    commands: p.commands.into_iter().map(|c| c.0).collect(),
                    finally: p.finally.into_iter().map(|c| c.0).collect(),
                },
            );
        }
    }
    if let Some(a) = raw.artifacts {
        if a.files.is_empty() {
            return Err(at_key(
                "artifacts",
                "artifacts.files is required (e.g. `files: ['**/*']`)".into(),
            ));
        }
        spec.artifacts = Some(artifacts(a));
    }
    spec.cache_paths = raw.cache.map(|c| c.paths).unwrap_or_default();
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"version: 0.2
run-as: builder
env:
  shell: bash
  variables: { CARGO_TERM_COLOR: "always", N: 3 }
  parameter-store: { LOGIN: /ci/login }
  secrets-manager: { TOKEN: "ci/registry:token" }
  exported-variables: [IMAGE_TAG]
phases:
  install:
    runtime-versions: { python: 3.12 }
    commands: [ "pip --version" ]
  pre_build:
    on-failure: ABORT
    commands:
      - export IMAGE_TAG=$(echo $CODEBUILD_RESOLVED_SOURCE_VERSION | cut -c1-7)
  build:
    commands: [ "make" ]
    finally: [ "echo done" ]
  post_build:
    on-failure: CONTINUE
    commands:
      - '[ "$CODEBUILD_BUILD_SUCCEEDING" = 1 ] || exit 1'
reports:
  unit: { files: [junit.xml] }
artifacts:
  files: [ 'target/release/app', 'scripts/**/*' ]
  name: app
  discard-paths: yes
  base-directory: out
  secondary-artifacts:
    docs: { files: ['**/*'], base-directory: docs }
cache:
  paths: [ 'target/**/*' ]
"#;

    #[test]
    fn a_full_buildspec_parses() {
        let spec = parse_buildspec("buildspec.yml", FULL).unwrap();
        assert_eq!(spec.run_as.as_deref(), Some("builder"));
        assert_eq!(spec.env.variables[1], ("N".to_string(), "3".to_string()));
        assert_eq!(spec.env.exported_variables, vec!["IMAGE_TAG"]);
        assert_eq!(spec.phases.len(), 4);
        assert_eq!(spec.phases["pre_build"].on_failure, Some(OnFailure::Abort));
        assert_eq!(spec.phases["build"].finally, vec!["echo done"]);
        let a = spec.artifacts.unwrap();
        assert!(a.discard_paths);
        assert_eq!(a.secondary["docs"].base_directory.as_deref(), Some("docs"));
        assert_eq!(spec.cache_paths, vec!["target/**/*"]);
    }

    #[test]
    fn other_versions_are_refused_naming_file_and_field() {
        let err = parse_buildspec("buildspec.yml", "version: 0.1\nphases: {}\n").unwrap_err();
        assert_eq!((err.line, err.file.as_str()), (1, "buildspec.yml"));
        assert_eq!(err.column, 10, "{err}");
        assert!(
            err.message.contains("version: `0.1` is not supported"),
            "{err}"
        );
        let err = parse_buildspec("buildspec.yml", "phases: {}\n").unwrap_err();
        assert!(err.message.contains("missing field `version`"), "{err}");
    }

    #[test]
    fn mistakes_are_located() {
        let err = parse_buildspec(
            "b.yml",
            "version: 0.2\nphases:\n  biuld:\n    commands: [x]\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.message.contains("unknown field `biuld`"), "{err}");
        let err = parse_buildspec(
            "b.yml",
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY\n",
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (4, 17), "{err}");
        let err = parse_buildspec(
            "b.yml",
            "version: 0.2\nenv:\n  exported-variables: [CODEBUILD_X]\nphases: {}\n",
        )
        .unwrap_err();
        assert!(err.message.contains("reserved"), "{err}");
        let err = parse_buildspec("b.yml", "version: 0.2\nphases: {}\nartifacts:\n  name: x\n")
            .unwrap_err();
        assert!(err.message.contains("artifacts.files is required"), "{err}");
        assert_eq!(err.line, 3);
    }
}
