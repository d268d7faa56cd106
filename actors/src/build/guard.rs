//! Guarded branches: a commit pushed to a guarded branch (`guard:` in `builds.yaml`)
//! stays there only if it builds.
//!
//! When the build of a push to a guarded branch fails, [`roll_back`] moves the branch
//! back to the commit it had before that push, or deletes it if the push created it.
//! Both are compare-and-swap on the failed commit: a branch pushed to (or deleted)
//! meanwhile is left alone, and that is reported ([`RollBack::LeftAlone`]). The failed
//! commit is kept under `refs/slipway/rejected/<branch>/<build-number>` in every case —
//! also when the branch is left alone, because the commit did fail its build, the ref
//! costs nothing, and a later force-push could otherwise lose the commit — so nothing is
//! lost. [`mail`] is what the pusher reads about it.
//!
//! The ref edits are one gix transaction (the rejected ref and the branch are locked
//! together; if the branch does not match, neither is written, and the rejected ref is
//! then written on its own), with reflog entries written as `slipway` even in bare
//! repositories, which keep no reflogs by default.

use std::borrow::Cow;
use std::path::Path;

use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};
use gix::ObjectId;

use crate::compose::{short, ServerInfo};

/// What [`roll_back`] did to the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollBack {
    /// The branch was moved back to `to` (full id), the commit it had before the push.
    MovedBack {
        /// The full id the branch points at now.
        to: String,
    },
    /// The push had created the branch; it was deleted again.
    Deleted,
    /// The branch no longer pointed at the failed commit (someone pushed to it or
    /// deleted it meanwhile), so it was not touched. The rejected ref is still written.
    LeftAlone {
        /// Where the branch points now (full id); all zeros if it no longer exists.
        now_at: String,
    },
}

/// Who edits the refs, in their reflogs.
const REFLOG_NAME: &str = "slipway";
const REFLOG_EMAIL: &str = "slipway@localhost";
/// At most this many log lines go into a mail, each cut at this many characters.
const MAX_LINES: usize = 50;
const MAX_LINE_CHARS: usize = 300;

/// The ref that keeps the commit rejected from `branch` by build `build_number`.
pub fn rejected_ref(branch: &str, build_number: i64) -> String {
    format!("refs/slipway/rejected/{branch}/{build_number}")
}

/// Checks that `branch` is a short branch name (`main`, `release/1.0`) git would accept
/// and returns its full name (`refs/heads/…`).
///
/// Beyond gix's rules (no `..`, `@{`, `.lock`, `//`, spaces, `~^:?*[\`, control
/// characters…), this refuses a leading `-` (it would read as an option in the
/// commands printed in mail), `HEAD`, and a name starting with `refs/` (a full name
/// passed where the short one is expected would otherwise silently name another ref).
pub fn validate_branch(branch: &str) -> Result<FullName, String> {
    let shown: String = branch
        .chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect();
    let refuse = |why: &str| Err(format!("`{shown}` is not a branch name: {why}"));
    if branch.is_empty() {
        return refuse("it is empty");
    }
    if branch.len() > 255 {
        return refuse("it is longer than 255 bytes");
    }
    if branch.chars().any(char::is_control) {
        return refuse("it contains control characters");
    }
    if branch.contains("..") {
        return refuse("it contains `..`");
    }
    if branch.starts_with('-') {
        return refuse("it starts with `-`");
    }
    if branch == "HEAD" {
        return refuse("`HEAD` is reserved");
    }
    if branch.starts_with("refs/") {
        return refuse("give the short name, without `refs/heads/`");
    }
    let full = format!("refs/heads/{branch}");
    gix::validate::reference::branch_name(full.as_str().into())
        .map_err(|e| format!("`{shown}` is not a branch name: {e}"))?;
    FullName::try_from(full).map_err(|e| format!("`{shown}` is not a branch name: {e}"))
}

fn is_null(id: &str) -> bool {
    id.is_empty() || id.bytes().all(|b| b == b'0')
}

fn object_id(what: &str, id: &str) -> Result<ObjectId, String> {
    let valid = matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit());
    let parsed = valid
        .then(|| ObjectId::from_hex(id.as_bytes()).ok())
        .flatten()
        .filter(|oid| !oid.is_null());
    parsed.ok_or_else(|| {
        let shown: String = id.chars().take(80).flat_map(char::escape_default).collect();
        format!("{what} `{shown}` is not an object id")
    })
}

/// Rolls `branch` of the repository at `repo_path` back after the build of `failed`
/// (build number `build_number` in that repository) failed.
///
/// `previous` is the branch's commit before the push; `None` or all zeros when the
/// push created the branch, which is then deleted. Both edits are compare-and-swap on
/// `failed`; if the branch is elsewhere now, it is [`RollBack::LeftAlone`]. In every
/// `Ok` case, [`rejected_ref`] points at `failed` afterwards (it is overwritten if it
/// exists: build numbers are unique in a repository, so an existing one is either from
/// an earlier attempt at this same roll-back or was pushed by someone, and a pushed one
/// must not block the roll-back).
///
/// `Err` means nothing could be decided (bad arguments, unreadable repository, a lock
/// held too long); the branch may then still point at `failed`.
pub fn roll_back(
    repo_path: &Path,
    branch: &str,
    failed: &str,
    previous: Option<&str>,
    build_number: i64,
) -> Result<RollBack, String> {
    let branch_ref = validate_branch(branch)?;
    if build_number < 1 {
        return Err(format!("build number {build_number} is not positive"));
    }
    let failed_id = object_id("the failed commit", failed)?;
    let previous_id = match previous.filter(|p| !is_null(p)) {
        Some(p) => Some(object_id("the previous commit", p)?),
        None => None,
    };
    if previous_id == Some(failed_id) {
        return Err(format!(
            "the failed commit {failed} is also the previous one: nothing to roll back"
        ));
    }
    let rejected_name = FullName::try_from(rejected_ref(branch, build_number))
        .map_err(|e| format!("cannot name the rejected ref: {e}"))?;
    let mut repo = gix::open(repo_path)
        .map_err(|e| format!("cannot open the repository {}: {e}", repo_path.display()))?;
    // Bare repositories keep no reflogs unless `core.logAllRefUpdates` says so, and gix
    // then writes none at all; this roll-back is worth one (`force_create_reflog`).
    repo.refs.write_reflog = gix::refs::store::WriteReflog::Normal;

    let keep = RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: true,
                message: format!(
                    "slipway: rejected from {branch}: build number {build_number} failed"
                )
                .into(),
            },
            expected: PreviousValue::Any,
            new: Target::Object(failed_id),
        },
        name: rejected_name,
        deref: false,
    };
    let expected = PreviousValue::MustExistAndMatch(Target::Object(failed_id));
    let branch_edit = RefEdit {
        change: match previous_id {
            Some(to) => Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: true,
                    message: format!(
                        "slipway: build number {build_number} failed: moved back from {} to {}",
                        short(failed),
                        short(&to.to_string())
                    )
                    .into(),
                },
                expected,
                new: Target::Object(to),
            },
            // A deleted branch loses its reflog; the rejected ref's reflog tells.
            None => Change::Delete {
                expected,
                log: RefLog::AndReference,
            },
        },
        name: branch_ref.clone(),
        deref: false,
    };

    let mut time = gix::date::parse::TimeBuf::default();
    let who = gix::actor::Signature {
        name: REFLOG_NAME.into(),
        email: REFLOG_EMAIL.into(),
        time: gix::date::Time::now_local_or_utc(),
    };
    let committer = who.to_ref(&mut time);

    match repo.edit_references_as([keep.clone(), branch_edit], Some(committer)) {
        Ok(_) => Ok(match previous_id {
            Some(to) => RollBack::MovedBack { to: to.to_string() },
            None => RollBack::Deleted,
        }),
        Err(e) => {
            // Did the compare-and-swap fail, or something else? Look again.
            let now = current(&repo, &branch_ref)
                .map_err(|e2| format!("cannot roll {branch} back: {e}; then: {e2}"))?;
            if now == Some(failed_id) {
                return Err(format!("cannot roll {branch} back: {e}"));
            }
            repo.edit_references_as([keep], Some(committer))
                .map_err(|e| {
                    format!(
                        "{branch} was left alone (it moved meanwhile), but the rejected commit could not be kept: {e}"
                    )
                })?;
            Ok(RollBack::LeftAlone {
                now_at: now.map_or_else(|| "0".repeat(failed.len()), |id| id.to_string()),
            })
        }
    }
}

/// Where `name` points now, peeled to an object id; `None` if it does not exist.
fn current(repo: &gix::Repository, name: &FullName) -> Result<Option<ObjectId>, String> {
    let found = repo
        .try_find_reference(name.as_bstr())
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    match found {
        None => Ok(None),
        Some(mut r) => match r.target().try_id() {
            Some(id) => Ok(Some(id.to_owned())),
            None => r
                .peel_to_id()
                .map(|id| Some(id.detach()))
                .map_err(|e| format!("cannot read {name}: {e}")),
        },
    }
}

/// `word` as a shell reads it literally: unchanged if it is plain, else single-quoted.
fn shell_word(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@:,=%".contains(&b));
    if plain {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// A log line made safe for a plain-text mail: terminal escape sequences and other
/// control characters removed, cut at [`MAX_LINE_CHARS`].
fn clean_line(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut kept = 0;
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI (`ESC [ … final`) or a two-character escape.
            if chars.next_if_eq(&'[').is_some() {
                while chars
                    .next()
                    .is_some_and(|c| !('\u{40}'..='\u{7e}').contains(&c))
                {}
            } else {
                chars.next();
            }
            continue;
        }
        if c.is_control() && c != '\t' {
            continue;
        }
        if kept == MAX_LINE_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
        kept += 1;
    }
    out
}

/// The subject and plain-text body of the mail to the pusher about a roll-back.
///
/// `build_id` is the server-wide build id (what `build logs` takes), `build_number` the
/// number within `repo` (what the rejected ref is named after; the build is shown as
/// `REPO:NUMBER`, like `CODEBUILD_BUILD_ID`). `failed` is the full id of the failed
/// commit, `failed_phase` the phase that failed (`BUILD`), `last_lines` the end of the
/// build log (at most the last 50 are shown).
#[allow(clippy::too_many_arguments)]
pub fn mail(
    repo: &str,
    branch: &str,
    build_number: i64,
    build_id: i64,
    failed: &str,
    outcome: &RollBack,
    failed_phase: Option<&str>,
    last_lines: &[String],
    server: &ServerInfo,
) -> (String, String) {
    let build = format!("{repo}:{build_number}");
    let rejected = rejected_ref(branch, build_number);
    let in_phase = failed_phase
        .map(|p| format!(" in phase {p}"))
        .unwrap_or_default();
    let opening = format!(
        "Your push of {} to branch {branch} in {repo} failed its build {build}{in_phase}",
        short(failed)
    );
    let (subject, what, now) = match outcome {
        RollBack::MovedBack { to } => (
            format!(
                "[slipway] {repo} {branch} moved back to {}: build {build} failed",
                short(to)
            ),
            format!(
                "{opening}, so slipway moved {branch} back to {}, where it was before the push.\n{branch} is guarded: a commit pushed to it stays only if it builds.",
                short(to)
            ),
            short(to).to_string(),
        ),
        RollBack::Deleted => (
            format!("[slipway] {repo} {branch} deleted: build {build} failed"),
            format!(
                "{opening}, so slipway deleted {branch} again: your push had created it.\n{branch} is guarded: a commit pushed to it stays only if it builds."
            ),
            "(deleted)".to_string(),
        ),
        RollBack::LeftAlone { now_at } if is_null(now_at) => (
            format!("[slipway] build {build} failed; {repo} {branch} was deleted meanwhile"),
            format!(
                "{opening}.\n{branch} is guarded, but it was deleted before the build ended, so there was nothing to move back."
            ),
            "(deleted)".to_string(),
        ),
        RollBack::LeftAlone { now_at } => (
            format!("[slipway] build {build} failed; {repo} {branch} left alone (pushed to meanwhile)"),
            format!(
                "{opening}.\n{branch} is guarded, but it was pushed to again before the build ended (it is now at {}), so slipway left it alone: the failed commit may still be part of {branch}. Check its history and push a fix.",
                short(now_at)
            ),
            short(now_at).to_string(),
        ),
    };
    let mut body = format!(
        "{what}\n\n  repository: {repo}\n  branch:     {branch} (refs/heads/{branch}), now {now}\n  rejected:   {} (kept as {rejected})\n  build:      {build} (build {build_id}){}\n",
        short(failed),
        failed_phase
            .map(|p| format!(", failed in {p}"))
            .unwrap_or_else(|| ", failed".into()),
    );
    let shown = &last_lines[last_lines.len().saturating_sub(MAX_LINES)..];
    if shown.is_empty() {
        body.push_str("\nThe build log is empty.\n");
    } else {
        body.push_str("\nLast lines of the build log:\n");
        for line in shown {
            body.push_str(&format!("  | {}\n", clean_line(line)));
        }
    }
    let host = if server.ssh_host.contains(':') && !server.ssh_host.starts_with('[') {
        format!("[{}]", server.ssh_host)
    } else {
        server.ssh_host.clone()
    };
    let url = format!("ssh://git@{host}:{}/{repo}.git", server.ssh_port);
    body.push_str(&format!(
        "\nNothing is lost: the rejected commit is kept as {rejected}. Fetch it with\n  git fetch {} {}\n(it lands in FETCH_HEAD).\n\nThe whole log:\n  {} build logs {build_id}\n",
        shell_word(&url),
        shell_word(&rejected),
        server.ssh(),
    ));
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A bare repository made with the git command line: commits A ← B ← C, `main` at B.
    struct TestRepo {
        _dir: tempfile::TempDir,
        bare: std::path::PathBuf,
        a: String,
        b: String,
        c: String,
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Tess Ter")
            .env("GIT_AUTHOR_EMAIL", "tess@example.com")
            .env("GIT_COMMITTER_NAME", "Tess Ter")
            .env("GIT_COMMITTER_EMAIL", "tess@example.com")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Commits A, B, C in a work tree, pushed to a bare repository whose `main` is at B.
    fn repo() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let bare = dir.path().join("app.git");
        std::fs::create_dir(&work).unwrap();
        git(dir.path(), &["init", "-q", "--bare", "app.git"]);
        git(&work, &["init", "-q", "-b", "main"]);
        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            std::fs::write(work.join(name), name).unwrap();
            git(&work, &["add", name]);
            git(&work, &["commit", "-q", "-m", name]);
            ids.push(git(&work, &["rev-parse", "HEAD"]));
        }
        let (a, b, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
        // All three commits reach the bare repository; main is left at B.
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        git(&bare, &["update-ref", "refs/heads/main", &b, &c]);
        TestRepo {
            _dir: dir,
            bare,
            a,
            b,
            c,
        }
    }

    fn rev(repo: &TestRepo, name: &str) -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo.bare)
            .args(["rev-parse", "--verify", "-q", name])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn reflog(repo: &TestRepo, name: &str) -> String {
        git(
            &repo.bare,
            &["reflog", "show", "--format=%gn <%ge> %gs", name],
        )
    }

    #[test]
    fn a_failed_push_is_moved_back_and_kept() {
        let r = repo();
        // The push of C (on top of B) failed build 7.
        git(&r.bare, &["update-ref", "refs/heads/main", &r.c, &r.b]);
        let outcome = roll_back(&r.bare, "main", &r.c, Some(&r.b), 7).unwrap();
        assert_eq!(outcome, RollBack::MovedBack { to: r.b.clone() });
        assert_eq!(rev(&r, "refs/heads/main"), Some(r.b.clone()));
        assert_eq!(rev(&r, "refs/slipway/rejected/main/7"), Some(r.c.clone()));
        let log = reflog(&r, "refs/heads/main");
        assert!(
            log.lines().next().unwrap().starts_with(
                "slipway <slipway@localhost> slipway: build number 7 failed: moved back from"
            ),
            "{log}"
        );
        let log = reflog(&r, "refs/slipway/rejected/main/7");
        assert!(
            log.contains("slipway: rejected from main: build number 7 failed"),
            "{log}"
        );
        // Again (a retry): the same result, nothing else changes.
        git(&r.bare, &["update-ref", "refs/heads/main", &r.c, &r.b]);
        roll_back(&r.bare, "main", &r.c, Some(&r.b), 7).unwrap();
        assert_eq!(rev(&r, "refs/slipway/rejected/main/7"), Some(r.c.clone()));
    }

    #[test]
    fn packed_refs_and_slashes_in_branch_names() {
        let r = repo();
        git(&r.bare, &["update-ref", "refs/heads/release/1.0", &r.c]);
        git(&r.bare, &["pack-refs", "--all"]);
        let outcome = roll_back(&r.bare, "release/1.0", &r.c, Some(&r.a), 12).unwrap();
        assert_eq!(outcome, RollBack::MovedBack { to: r.a.clone() });
        assert_eq!(rev(&r, "refs/heads/release/1.0"), Some(r.a.clone()));
        assert_eq!(
            rev(&r, "refs/slipway/rejected/release/1.0/12"),
            Some(r.c.clone())
        );
    }

    #[test]
    fn a_branch_created_by_the_failed_push_is_deleted() {
        let r = repo();
        git(&r.bare, &["update-ref", "refs/heads/topic", &r.c]);
        let zeros = "0".repeat(40);
        let outcome = roll_back(&r.bare, "topic", &r.c, Some(&zeros), 3).unwrap();
        assert_eq!(outcome, RollBack::Deleted);
        assert_eq!(rev(&r, "refs/heads/topic"), None);
        assert_eq!(rev(&r, "refs/slipway/rejected/topic/3"), Some(r.c.clone()));
        // `None` means the same.
        git(&r.bare, &["update-ref", "refs/heads/topic2", &r.c]);
        assert_eq!(
            roll_back(&r.bare, "topic2", &r.c, None, 4).unwrap(),
            RollBack::Deleted
        );
        assert_eq!(rev(&r, "refs/heads/topic2"), None);
        // main was not touched.
        assert_eq!(rev(&r, "refs/heads/main"), Some(r.b.clone()));
    }

    #[test]
    fn a_branch_pushed_to_meanwhile_is_left_alone_and_the_commit_kept() {
        let r = repo();
        // Build 5 of B (pushed on top of A) failed, but main was force-pushed to C since.
        git(&r.bare, &["update-ref", "refs/heads/main", &r.c]);
        let outcome = roll_back(&r.bare, "main", &r.b, Some(&r.a), 5).unwrap();
        assert_eq!(
            outcome,
            RollBack::LeftAlone {
                now_at: r.c.clone()
            }
        );
        assert_eq!(rev(&r, "refs/heads/main"), Some(r.c.clone()));
        assert_eq!(rev(&r, "refs/slipway/rejected/main/5"), Some(r.b.clone()));

        // Deleted meanwhile: also left alone (zeros), also kept.
        git(&r.bare, &["update-ref", "refs/heads/gone", &r.b]);
        git(&r.bare, &["update-ref", "-d", "refs/heads/gone"]);
        let outcome = roll_back(&r.bare, "gone", &r.b, None, 6).unwrap();
        assert_eq!(
            outcome,
            RollBack::LeftAlone {
                now_at: "0".repeat(40)
            }
        );
        assert_eq!(rev(&r, "refs/heads/gone"), None);
        assert_eq!(rev(&r, "refs/slipway/rejected/gone/6"), Some(r.b.clone()));
    }

    #[test]
    fn a_locked_branch_is_an_error_not_left_alone() {
        let r = repo();
        git(&r.bare, &["update-ref", "refs/heads/main", &r.c]);
        std::fs::write(r.bare.join("refs/heads/main.lock"), "").unwrap();
        let e = roll_back(&r.bare, "main", &r.c, Some(&r.b), 8).unwrap_err();
        assert!(e.starts_with("cannot roll main back: "), "{e}");
        assert_eq!(rev(&r, "refs/heads/main"), Some(r.c.clone()));
        assert_eq!(rev(&r, "refs/slipway/rejected/main/8"), None);
        // Once the lock is gone, the retry works.
        std::fs::remove_file(r.bare.join("refs/heads/main.lock")).unwrap();
        assert_eq!(
            roll_back(&r.bare, "main", &r.c, Some(&r.b), 8).unwrap(),
            RollBack::MovedBack { to: r.b.clone() }
        );
    }

    #[test]
    fn a_rejected_ref_pushed_beforehand_does_not_block_the_roll_back() {
        let r = repo();
        git(
            &r.bare,
            &["update-ref", "refs/slipway/rejected/main/9", &r.a],
        );
        git(&r.bare, &["update-ref", "refs/heads/main", &r.c]);
        let outcome = roll_back(&r.bare, "main", &r.c, Some(&r.b), 9).unwrap();
        assert_eq!(outcome, RollBack::MovedBack { to: r.b.clone() });
        assert_eq!(rev(&r, "refs/slipway/rejected/main/9"), Some(r.c.clone()));
    }

    /// A ref pushed where the rejected refs of a branch go (`refs/slipway/rejected/main`
    /// is a file, so `…/main/10` cannot be made) makes the roll-back fail as a whole:
    /// nothing changes and the caller gets an error. The server should refuse pushes
    /// under `refs/slipway/`.
    #[test]
    fn a_ref_in_the_way_of_the_rejected_ref_is_an_error() {
        let r = repo();
        git(&r.bare, &["update-ref", "refs/slipway/rejected/main", &r.a]);
        git(&r.bare, &["update-ref", "refs/heads/main", &r.c]);
        let e = roll_back(&r.bare, "main", &r.c, Some(&r.b), 10).unwrap_err();
        assert!(e.starts_with("cannot roll main back: "), "{e}");
        assert_eq!(rev(&r, "refs/heads/main"), Some(r.c.clone()));
    }

    #[test]
    fn bad_arguments_are_refused_and_change_nothing() {
        let r = repo();
        for bad in [
            "",
            "a..b",
            "-main",
            "ma\nin",
            "ma\u{7f}in",
            "main\u{1b}[0m",
            "HEAD",
            "refs/heads/main",
            "ma in",
            "main.lock",
            "main/",
            "/main",
            "a//b",
            "x@{1}",
            "a:b",
            "a~1",
            "a*",
        ] {
            let e = roll_back(&r.bare, bad, &r.b, Some(&r.a), 1).unwrap_err();
            assert!(e.contains("is not a branch name"), "{bad:?}: {e}");
        }
        assert!(roll_back(&r.bare, "main", "HEAD", Some(&r.a), 1).is_err());
        assert!(roll_back(&r.bare, "main", &"0".repeat(40), Some(&r.a), 1).is_err());
        assert!(roll_back(&r.bare, "main", &r.b, Some("nope"), 1).is_err());
        assert!(roll_back(&r.bare, "main", &r.b, Some(&r.b), 1).is_err());
        assert!(roll_back(&r.bare, "main", &r.b, Some(&r.a), 0).is_err());
        assert_eq!(rev(&r, "refs/heads/main"), Some(r.b.clone()));
        assert_eq!(
            git(&r.bare, &["for-each-ref", "refs/slipway/"]),
            "",
            "no rejected ref was written"
        );
        let e = roll_back(&r.bare.join("nope"), "main", &r.b, Some(&r.a), 1).unwrap_err();
        assert!(e.contains("cannot open the repository"), "{e}");
    }

    fn server() -> ServerInfo {
        ServerInfo {
            ssh_host: "git.example.com".into(),
            ssh_port: 2222,
        }
    }

    const FAILED: &str = "89abcdef0123456789abcdef0123456789abcdef";
    const BEFORE: &str = "1234567890abcdef1234567890abcdef12345678";

    #[test]
    fn the_mail_says_what_happened_and_what_to_do() {
        let lines = vec![
            "[Container] Running command cargo test".to_string(),
            "\u{1b}[31merror\u{1b}[0m: test failed, to rerun pass `--lib`".to_string(),
        ];
        let (subject, body) = mail(
            "app-web",
            "main",
            12,
            345,
            FAILED,
            &RollBack::MovedBack { to: BEFORE.into() },
            Some("BUILD"),
            &lines,
            &server(),
        );
        assert_eq!(
            subject,
            "[slipway] app-web main moved back to 12345678: build app-web:12 failed"
        );
        assert!(
            body.starts_with(
                "Your push of 89abcdef to branch main in app-web failed its build app-web:12 in phase BUILD, so slipway moved main back to 12345678, where it was before the push."
            ),
            "{body}"
        );
        assert!(
            body.contains("  | error: test failed, to rerun pass `--lib`\n"),
            "{body}"
        );
        assert!(
            body.contains("  | [Container] Running command cargo test\n"),
            "{body}"
        );
        assert!(
            body.contains("  rejected:   89abcdef (kept as refs/slipway/rejected/main/12)"),
            "{body}"
        );
        assert!(
            body.contains(
                "  git fetch ssh://git@git.example.com:2222/app-web.git refs/slipway/rejected/main/12\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("  ssh -p 2222 git@git.example.com build logs 345\n"),
            "{body}"
        );
        assert!(!body.contains('\u{1b}'), "{body}");
    }

    #[test]
    fn the_mail_tells_deleted_and_left_alone_apart() {
        let (subject, body) = mail(
            "app-web",
            "topic",
            3,
            40,
            FAILED,
            &RollBack::Deleted,
            None,
            &[],
            &server(),
        );
        assert_eq!(
            subject,
            "[slipway] app-web topic deleted: build app-web:3 failed"
        );
        assert!(
            body.contains("failed its build app-web:3, so slipway deleted topic again: your push had created it."),
            "{body}"
        );
        assert!(body.contains("The build log is empty."), "{body}");
        assert!(body.contains("refs/slipway/rejected/topic/3"), "{body}");

        let (subject, body) = mail(
            "app-web",
            "main",
            5,
            50,
            FAILED,
            &RollBack::LeftAlone {
                now_at: BEFORE.into(),
            },
            Some("POST_BUILD"),
            &[],
            &server(),
        );
        assert_eq!(
            subject,
            "[slipway] build app-web:5 failed; app-web main left alone (pushed to meanwhile)"
        );
        assert!(body.contains("it is now at 12345678"), "{body}");
        assert!(
            body.contains("kept as refs/slipway/rejected/main/5"),
            "{body}"
        );
        assert!(body.contains("build logs 50\n"), "{body}");

        let (subject, _) = mail(
            "app-web",
            "main",
            5,
            50,
            FAILED,
            &RollBack::LeftAlone {
                now_at: "0".repeat(40),
            },
            None,
            &[],
            &server(),
        );
        assert!(subject.ends_with("was deleted meanwhile"), "{subject}");
    }

    #[test]
    fn commands_in_the_mail_are_safe_to_paste() {
        let (_, body) = mail(
            "app",
            "x$(id)",
            1,
            1,
            FAILED,
            &RollBack::Deleted,
            None,
            &[],
            &server(),
        );
        assert!(
            body.contains(" 'refs/slipway/rejected/x$(id)/1'\n"),
            "{body}"
        );
        let long = "y".repeat(1000);
        let many: Vec<String> = (0..80).map(|i| format!("line {i}")).collect();
        let (_, body) = mail(
            "app",
            "main",
            1,
            1,
            FAILED,
            &RollBack::Deleted,
            None,
            &[many, vec![long]].concat(),
            &server(),
        );
        assert!(!body.contains("line 30\n"), "only the last 50 lines");
        assert!(body.contains("line 31\n"), "{body}");
        assert!(
            body.contains(&format!("  | {}…\n", "y".repeat(300))),
            "{body}"
        );
    }
}
