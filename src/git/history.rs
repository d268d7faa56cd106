//! What a ref update brought: the number of new commits and their summaries.

use std::path::Path;

/// Commits reachable from `new` and not from `old` (for a new ref: not from any other
/// ref), counted, with the summaries of the newest `max` of them.
pub async fn new_commits(
    git: &str,
    repo: &Path,
    old: &str,
    new: &str,
    refname: &str,
    max: usize,
) -> std::io::Result<(u64, Vec<String>)> {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(old) || !hex(new) || !refname.starts_with("refs/") {
        return Ok((0, Vec::new()));
    }
    let created = old.bytes().all(|b| b == b'0');
    let mut range = vec![new.to_string()];
    if created {
        // `--all` would include HEAD, which may point at this very ref.
        range.extend([
            "--not".into(),
            format!("--exclude={refname}"),
            "--glob=refs/*".into(),
        ]);
    } else {
        range.push(format!("^{old}"));
    }
    let run = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(git);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .arg("--git-dir")
            .arg(repo)
            .args(args)
            .kill_on_drop(true);
        cmd
    };
    let mut count_args = vec!["rev-list".to_string(), "--count".into()];
    count_args.extend(range.iter().cloned());
    let out = run(count_args).output().await?;
    let count = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let mut log_args = vec![
        "log".to_string(),
        "--no-decorate".into(),
        format!("-n{max}"),
        "--format=%h %s".into(),
    ];
    log_args.extend(range);
    let out = run(log_args).output().await?;
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.chars().take(200).collect())
        .collect();
    Ok((count, summary))
}
