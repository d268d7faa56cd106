//! What carries from one build command to the next: the working directory and the
//! exported variables.
//!
//! Each command runs in a subshell forked from the build's long-lived session shell, so
//! it starts with whatever the session holds. On exit, the command reports what it left
//! (`export -p` and its directory, written by its EXIT trap). The server compares that
//! with what the session holds and, only when they differ, has the session load the
//! difference before the next command: variables that are gone are unset, new or
//! changed ones are set, the directory is changed. Most commands change nothing, so most
//! commands cost one fork and no parsing of the environment by the shell.
//!
//! `export -p` prints one statement per variable (bash: `declare -x NAME="v"` or
//! `NAME=$'v'`; bash in POSIX mode, dash and busybox: `export NAME='v'`); values may span
//! lines, so statements are split on newlines outside quotes.

use std::collections::BTreeMap;

use super::shell::shell_quote;

/// Exported variables and a working directory, as a shell holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Variable name → the statement that sets it, as the shell printed it.
    pub vars: BTreeMap<String, Vec<u8>>,
    /// The working directory.
    pub pwd: Vec<u8>,
}

/// Names the session uses for itself; never carried.
const OWN_PREFIX: &str = "__slipway_";

impl Carried {
    /// The state a build starts with: `env` (set in order; a later value wins) in `pwd`.
    pub fn initial(env: &[(String, String)], pwd: &[u8]) -> Carried {
        let vars = env
            .iter()
            .filter(|(name, _)| is_identifier(name) && !name.starts_with(OWN_PREFIX))
            .map(|(name, value)| {
                let statement = format!("export {name}={}", shell_quote(value));
                (name.clone(), statement.into_bytes())
            })
            .collect();
        Carried {
            vars,
            pwd: pwd.to_vec(),
        }
    }

    /// Reads what a command's EXIT trap wrote: `export -p`, then a line `marker` + the
    /// directory. The file is rewritten in place, so bytes after that line are stale and
    /// ignored. `None` when the marker is missing (the trap did not run to the end).
    pub fn parse(report: &[u8], marker: &[u8]) -> Option<Carried> {
        let at = if report.starts_with(marker) {
            0
        } else {
            let mut needle = vec![b'\n'];
            needle.extend_from_slice(marker);
            find(report, &needle)? + 1
        };
        let rest = &report[at + marker.len()..];
        let pwd = &rest[..rest.iter().position(|b| *b == b'\n')?];
        let mut vars = BTreeMap::new();
        for statement in statements(&report[..at]) {
            if let Some((name, _)) = statement_name(statement) {
                if !name.starts_with(OWN_PREFIX) {
                    vars.insert(name.to_string(), statement.to_vec());
                }
            }
        }
        Some(Carried {
            vars,
            pwd: pwd.to_vec(),
        })
    }

    /// The script that turns a shell holding `self` into one holding `want`, for the
    /// session to source; `None` when there is nothing to change. When the directory
    /// cannot be entered (it was removed) the script runs `on_lost`.
    pub fn changes_to(&self, want: &Carried, on_lost: &str) -> Option<Vec<u8>> {
        let mut script = Vec::new();
        // Gone, or exported without a value now (dash and busybox keep `export NAME`
        // after `unset NAME`): unset first.
        let gone: Vec<&str> = self
            .vars
            .iter()
            .filter(|(name, old)| match want.vars.get(*name) {
                None => true,
                Some(new) => new != *old && statement_name(new).is_some_and(|(_, valued)| !valued),
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if !gone.is_empty() {
            script.extend_from_slice(format!("unset -v {}\n", gone.join(" ")).as_bytes());
        }
        // The directory first: `cd` sets OLDPWD from PWD, which the command's own values
        // (set below) then restore, so `cd -` works across commands.
        if self.pwd != want.pwd {
            script.extend_from_slice(b"cd -- ");
            script.extend_from_slice(&quote_bytes(&want.pwd));
            script.extend_from_slice(format!(" || {on_lost}\n").as_bytes());
        }
        for (name, statement) in &want.vars {
            if self.vars.get(name) != Some(statement) {
                script.extend_from_slice(statement);
                script.push(b'\n');
            }
        }
        (!script.is_empty()).then_some(script)
    }

    /// Every statement, to set all of these variables in a fresh shell.
    pub fn statements(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for statement in self.vars.values() {
            all.extend_from_slice(statement);
            all.push(b'\n');
        }
        all
    }
}

/// Whether `command` is one simple command running a program (not a shell builtin or
/// keyword), which cannot change the shell's variables or directory: then the subshell
/// can `exec` it, saving a fork and the report, as bash itself does for `( program )`.
/// Conservative: anything else (lists, pipelines, compound commands, assignments,
/// command substitutions, `${x=…}`, arithmetic, background jobs) takes the general path.
pub fn leaves_state_alone(command: &str) -> bool {
    let bytes = command.as_bytes();
    let mut i = 0;
    let mut quote = 0u8;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (_, b'\n' | b'\r' | b'`') => return false,
            (b'\'', b'\'') | (b'"', b'"') => quote = 0,
            (b'\'', _) => {}
            (_, b'\\') => i += 1,
            (0, b'\'' | b'"') => quote = b,
            (_, b'$') => match bytes.get(i + 1) {
                // `$(…)`, `$((…))`, `$[…]` (arithmetic), `$'…'` (its own quoting rules).
                Some(b'(' | b'[' | b'\'') => return false,
                Some(b'{') => {
                    let Some(len) = bytes[i..].iter().position(|c| *c == b'}') else {
                        return false;
                    };
                    if !plain_expansion(&command[i + 2..i + len]) {
                        return false;
                    }
                    i += len;
                }
                _ => {}
            },
            (b'"', _) => {}
            (0, b';' | b'|' | b'(' | b')' | b'{' | b'}') => return false,
            (0, b'<') if bytes.get(i + 1) == Some(&b'<') => return false,
            // `2>&1`, `<&0`, `&>file` redirect; any other `&` is a list or a job.
            (0, b'&') => {
                let redirect = (i > 0 && matches!(bytes[i - 1], b'>' | b'<'))
                    || bytes.get(i + 1) == Some(&b'>');
                if !redirect {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if quote != 0 {
        return false;
    }
    let Some(program) = command.split_ascii_whitespace().next() else {
        return false;
    };
    program.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'+' | b'-' | b'@' | b',')
    }) && !program.starts_with('-')
        && !SHELL_WORDS.contains(&program)
}

/// `name`, or `name` with `-`, `:-`, `+` or `:+` and a plain word: expansions that only
/// read (not `${x=…}`, `${x:?…}`, substrings with arithmetic, indexes, nested `$`).
fn plain_expansion(inner: &str) -> bool {
    let end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, rest) = inner.split_at(end);
    let word = ["", ":-", ":+", "-", "+"]
        .iter()
        .filter(|op| rest.starts_with(**op))
        .map(|op| &rest[op.len()..])
        .max_by_key(|w| usize::MAX - w.len());
    is_identifier(name)
        && match (rest.is_empty(), word) {
            (true, _) => true,
            (false, Some(w)) if rest.len() > w.len() => w.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'_' | b'.' | b'/' | b',' | b'@' | b'%' | b'-')
            }),
            _ => false,
        }
}

/// Builtins and keywords of bash and POSIX shells: never `exec`ed.
const SHELL_WORDS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "case",
    "cd",
    "chdir",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "coproc",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "echo",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "help",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "then",
    "time",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
];

/// Whether `name` can be a shell variable name.
pub fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `'bytes'` for a POSIX shell.
fn quote_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits `export -p` output into statements: newlines inside `'…'`, `"…"` or `$'…'`
/// belong to a value.
fn statements(text: &[u8]) -> Vec<&[u8]> {
    #[derive(Clone, Copy, PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
        AnsiC,
    }
    let mut out = Vec::new();
    let mut quote = Quote::None;
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        match (quote, b) {
            (Quote::None, b'\n') => {
                if i > start {
                    out.push(&text[start..i]);
                }
                start = i + 1;
            }
            (Quote::None, b'\'') => quote = Quote::Single,
            (Quote::None, b'"') => quote = Quote::Double,
            (Quote::None, b'$') if text.get(i + 1) == Some(&b'\'') => {
                quote = Quote::AnsiC;
                i += 1;
            }
            (Quote::None | Quote::Double | Quote::AnsiC, b'\\') => i += 1,
            (Quote::Single | Quote::AnsiC, b'\'') | (Quote::Double, b'"') => quote = Quote::None,
            _ => {}
        }
        i += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The variable a statement of `export -p` sets (`declare -x NAME…`, `declare -rx NAME…`,
/// `export NAME…`), and whether it gives it a value.
fn statement_name(statement: &[u8]) -> Option<(&str, bool)> {
    let text = std::str::from_utf8(statement)
        .ok()
        .or_else(|| {
            // Only the part before `=` has to be text.
            let end = statement.iter().position(|b| *b == b'=')?;
            std::str::from_utf8(&statement[..end]).ok()
        })?
        .trim_start();
    let mut words = text.split(' ');
    match words.next()? {
        "declare" | "typeset" | "export" => {}
        _ => return None,
    }
    let assignment = words.find(|w| !w.starts_with('-') && !w.is_empty())?;
    let (name, valued) = match assignment.split_once('=') {
        Some((name, _)) => (name, true),
        None => (assignment, false),
    };
    is_identifier(name).then_some((name, valued))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &[u8] = b"\x1enonce pwd ";

    /// What `shell` reports after running `setup`, through the same trap text the
    /// executor uses.
    fn report_of(shell: &str, setup: &str) -> Vec<u8> {
        let script = format!("{setup}\nexport -p\nprintf '\\036nonce pwd %s\\n' \"$PWD\"\n");
        let out = std::process::Command::new(shell)
            .arg("-c")
            .arg(script)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .output()
            .expect("shell runs");
        assert!(out.status.success(), "{shell}: {out:?}");
        out.stdout
    }

    const TRICKY: &str = "A='multi\nline \"q\" $x `b` \\ end'\n\
         B=$(printf 'tab\\there\\001ctl')\n\
         C=\"it's\"\n\
         D='declare -x FAKE=\"1\"'\n\
         export A B C D E\n\
         __slipway_rc=0; export __slipway_rc\n\
         cd /tmp";

    #[test]
    fn names_and_values_survive_every_shell_format() {
        for shell in ["bash", "sh"] {
            let carried = Carried::parse(&report_of(shell, TRICKY), MARK).expect("marker");
            for name in ["A", "B", "C", "D", "E", "PATH"] {
                assert!(carried.vars.contains_key(name), "{shell}: {name} missing");
            }
            assert!(
                !carried.vars.contains_key("FAKE"),
                "{shell}: value read as a name"
            );
            assert!(!carried.vars.contains_key("__slipway_rc"), "{shell}");
            assert_eq!(carried.pwd, b"/tmp", "{shell}");
            // Loading the statements into a fresh shell gives the same values back.
            let load = String::from_utf8(Carried::default().changes_to(&carried, "lost").unwrap())
                .unwrap()
                .replace(" || lost", "");
            let again = Carried::parse(&report_of(shell, &load), MARK).unwrap();
            for name in ["A", "B", "C", "D", "E"] {
                assert_eq!(
                    again.vars.get(name),
                    carried.vars.get(name),
                    "{shell}: {name}"
                );
            }
        }
    }

    #[test]
    fn changes_are_only_what_differs() {
        let before = Carried::parse(&report_of("bash", "export KEEP=1 GONE=2 EDIT=3"), MARK)
            .expect("marker");
        let mut after =
            Carried::parse(&report_of("bash", "export KEEP=1 EDIT=4 NEW=5"), MARK).expect("marker");
        // dash keeps an unset variable exported, without a value (under `set -a`).
        let sh_before = Carried::parse(&report_of("sh", "export V=1"), MARK).unwrap();
        let sh_after =
            Carried::parse(&report_of("sh", "set -a; export V=1; unset V"), MARK).unwrap();
        assert_eq!(
            sh_before.changes_to(&sh_after, "lost").unwrap(),
            b"unset -v V\nexport V\n"
        );
        let script = String::from_utf8(before.changes_to(&after, "lost").unwrap()).unwrap();
        assert_eq!(
            script,
            "unset -v GONE\ndeclare -x EDIT=\"4\"\ndeclare -x NEW=\"5\"\n"
        );
        assert_eq!(after.changes_to(&after, "lost"), None);
        let moved = Carried {
            pwd: b"/it's".to_vec(),
            ..after.clone()
        };
        assert_eq!(
            after.changes_to(&moved, "lost").unwrap(),
            b"cd -- '/it'\\''s' || lost\n"
        );
        after.vars.clear();
        assert!(after
            .changes_to(&moved, "lost")
            .unwrap()
            .starts_with(b"cd -- '/it"));
    }

    #[test]
    fn stale_bytes_after_the_marker_and_a_missing_marker() {
        let mut report = report_of("sh", "export X=1");
        report.extend_from_slice(b"declare -x STALE=\"old\"\n\x1enonce pwd /old\n");
        let carried = Carried::parse(&report, MARK).unwrap();
        assert!(carried.vars.contains_key("X"));
        assert!(!carried.vars.contains_key("STALE"));
        assert_eq!(carried.pwd, b"/");
        assert_eq!(Carried::parse(b"export X='1'\n", MARK), None);
        assert_eq!(
            Carried::parse(b"\x1enonce pwd /x\n", MARK).unwrap().pwd,
            b"/x"
        );
    }

    #[test]
    fn only_plain_program_runs_are_exec_candidates() {
        for yes in [
            "gcc $CFLAGS -c mod0.c -o ../out/mod0.o",
            "./out/app 2000000 > out/result.txt",
            "make -j2 all 2>&1",
            "tar czf out/app.tgz out/*",
            "cargo test --workspace &> log.txt",
            "python3 -c 'import os; print(os.getcwd())'",
            "echo-tool \"${NAME:-x} ${OTHER} ${T+set} ${U:+on}\" 'a;b|c'",
            "/usr/bin/env",
        ] {
            assert!(leaves_state_alone(yes), "{yes}");
        }
        for no in [
            "cd src",
            "export A=1",
            "A=1",
            "A=1 make",
            "make; cd x",
            "make && cd x",
            "make || true",
            "gcc --version | head -1",
            "sleep 100 &",
            "echo hi",
            "true",
            "exit 3",
            "exec make",
            ". ./env.sh",
            "source env.sh",
            "make ${TARGET:=all}",
            "make $(nproc)",
            "make `nproc`",
            "make $((1 + 2))",
            "(cd x && make)",
            "{ make; }",
            "if make; then x; fi",
            "cat <<EOF",
            "make \"unterminated",
            "chdir /tmp",
            "ls $'\\'' ; cd /tmp ; echo \\'",
            "/bin/echo $[X=5]",
            "make ${a:-$((n++))}",
            "make ${arr[i++]}",
            "make ${s:i++}",
            "make ${x:?gone}",
            "make ${ cd /tmp; }",
            "$CC -c x.c",
            "[[ -f x ]]",
            "! make",
            "make\ncd x",
            "",
        ] {
            assert!(!leaves_state_alone(no), "{no}");
        }
    }

    #[test]
    fn the_initial_state_quotes_values() {
        let env = vec![
            ("Q".to_string(), "it's $HOME".to_string()),
            ("bad name".to_string(), "x".to_string()),
        ];
        let carried = Carried::initial(&env, b"/src dir");
        let load =
            String::from_utf8(Carried::default().changes_to(&carried, "lost").unwrap()).unwrap();
        assert_eq!(
            load,
            "cd -- '/src dir' || lost\nexport Q='it'\\''s $HOME'\n"
        );
    }
}
