//! `pipeline.yml`: a repository's release process, validated with file:line:column errors.
//!
//! ```yaml
//! name: web
//! execution-mode: superseded          # superseded (default) | queued | parallel
//! triggers:                           # default: pushes to the default branch
//!   - push: { branches: { include: [main, "release/*"] }, paths: { exclude: ["docs/**"] } }
//!   - push: { tags: { include: ["v*"] } }
//! variables: { DEPLOY_ENV: staging }
//! stages:
//!   - name: build
//!     actions:
//!       - { name: compile, build: { buildspec: buildspec.yml }, outputs: [app], namespace: B }
//!       - { name: lint, build: { buildspec: buildspec-lint.yml } }
//!   - name: approve
//!     actions:
//!       - { name: gate, approval: { approvers: ["group:release"], timeout: 24h, message: "Ship #{B.IMAGE_TAG}?" } }
//!   - name: deploy
//!     on-failure: rollback
//!     actions:
//!       - { name: prod, deploy: { application: web, group: prod }, inputs: [app] }
//! ```
//!
//! Cross-references are checked while the file is read, in document order, so each
//! problem is reported at the value that causes it: names unique (stages in the
//! pipeline, actions in their stage, outputs and namespaces in the pipeline), every input
//! produced by an earlier action (in an earlier stage, or in the same stage with a lower
//! `run-order`), every `#{namespace.VARIABLE}` naming `source`, `pipeline`, `variables`
//! or the namespace of an earlier action.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::{check_size, checked_str, parse_duration, ConfigError};

use super::triggers::{Filter, Trigger};

/// The file's name in a repository.
pub const PIPELINE_FILE: &str = "pipeline.yml";

/// The implicit source stage's artifact (the pushed commit's tree) and namespace.
pub const SOURCE: &str = "source";

/// A validated pipeline definition.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The pipeline's name (unique per server; commands address it by this name).
    pub name: String,
    /// How executions share the stages.
    pub mode: ExecutionMode,
    /// When a push starts an execution (empty: pushes to the default branch).
    pub triggers: Vec<Trigger>,
    /// Pipeline variables with their defaults (`#{variables.NAME}`).
    pub variables: BTreeMap<String, String>,
    /// The stages after the implicit source stage, in order.
    pub stages: Vec<Stage>,
}

/// How executions share the stages (CodePipeline's execution modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// One execution per stage; a newer execution replaces one waiting between stages.
    #[default]
    Superseded,
    /// One execution per stage, in arrival order.
    Queued,
    /// Executions run independently.
    Parallel,
}

/// What a failed stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// The execution fails.
    #[default]
    Fail,
    /// The stage's failed actions run once more.
    Retry,
    /// The stage runs again with the last execution that succeeded in it.
    Rollback,
}

/// One stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Unique in the pipeline.
    pub name: String,
    /// What a failure does.
    pub on_failure: OnFailure,
    /// Actions in file order; equal `run_order` run at the same time.
    pub actions: Vec<Action>,
}

/// One action.
#[derive(Debug, Clone)]
pub struct Action {
    /// Unique in its stage.
    pub name: String,
    /// Groups run in ascending order; equal numbers run in parallel.
    pub run_order: u32,
    /// What it does.
    pub kind: ActionKind,
    /// Artifacts it takes (`source` or earlier outputs).
    pub inputs: Vec<String>,
    /// Artifacts it produces.
    pub outputs: Vec<String>,
    /// Where its variables are published (`#{namespace.NAME}`).
    pub namespace: Option<String>,
}

/// The action types.
#[derive(Debug, Clone)]
pub enum ActionKind {
    /// A build of a buildspec in the input artifact.
    Build {
        /// The buildspec's path in the first input.
        buildspec: String,
        /// Extra environment variables (values may use `#{…}`).
        env: BTreeMap<String, String>,
    },
    /// A person approves or rejects.
    Approval {
        /// `user:NAME`, `group:NAME` (a bare name is a user).
        approvers: Vec<String>,
        /// After this the action fails.
        timeout: Duration,
        /// Shown to the approvers (may use `#{…}`).
        message: String,
    },
    /// A deployment of the input artifact.
    Deploy {
        /// The deployment application.
        application: String,
        /// Its deployment group.
        group: String,
    },
}

impl ActionKind {
    /// The type's name, as in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::Build { .. } => "build",
            ActionKind::Approval { .. } => "approval",
            ActionKind::Deploy { .. } => "deploy",
        }
    }
}

const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);
const MIN_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses and validates `text`, read from `file`.
pub fn parse_pipeline(file: &str, text: &str) -> Result<PipelineSpec, ConfigError> {
    check_size(file, text)?;
    // Pipeline variables may be declared after the stages that use them: learn their
    // names first (mistakes in them are reported by the full read below).
    #[derive(Deserialize)]
    struct Names {
        #[serde(default)]
        variables: BTreeMap<String, serde_yaml::Value>,
    }
    let variables: HashSet<String> = serde_yaml::from_str::<Names>(text)
        .map(|n| n.variables.into_keys().collect())
        .unwrap_or_default();
    CHECK.with(|c| {
        *c.borrow_mut() = Check {
            variables,
            ..Check::default()
        }
    });
    let parsed = serde_yaml::from_str::<RawPipeline>(text);
    CHECK.with(|c| *c.borrow_mut() = Check::default());
    let raw = parsed.map_err(|e| ConfigError::from_yaml(file, e))?;
    let whole = |message: String| ConfigError::at(file, 1, 1, message);
    if raw.stages.is_empty() {
        return Err(whole(
            "a pipeline needs at least one stage after the implicit source stage: add `stages:`"
                .into(),
        ));
    }
    let mode = raw.execution_mode.map(|m| m.0).unwrap_or_default();
    if mode == ExecutionMode::Parallel {
        if let Some(stage) = raw
            .stages
            .iter()
            .find(|s| s.on_failure == OnFailure::Rollback)
        {
            return Err(whole(format!(
                "stage `{}` rolls back on failure, which execution-mode parallel does not allow (executions do not take turns in a stage); use superseded or queued",
                stage.name
            )));
        }
    }
    Ok(PipelineSpec {
        name: raw.name.0,
        mode,
        triggers: raw.triggers.into_iter().map(|t| t.push).collect(),
        variables: raw.variables.into_iter().map(|(k, v)| (k.0, v)).collect(),
        stages: raw.stages,
    })
}

// ---- document-order checks -------------------------------------------------------------

thread_local! {
    static CHECK: RefCell<Check> = RefCell::new(Check::default());
}

/// What the file declared so far (document order).
#[derive(Default)]
struct Check {
    stages: HashSet<String>,
    /// Index of the current stage (counts from 1 once one started).
    stage: usize,
    /// Action names in the current stage.
    actions: HashSet<String>,
    /// Index of the current action in the file (counts from 1).
    action: usize,
    /// The current action's run-order, once read.
    run_order: Option<u32>,
    /// Inputs (and `#{namespace}` uses) of the current action produced in the same stage:
    /// (what, producer's run-order), checked once the action's run-order is known.
    same_stage_inputs: Vec<(String, u32)>,
    /// Output → (stage, action, action's run-order once known).
    outputs: HashMap<String, (usize, usize)>,
    /// Run-order of every finished action.
    run_orders: HashMap<usize, u32>,
    /// Namespace → (stage, action).
    namespaces: HashMap<String, (usize, usize)>,
    /// Pipeline variables.
    variables: HashSet<String>,
}

fn with_check<T>(f: impl FnOnce(&mut Check) -> T) -> T {
    CHECK.with(|c| f(&mut c.borrow_mut()))
}

/// A name as slipway writes them: letters, digits, `-`, `_`, `.`; at most 100.
fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{s}` is not a valid name: use letters, digits, `-`, `_` and `.` (starting with a letter or digit, at most 100)"
        ))
    }
}

/// Checks every `#{namespace.NAME}` in `text` against what was declared before.
fn check_references(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "`{text}` opens `#{{` without closing it; write `#{{namespace.NAME}}`"
            ));
        };
        let reference = &after[..end];
        let Some((ns, var)) = reference.split_once('.') else {
            return Err(format!(
                "`#{{{reference}}}` needs a namespace: write `#{{namespace.NAME}}` (e.g. `#{{source.CommitId}}`)"
            ));
        };
        if var.is_empty() {
            return Err(format!("`#{{{reference}}}` names no variable"));
        }
        let known = with_check(|c| {
            match ns {
            SOURCE | "pipeline" => Ok(true),
            "variables" => Ok(c.variables.contains(var)),
            _ => match c.namespaces.get(ns).copied() {
                None => Ok(false),
                Some((_, action)) if action == c.action => Err(format!(
                    "`#{{{reference}}}`: this action's own namespace has no values before it ends; use it in a later action"
                )),
                Some((stage, action)) if stage == c.stage => {
                    // Values exist only once that action ended: it must run earlier.
                    let producer = c.run_orders.get(&action).copied().unwrap_or(1);
                    match c.run_order {
                        Some(mine) if mine <= producer => Err(format!(
                            "`#{{{reference}}}` comes from an action of this stage with run-order {producer}; give this action a higher run-order or move it to a later stage"
                        )),
                        Some(_) => Ok(true),
                        None => {
                            c.same_stage_inputs.push((format!("#{{{ns}}}"), producer));
                            Ok(true)
                        }
                    }
                }
                Some(_) => Ok(true),
            },
        }
        })?;
        if !known {
            return Err(if ns == "variables" {
                format!("`#{{{reference}}}`: the pipeline declares no variable `{var}` under `variables:`")
            } else {
                format!(
                    "`#{{{reference}}}`: no earlier action has namespace `{ns}` (known: source, pipeline, variables and the namespaces of earlier actions)"
                )
            });
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

// ---- the raw file ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: PipelineName,
    #[serde(rename = "execution-mode")]
    execution_mode: Option<Mode>,
    #[serde(default)]
    triggers: Vec<RawTrigger>,
    #[serde(default)]
    variables: BTreeMap<VariableName, String>,
    #[serde(default)]
    stages: Vec<Stage>,
}

struct PipelineName(String);
impl<'de> Deserialize<'de> for PipelineName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            check_name("the pipeline name", &s).map(|()| PipelineName(s))
        })
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct VariableName(String);
impl<'de> Deserialize<'de> for VariableName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            crate::build::spec::check_var_name(&s).map(|()| VariableName(s))
        })
    }
}

struct Mode(ExecutionMode);
impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "superseded" => Ok(Mode(ExecutionMode::Superseded)),
            "queued" => Ok(Mode(ExecutionMode::Queued)),
            "parallel" => Ok(Mode(ExecutionMode::Parallel)),
            other => Err(format!(
                "execution-mode `{other}` is unknown: use superseded, queued or parallel"
            )),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    push: Trigger,
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            branches: Option<Filter>,
            tags: Option<Filter>,
            paths: Option<Filter>,
        }
        let raw = Raw::deserialize(d)?;
        match (&raw.branches, &raw.tags) {
            (Some(_), Some(_)) => Err(serde::de::Error::custom(
                "a push trigger filters either branches (and paths) or tags; write two triggers",
            )),
            (None, None) => Err(serde::de::Error::custom(
                "a push trigger needs `branches:` or `tags:`",
            )),
            (None, Some(_)) if raw.paths.is_some() => Err(serde::de::Error::custom(
                "`paths:` filters branch pushes; a tag trigger cannot have it",
            )),
            _ => Ok(Trigger {
                branches: raw.branches,
                tags: raw.tags,
                paths: raw.paths,
            }),
        }
    }
}

impl<'de> Deserialize<'de> for Stage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            name: StageName,
            #[serde(rename = "on-failure")]
            on_failure: Option<Failure>,
            actions: Vec<Action>,
        }
        with_check(|c| {
            c.stage += 1;
            c.actions.clear();
        });
        let raw = Raw::deserialize(d)?;
        if raw.actions.is_empty() {
            return Err(serde::de::Error::custom(format!(
                "stage `{}` has no actions; give it at least one",
                raw.name.0
            )));
        }
        Ok(Stage {
            name: raw.name.0,
            on_failure: raw.on_failure.map(|f| f.0).unwrap_or_default(),
            actions: raw.actions,
        })
    }
}

struct StageName(String);
impl<'de> Deserialize<'de> for StageName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            check_name("stage", &s)?;
            if s == SOURCE {
                return Err(
                    "stage `source` is implicit (the pushed commit); name this stage otherwise"
                        .into(),
                );
            }
            if !with_check(|c| c.stages.insert(s.clone())) {
                return Err(format!(
                    "a second stage is named `{s}`; stage names must be unique"
                ));
            }
            Ok(StageName(s))
        })
    }
}

struct Failure(OnFailure);
impl<'de> Deserialize<'de> for Failure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "fail" => Ok(Failure(OnFailure::Fail)),
            "retry" => Ok(Failure(OnFailure::Retry)),
            "rollback" => Ok(Failure(OnFailure::Rollback)),
            other => Err(format!(
                "on-failure `{other}` is unknown: use fail, retry or rollback"
            )),
        })
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            name: ActionName,
            #[serde(rename = "run-order")]
            run_order: Option<RunOrder>,
            build: Option<RawBuild>,
            approval: Option<RawApproval>,
            deploy: Option<RawDeploy>,
            inputs: Option<Vec<Input>>,
            #[serde(default)]
            outputs: Vec<Output>,
            namespace: Option<NamespaceName>,
        }
        let me = with_check(|c| {
            c.action += 1;
            c.run_order = None;
            c.same_stage_inputs.clear();
            c.action
        });
        let raw = Raw::deserialize(d)?;
        let name = raw.name.0;
        let run_order = raw.run_order.map(|r| r.0).unwrap_or(1);
        // Inputs read before this action's run-order was known are checked now.
        let parallel = with_check(|c| {
            c.run_orders.insert(me, run_order);
            c.same_stage_inputs
                .iter()
                .find(|(_, producer)| *producer >= run_order)
                .cloned()
        });
        if let Some((input, producer)) = parallel {
            return Err(serde::de::Error::custom(format!(
                "action `{name}` takes `{input}`, made in the same stage by an action with run-order {producer}; give `{name}` a higher run-order than {producer} or move it to a later stage"
            )));
        }
        let kind = match (raw.build, raw.approval, raw.deploy) {
            (Some(b), None, None) => ActionKind::Build {
                buildspec: b.buildspec.map(|p| p.0).unwrap_or_else(|| "buildspec.yml".into()),
                env: b.env.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
            },
            (None, Some(a), None) => ActionKind::Approval {
                approvers: a.approvers.into_iter().map(|p| p.0).collect(),
                timeout: a.timeout.map(|t| t.0).unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
                message: a.message.map(|m| m.0).unwrap_or_default(),
            },
            (None, None, Some(dep)) => ActionKind::Deploy {
                application: dep.application.0,
                group: dep.group.0,
            },
            (None, None, None) => {
                return Err(serde::de::Error::custom(format!(
                    "action `{name}` has no type: give it one of `build:`, `approval:` or `deploy:`"
                )))
            }
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "action `{name}` has more than one type: keep one of `build:`, `approval:` or `deploy:`"
                )))
            }
        };
        let inputs: Vec<String> = match (raw.inputs, &kind) {
            (Some(list), _) => list.into_iter().map(|i| i.0).collect(),
            // A build reads the source unless told otherwise.
            (None, ActionKind::Build { .. }) => vec![SOURCE.to_string()],
            (None, _) => Vec::new(),
        };
        match &kind {
            ActionKind::Build { .. } | ActionKind::Deploy { .. } if inputs.is_empty() => {
                return Err(serde::de::Error::custom(format!(
                    "action `{name}` has no input; a {} needs one artifact to work on",
                    kind.type_name()
                )))
            }
            ActionKind::Deploy { .. } if inputs.len() > 1 => {
                return Err(serde::de::Error::custom(format!(
                    "action `{name}` deploys one artifact; give it a single input"
                )))
            }
            ActionKind::Approval { .. } if !inputs.is_empty() || !raw.outputs.is_empty() => {
                return Err(serde::de::Error::custom(format!(
                    "action `{name}` is an approval, which takes and makes no artifacts; remove its inputs and outputs"
                )))
            }
            ActionKind::Deploy { .. } if !raw.outputs.is_empty() => {
                return Err(serde::de::Error::custom(format!(
                    "action `{name}` is a deploy, which makes no artifacts; remove its outputs"
                )))
            }
            _ => {}
        }
        Ok(Action {
            name,
            run_order,
            kind,
            inputs,
            outputs: raw.outputs.into_iter().map(|o| o.0).collect(),
            namespace: raw.namespace.map(|n| n.0),
        })
    }
}

struct ActionName(String);
impl<'de> Deserialize<'de> for ActionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            check_name("action", &s)?;
            if !with_check(|c| c.actions.insert(s.clone())) {
                return Err(format!(
                    "a second action in this stage is named `{s}`; action names must be unique in their stage"
                ));
            }
            Ok(ActionName(s))
        })
    }
}

struct RunOrder(u32);
impl<'de> Deserialize<'de> for RunOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if !(1..=999).contains(&n) {
            return Err(serde::de::Error::custom(format!(
                "run-order {n} is out of range: use 1 to 999"
            )));
        }
        with_check(|c| c.run_order = Some(n as u32));
        Ok(RunOrder(n as u32))
    }
}

struct Input(String);
impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            if s == SOURCE {
                return Ok(Input(s));
            }
            with_check(|c| {
                let Some(&(stage, action)) = c.outputs.get(&s) else {
                    return Err(format!(
                        "input `{s}` is not made by an earlier action; name `source` or an earlier action's output"
                    ));
                };
                if action == c.action {
                    return Err(format!("this action cannot take its own output `{s}`"));
                }
                if stage == c.stage {
                    let producer = c.run_orders.get(&action).copied().unwrap_or(1);
                    match c.run_order {
                        Some(mine) if mine <= producer => {
                            return Err(format!(
                                "input `{s}` is made in this stage by an action with run-order {producer}; give this action a higher run-order or move it to a later stage"
                            ))
                        }
                        Some(_) => {}
                        None => c.same_stage_inputs.push((s.clone(), producer)),
                    }
                }
                Ok(Input(s))
            })
        })
    }
}

struct Output(String);
impl<'de> Deserialize<'de> for Output {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            check_name("output", &s)?;
            with_check(|c| {
                if s == SOURCE {
                    return Err(
                        "`source` is the pushed commit's artifact; name this output otherwise"
                            .to_string(),
                    );
                }
                if c.namespaces.contains_key(&s) {
                    return Err(format!("output `{s}` has the name of a namespace; artifact and namespace names must differ"));
                }
                if c.outputs.insert(s.clone(), (c.stage, c.action)).is_some() {
                    return Err(format!(
                        "a second output is named `{s}`; output names must be unique in the pipeline"
                    ));
                }
                Ok(Output(s))
            })
        })
    }
}

struct NamespaceName(String);
impl<'de> Deserialize<'de> for NamespaceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            check_name("namespace", &s)?;
            with_check(|c| {
                if matches!(s.as_str(), SOURCE | "pipeline" | "variables") {
                    return Err(format!(
                        "namespace `{s}` is reserved (source, pipeline, variables); choose another"
                    ));
                }
                if c.outputs.contains_key(&s) {
                    return Err(format!("namespace `{s}` has the name of an output; artifact and namespace names must differ"));
                }
                if c.namespaces
                    .insert(s.clone(), (c.stage, c.action))
                    .is_some()
                {
                    return Err(format!(
                        "a second action has namespace `{s}`; namespaces must be unique in the pipeline"
                    ));
                }
                Ok(NamespaceName(s))
            })
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    buildspec: Option<RelativePath>,
    #[serde(default)]
    env: BTreeMap<VarKey, Referencing>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct VarKey(String);
impl<'de> Deserialize<'de> for VarKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            crate::build::spec::check_var_name(&s).map(|()| VarKey(s))
        })
    }
}

/// Text that may use `#{namespace.NAME}`.
struct Referencing(String);
impl<'de> Deserialize<'de> for Referencing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| check_references(&s).map(|()| Referencing(s)))
    }
}

struct RelativePath(String);
impl<'de> Deserialize<'de> for RelativePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let bad = s.is_empty()
                || s.starts_with('/')
                || s.split('/').any(|part| part == ".." || part.is_empty())
                || s.contains('\0');
            if bad {
                Err(format!(
                    "`{s}` is not a path inside the repository: write it relative to the top, without `..`"
                ))
            } else {
                Ok(RelativePath(s))
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    approvers: Vec<Approver>,
    timeout: Option<ApprovalTimeout>,
    message: Option<Referencing>,
}

struct Approver(String);
impl<'de> Deserialize<'de> for Approver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let name = s
                .strip_prefix("group:")
                .or_else(|| s.strip_prefix("user:"))
                .unwrap_or(&s);
            check_name("approver", name)?;
            Ok(Approver(s))
        })
    }
}

struct ApprovalTimeout(Duration);
impl<'de> Deserialize<'de> for ApprovalTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| {
            let t = parse_duration(&s)?;
            if t < MIN_APPROVAL_TIMEOUT || t > MAX_APPROVAL_TIMEOUT {
                return Err(format!(
                    "an approval timeout of `{s}` is out of range: use 1m to 30d"
                ));
            }
            Ok(ApprovalTimeout(t))
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    application: PlainName,
    group: PlainName,
}

struct PlainName(String);
impl<'de> Deserialize<'de> for PlainName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, |s| check_name("the name", &s).map(|()| PlainName(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r##"name: web
execution-mode: queued
triggers:
  - push: { branches: { include: [main, "release/*"] }, paths: { exclude: ["docs/**"] } }
  - push: { tags: { include: ["v*"] } }
stages:
  - name: build
    actions:
      - { name: compile, build: { buildspec: buildspec.yml, env: { COMMIT: "#{source.CommitId}" } }, outputs: [app], namespace: B }
      - { name: lint, build: { buildspec: ci/lint.yml } }
      - { name: package, run-order: 2, build: {}, inputs: [app], outputs: [pkg] }
  - name: approve
    actions:
      - { name: gate, approval: { approvers: ["group:release", alice], timeout: 24h, message: "Ship #{B.IMAGE_TAG} to #{variables.DEPLOY_ENV}?" } }
  - name: deploy
    on-failure: rollback
    actions:
      - { name: prod, deploy: { application: web, group: prod }, inputs: [pkg] }
variables: { DEPLOY_ENV: staging }
"##;

    #[test]
    fn the_documented_example_parses() {
        let p = parse_pipeline("pipeline.yml", EXAMPLE).unwrap();
        assert_eq!(p.name, "web");
        assert_eq!(p.mode, ExecutionMode::Queued);
        assert_eq!(p.triggers.len(), 2);
        assert_eq!(p.variables["DEPLOY_ENV"], "staging");
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "approve", "deploy"]);
        let build = &p.stages[0].actions;
        assert_eq!(build[0].inputs, ["source"]);
        assert_eq!(build[2].run_order, 2);
        assert!(
            matches!(&build[1].kind, ActionKind::Build { buildspec, .. } if buildspec == "ci/lint.yml")
        );
        assert!(matches!(&p.stages[1].actions[0].kind,
            ActionKind::Approval { timeout, approvers, .. }
                if *timeout == Duration::from_secs(86400) && approvers.len() == 2));
        assert_eq!(p.stages[2].on_failure, OnFailure::Rollback);
    }

    fn err(text: &str) -> ConfigError {
        parse_pipeline("pipeline.yml", text).unwrap_err()
    }

    #[test]
    fn cross_reference_mistakes_point_at_the_value() {
        let head = "name: p\nstages:\n";
        let cases: &[(&str, usize, usize, &str)] = &[
            (
                "  - name: a\n    actions: [{ name: x, build: {} }]\n  - name: a\n    actions: [{ name: y, build: {} }]\n",
                5, 11, "second stage is named `a`",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, build: {} }\n      - { name: x, build: {} }\n",
                6, 17, "second action in this stage is named `x`",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, build: {}, inputs: [nope] }\n",
                5, 40, "input `nope` is not made by an earlier action",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, build: {}, outputs: [o] }\n      - { name: y, build: {}, inputs: [o] }\n",
                5, 7, "give `y` a higher run-order",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, build: {}, outputs: [o] }\n  - name: b\n    actions:\n      - { name: y, build: {}, outputs: [o] }\n",
                8, 41, "second output is named `o`",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, approval: { approvers: [bob], message: \"#{Q.TAG}\" } }\n",
                5, 59, "no earlier action has namespace `Q`",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, namespace: N, build: {}, outputs: [o] }\n      - { name: y, build: { env: { V: \"#{N.TAG}\" } } }\n",
                5, 7, "give `y` a higher run-order",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, namespace: N, build: { env: { V: \"#{N.TAG}\" } } }\n",
                5, 53, "own namespace",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, approval: { approvers: [bob], timeout: 90d } }\n",
                5, 59, "out of range",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x }\n",
                5, 7, "has no type",
            ),
            (
                "  - name: a\n    actions:\n      - { name: x, deploy: { application: w, group: g }, inputs: [source], typo: 1 }\n",
                5, 76, "unknown field `typo`",
            ),
        ];
        for (body, line, column, says) in cases {
            let e = err(&format!("{head}{body}"));
            assert!(e.message.contains(says), "{e} (wanted {says:?})");
            assert_eq!((e.line, e.column), (*line, *column), "{e}");
        }
    }

    #[test]
    fn whole_file_mistakes() {
        assert!(err("name: p\n").message.contains("at least one stage"));
        assert!(err("stages: []\n").message.contains("missing field `name`"));
        let e = err("name: p\nexecution-mode: parallel\nstages:\n  - name: a\n    on-failure: rollback\n    actions: [{ name: x, build: {} }]\n");
        assert!(e.message.contains("does not allow"), "{e}");
        let e = err("name: p\nexecution-mode: sometimes\nstages: []\n");
        assert_eq!((e.line, e.column), (2, 17), "{e}");
        let e =
            err("name: p\ntriggers:\n  - push: { branches: { include: [\"a[\"] } }\nstages: []\n");
        assert!(e.message.contains("not a valid pattern"), "{e}");
        assert_eq!(e.line, 3, "{e}");
        let e = err("name: p\ntriggers:\n  - push: { branches: { include: [main] }, tags: { include: [v1] } }\nstages: []\n");
        assert!(e.message.contains("either branches"), "{e}");
        let e = err("name: p\nstages:\n  - name: a\n    actions: [{ name: x, build: { buildspec: ../x.yml } }]\n");
        assert!(
            e.message.contains("not a path inside the repository"),
            "{e}"
        );
    }
}
