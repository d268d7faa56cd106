//! `buildspec.yml` version 0.2, as CodeBuild reads it, with file:line:column errors.
//!
//! Supported: `version`, `run-as`, `env` (`shell`, `variables`, `parameter-store`,
//! `secrets-manager`, `exported-variables`, `git-credential-helper`), `phases`
//! (`install`, `pre_build`, `build`, `post_build`, each with `run-as`, `on-failure`,
//! `commands`, `finally`; `runtime-versions` in install is accepted and ignored, as the
//! image decides), `artifacts`, `cache`, `reports` (report groups in file order, each with
//! `files`, `base-directory`, `file-format` and `discard-paths`, which is accepted and
//! ignored; [`super::reports`] reads the files).

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
    /// The `reports` section: report groups, in file order.
    pub reports: Vec<ReportGroup>,
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

/// One report group of the `reports` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportGroup {
    /// The report group's name (a name or an ARN, as CodeBuild allows).
    pub name: String,
    /// Globs of report files, relative to `base_directory` (or the source root).
    pub files: Vec<String>,
    /// Directory the globs are relative to.
    pub base_directory: Option<String>,
    /// How the files are written.
    pub file_format: ReportFormat,
}

/// `file-format` of a report group: CodeBuild's test formats, then its code coverage
/// formats (accepted so that CodeBuild buildspecs parse; see [`super::reports`] for
/// which are read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReportFormat {
    /// `JUNITXML` (the default).
    #[default]
    JunitXml,
    /// `CUCUMBERJSON`.
    CucumberJson,
    /// `TESTNGXML`.
    TestNgXml,
    /// `VISUALSTUDIOTRX`.
    VisualStudioTrx,
    /// `NUNITXML` (NUnit 2).
    NunitXml,
    /// `NUNIT3XML`.
    Nunit3Xml,
    /// `CLOVERXML` (code coverage).
    CloverXml,
    /// `COBERTURAXML` (code coverage).
    CoberturaXml,
    /// `JACOCOXML` (code coverage).
    JacocoXml,
    /// `SIMPLECOV` (code coverage).
    SimpleCov,
}

impl ReportFormat {
    /// Every format, in the order error messages list them.
    pub const ALL: [ReportFormat; 10] = [
        ReportFormat::JunitXml,
        ReportFormat::CucumberJson,
        ReportFormat::TestNgXml,
        ReportFormat::VisualStudioTrx,
        ReportFormat::NunitXml,
        ReportFormat::Nunit3Xml,
        ReportFormat::CloverXml,
        ReportFormat::CoberturaXml,
        ReportFormat::JacocoXml,
        ReportFormat::SimpleCov,
    ];

    /// The name a buildspec writes.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::JunitXml => "JUNITXML",
            ReportFormat::CucumberJson => "CUCUMBERJSON",
            ReportFormat::TestNgXml => "TESTNGXML",
            ReportFormat::VisualStudioTrx => "VISUALSTUDIOTRX",
            ReportFormat::NunitXml => "NUNITXML",
            ReportFormat::Nunit3Xml => "NUNIT3XML",
            ReportFormat::CloverXml => "CLOVERXML",
            ReportFormat::CoberturaXml => "COBERTURAXML",
            ReportFormat::JacocoXml => "JACOCOXML",
            ReportFormat::SimpleCov => "SIMPLECOV",
        }
    }
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
    #[serde(default)]
    reports: Option<RawReports>,
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
        // A visitor rather than a `Value`, so that a wrong value is reported at its own
        // position, not at the enclosing map.
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = YesNo;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("yes or no")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<YesNo, E> {
                Ok(YesNo(b))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<YesNo, E> {
                match s {
                    "yes" => Ok(YesNo(true)),
                    "no" => Ok(YesNo(false)),
                    _ => Err(E::custom("write yes or no")),
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The `reports` map, in file order, each name once.
struct RawReports(Vec<(String, RawReportGroup)>);
impl<'de> Deserialize<'de> for RawReports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Groups;
        impl<'de> serde::de::Visitor<'de> for Groups {
            type Value = RawReports;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of report group names to report groups")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawReports, A::Error> {
                let mut groups: Vec<(String, RawReportGroup)> = Vec::new();
                while let Some(name) = map.next_key::<ReportGroupName>()? {
                    if groups.iter().any(|(n, _)| *n == name.0) {
                        return Err(serde::de::Error::custom(format!(
                            "report group `{}` is defined twice",
                            name.0
                        )));
                    }
                    groups.push((name.0, map.next_value()?));
                }
                Ok(RawReports(groups))
            }
        }
        d.deserialize_map(Groups)
    }
}

/// A report group name or ARN: printable text, at most 256 bytes.
struct ReportGroupName(String);
impl<'de> Deserialize<'de> for ReportGroupName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            if s.trim().is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
                Err(format!(
                    "report group name `{}` must be printable text of at most 256 bytes",
                    s.escape_default()
                ))
            } else {
                Ok(ReportGroupName(s))
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawReportGroup {
    files: ReportFiles,
    #[serde(default)]
    base_directory: Option<BaseDirectory>,
    #[serde(default, rename = "discard-paths")]
    _discard_paths: Option<YesNo>,
    #[serde(default)]
    file_format: Option<ReportFormatName>,
}

/// `files` of a report group: at least one glob, each checked as the selection reads it.
struct ReportFiles(Vec<String>);
impl<'de> Deserialize<'de> for ReportFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let files: Vec<Glob> = Vec::deserialize(d)?;
        if files.is_empty() {
            return Err(serde::de::Error::custom(
                "a report group's files must name at least one glob (e.g. `files: ['**/*.xml']`)",
            ));
        }
        Ok(ReportFiles(files.into_iter().map(|g| g.0).collect()))
    }
}

struct Glob(String);
impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            super::artifacts::globs(std::slice::from_ref(&s))
                .map(|_| Glob(s))
                .map_err(|e| format!("report {e}"))
        })
    }
}

/// A directory inside the source: relative, without `..`.
struct BaseDirectory(String);
impl<'de> Deserialize<'de> for BaseDirectory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let p = std::path::Path::new(&s);
            if p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                Err(format!(
                    "base-directory `{s}` must be a path inside the source"
                ))
            } else {
                Ok(BaseDirectory(s))
            }
        })
    }
}

struct ReportFormatName(ReportFormat);
impl<'de> Deserialize<'de> for ReportFormatName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            ReportFormat::ALL
                .into_iter()
                .find(|f| f.name() == s)
                .map(ReportFormatName)
                .ok_or_else(|| {
                    let names: Vec<_> = ReportFormat::ALL.iter().map(|f| f.name()).collect();
                    format!("file-format `{s}` is not one of {}", names.join(", "))
                })
        })
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
    spec.reports = raw
        .reports
        .map(|r| r.0)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, g)| ReportGroup {
            name,
            files: g.files.0,
            base_directory: g.base_directory.map(|b| b.0),
            file_format: g.file_format.map(|f| f.0).unwrap_or_default(),
        })
        .collect();
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
        assert_eq!(
            spec.reports,
            vec![ReportGroup {
                name: "unit".into(),
                files: vec!["junit.xml".into()],
                base_directory: None,
                file_format: ReportFormat::JunitXml,
            }]
        );
    }

    #[test]
    fn report_groups_keep_file_order() {
        let spec = parse_buildspec(
            "buildspec.yml",
            r#"version: 0.2
phases: {}
reports:
  unit-tests:
    files:
      - "**/*.xml"
    base-directory: target/surefire-reports
    discard-paths: no
    file-format: JUNITXML
  arn:aws:codebuild:eu-west-1:123456789012:report-group/it:
    files: ['testng-results.xml']
    file-format: TESTNGXML
  coverage:
    files: [ coverage.xml ]
    discard-paths: yes
    file-format: COBERTURAXML
  nunit: { files: [ 'TestResult.xml' ], file-format: NUNIT3XML }
"#,
        )
        .unwrap();
        let names: Vec<_> = spec.reports.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "unit-tests",
                "arn:aws:codebuild:eu-west-1:123456789012:report-group/it",
                "coverage",
                "nunit"
            ]
        );
        assert_eq!(spec.reports[0].files, vec!["**/*.xml"]);
        assert_eq!(
            spec.reports[0].base_directory.as_deref(),
            Some("target/surefire-reports")
        );
        let formats: Vec<_> = spec.reports.iter().map(|r| r.file_format).collect();
        assert_eq!(
            formats,
            vec![
                ReportFormat::JunitXml,
                ReportFormat::TestNgXml,
                ReportFormat::CoberturaXml,
                ReportFormat::Nunit3Xml
            ]
        );
        for empty in ["reports:\n", "reports: {}\n"] {
            let text = format!("version: 0.2\nphases: {{}}\n{empty}");
            assert!(parse_buildspec("b.yml", &text).unwrap().reports.is_empty());
        }
    }

    #[test]
    fn report_mistakes_are_located() {
        let err = |group: &str| {
            let text = format!("version: 0.2\nphases: {{}}\nreports:\n  unit:\n{group}");
            parse_buildspec("b.yml", &text).unwrap_err()
        };
        let e = err("    files: [a.xml]\n    file-format: JUNIT\n");
        assert_eq!((e.file.as_str(), e.line, e.column), ("b.yml", 6, 18), "{e}");
        assert!(
            e.message.contains(
                "file-format `JUNIT` is not one of JUNITXML, CUCUMBERJSON, TESTNGXML, \
                 VISUALSTUDIOTRX, NUNITXML, NUNIT3XML, CLOVERXML, COBERTURAXML, JACOCOXML, SIMPLECOV"
            ),
            "{e}"
        );
        let e = err("    files: [a.xml]\n    exclude-paths: [b.xml]\n");
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("unknown field `exclude-paths`"), "{e}");
        let e = err("    base-directory: out\n");
        assert!(e.message.contains("missing field `files`"), "{e}");
        assert_eq!(e.line, 5, "{e}");
        let e = err("    files: []\n");
        assert!(e.message.contains("at least one glob"), "{e}");
        assert_eq!(e.line, 5, "{e}");
        let e = err("    files: ['ok', 'a/[b']\n");
        assert_eq!((e.line, e.column), (5, 19), "{e}");
        assert!(e.message.contains("report pattern `a/[b`"), "{e}");
        let e = err("    files: [x]\n    base-directory: ../elsewhere\n");
        assert_eq!((e.line, e.column), (6, 21), "{e}");
        assert!(
            e.message.contains("must be a path inside the source"),
            "{e}"
        );
        let e = err("    files: [x]\n    discard-paths: maybe\n");
        assert_eq!((e.line, e.column), (6, 20), "{e}");
        assert!(e.message.contains("write yes or no"), "{e}");
        let e = err("    files: [x]\n    discard-paths: 1\n");
        assert_eq!((e.line, e.column), (6, 20), "{e}");
        let e = err("    files: [x]\n  unit:\n    files: [y]\n");
        assert!(
            e.message.contains("report group `unit` is defined twice"),
            "{e}"
        );
        let e = parse_buildspec(
            "b.yml",
            "version: 0.2\nphases: {}\nreports:\n  '': { files: [x] }\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (4, 3), "{e}");
        assert!(e.message.contains("report group name"), "{e}");
        let e = parse_buildspec("b.yml", "version: 0.2\nphases: {}\nreports: [x]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("a map of report group names"), "{e}");
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
