//! Test reports: reading the files a buildspec's `reports` group selects and counting
//! their results, as CodeBuild does for a test report.
//!
//! Selection follows the artifacts rules ([`super::artifacts`]): `files` globs relative to
//! `base-directory` (or the source root), `*` within one directory, `**` across them.
//! Symbolic links are never followed, neither in the tree nor in `base-directory`; a file
//! over [`MAX_REPORT_FILE_BYTES`] is skipped. Nothing here fails the build: a file that
//! cannot be read, is not well-formed XML or is not a report of the group's format is
//! skipped with a line in [`ReportSummary::problems`].
//!
//! Formats read: `JUNITXML` (root `<testsuites>` or `<testsuite>`, suites may nest; each
//! `<testcase>` is one test, failed if it has a `<failure>` child, else in error if it
//! has an `<error>`, else skipped if it has a `<skipped>`, else passed; `time` in
//! seconds), `TESTNGXML` (`<test-method status="PASS|FAIL|SKIP">` under
//! `<testng-results>`, configuration methods left out; `duration-ms`) and `NUNIT3XML`
//! (`<test-case result="…">` under `<test-run>`; `duration` in seconds). Other formats
//! get the problem "format X is not supported yet".

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::artifacts::{globs, walk};
use super::spec::{ReportFormat, ReportGroup};

/// The largest report file read, in bytes (16 MiB).
pub const MAX_REPORT_FILE_BYTES: u64 = 16 << 20;

/// Problem lines kept per report group; the rest are counted in a last line.
const MAX_PROBLEMS: usize = 50;

/// Deepest suite nesting followed when adding up durations.
const MAX_DEPTH: usize = 64;

/// What one report group's files say.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReportSummary {
    /// The report group's name.
    pub name: String,
    /// The file format, as the buildspec names it (`JUNITXML`, …).
    pub format: String,
    /// Report files whose results are counted (skipped files are not).
    pub files: usize,
    /// Tests: `passed + failed + errors + skipped`.
    pub total: u64,
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed (an assertion).
    pub failed: u64,
    /// Tests in error (JUnit `<error>`, NUnit `Failed` with label `Error`, `Invalid` or
    /// `Cancelled`).
    pub errors: u64,
    /// Tests skipped (NUnit `Inconclusive` too).
    pub skipped: u64,
    /// Time the reports give, added up over files; `None` when none gives any.
    pub duration_ms: Option<u64>,
    /// Files skipped and why, and other things worth telling the user, one per line.
    pub problems: Vec<String>,
}

/// Counts from one file.
#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    errors: u64,
    skipped: u64,
    ms: Option<f64>,
}

type Reader = fn(roxmltree::Node<'_, '_>) -> Result<Counts, String>;

/// Reads the report files `group` selects under `src_dir` and adds up their results.
pub fn collect(src_dir: &Path, group: &ReportGroup) -> ReportSummary {
    let mut summary = ReportSummary {
        name: group.name.clone(),
        format: group.file_format.name().to_string(),
        files: 0,
        total: 0,
        passed: 0,
        failed: 0,
        errors: 0,
        skipped: 0,
        duration_ms: None,
        problems: Vec::new(),
    };
    let mut problems = Problems::default();
    select_and_count(src_dir, group, &mut summary, &mut problems);
    summary.problems = problems.finish();
    summary
}

fn select_and_count(
    src_dir: &Path,
    group: &ReportGroup,
    summary: &mut ReportSummary,
    problems: &mut Problems,
) {
    let reader: Reader = match group.file_format {
        ReportFormat::JunitXml => junit,
        ReportFormat::TestNgXml => testng,
        ReportFormat::Nunit3Xml => nunit3,
        other => {
            problems.push(format!("format {} is not supported yet", other.name()));
            return;
        }
    };
    let (base, base_rel) = match base_directory(src_dir, group.base_directory.as_deref()) {
        Ok(b) => b,
        Err(e) => return problems.push(e),
    };
    let include = match globs(&group.files) {
        Ok(g) => g,
        Err(e) => return problems.push(format!("report {e}")),
    };
    let mut all = Vec::new();
    if let Err(e) = walk(&base, &base, &mut all) {
        return problems.push(format!("cannot list {}: {e}", shown(&base_rel).display()));
    }
    let mut matched = 0;
    let mut ms: Option<f64> = None;
    for rel in all.into_iter().filter(|rel| include.is_match(rel)) {
        matched += 1;
        let name = base_rel.join(&rel);
        let name = name.display();
        let bytes = match read_report(&base.join(&rel)) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{name}: {e}; skipped"));
                continue;
            }
        };
        let text = decode(&bytes);
        let doc = match roxmltree::Document::parse(&text) {
            Ok(d) => d,
            Err(e) => {
                let (pos, message) = xml_error(&text, &e);
                problems.push(format!(
                    "{name}:{pos}: not well-formed XML: {message}; skipped"
                ));
                continue;
            }
        };
        match reader(doc.root_element()) {
            Ok(c) => {
                summary.files += 1;
                summary.passed += c.passed;
                summary.failed += c.failed;
                summary.errors += c.errors;
                summary.skipped += c.skipped;
                if let Some(t) = c.ms {
                    ms = Some(ms.unwrap_or(0.0) + t);
                }
            }
            Err(e) => problems.push(format!(
                "{name}: {e}, so it is not a {} report; skipped",
                group.file_format.name()
            )),
        }
    }
    summary.total = summary.passed + summary.failed + summary.errors + summary.skipped;
    // `as` saturates: an absurd sum becomes u64::MAX, not a wrapped value.
    summary.duration_ms = ms.map(|t| t.round() as u64);
    if matched == 0 {
        problems.push(format!(
            "no files match {:?} under {}",
            group.files,
            shown(&base_rel).display()
        ));
    }
}

/// Problem lines, at most [`MAX_PROBLEMS`] of them and a count of the rest.
#[derive(Default)]
struct Problems {
    lines: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, line: String) {
        if self.lines.len() < MAX_PROBLEMS {
            self.lines.push(line);
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.lines
                .push(format!("… and {} more problems", self.more));
        }
        self.lines
    }
}

/// How a path relative to the source is shown (`.` for the source itself).
fn shown(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// The base directory, absolute and relative to the source; every component must be a
/// real directory (a symbolic link is refused, not followed).
fn base_directory(src: &Path, base: Option<&str>) -> Result<(PathBuf, PathBuf), String> {
    let mut dir = src.to_path_buf();
    let mut rel = PathBuf::new();
    let Some(base) = base else {
        return Ok((dir, rel));
    };
    for c in Path::new(base).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => {
                dir.push(part);
                rel.push(part);
                match std::fs::symlink_metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(format!(
                            "base-directory `{base}`: {} is a symbolic link, which reports do not follow",
                            rel.display()
                        ))
                    }
                    _ => return Err(format!("base-directory `{base}` does not exist")),
                }
            }
            _ => {
                return Err(format!(
                    "base-directory `{base}` must be a path inside the source"
                ))
            }
        }
    }
    Ok((dir, rel))
}

/// The bytes of a regular file of at most [`MAX_REPORT_FILE_BYTES`], never through a
/// symbolic link (the walk lists none, and the open refuses one swapped in since).
fn read_report(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO swapped in after the walk must not hang the build.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let too_big = |n: u64| format!("{n} bytes, over the 16 MiB limit for a report file");
    if meta.len() > MAX_REPORT_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_REPORT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_REPORT_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Text of a report file: UTF-16 when it starts with a UTF-16 byte order mark (as some
/// .NET tools write), else UTF-8, with anything invalid replaced (the markup is ASCII in
/// every encoding a report uses, so counting is unaffected).
fn decode(bytes: &[u8]) -> String {
    let utf16 = |be: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if be {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(false),
        [0xFE, 0xFF, ..] => utf16(true),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `row:column` of a parse error and the parser's message without its position. A file
/// cut short (a test run killed while writing) is placed at its end, not at 1:1.
fn xml_error(text: &str, e: &roxmltree::Error) -> (String, String) {
    let pos = match e {
        roxmltree::Error::UnclosedRootNode | roxmltree::Error::UnexpectedEndOfStream => {
            let row = text.matches('\n').count() + 1;
            let col = text.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            roxmltree::TextPos::new(row as u32, col as u32)
        }
        _ => e.pos(),
    };
    let message = e.to_string().replace(&format!(" at {}", e.pos()), "");
    (pos.to_string(), message)
}

fn is(node: &roxmltree::Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name
}

/// A non-negative duration written as a decimal number; also accepts `1,234.5` (Surefire
/// under some locales) and `0,5` (a decimal comma).
fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    let text = if text.contains('.') {
        text.replace(',', "")
    } else {
        text.replace(',', ".")
    };
    text.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t >= 0.0)
}

/// Milliseconds of `node`: its own `attr` (times `scale` to make milliseconds), or else
/// the sum over its children named in `kinds`; `None` when nothing gives a time.
fn duration(
    node: roxmltree::Node<'_, '_>,
    attr: &str,
    scale: f64,
    kinds: &[&str],
    depth: usize,
) -> Option<f64> {
    if let Some(t) = node.attribute(attr).and_then(number) {
        return Some(t * scale);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut sum = None;
    for child in node.children() {
        if kinds.iter().any(|k| is(&child, k)) {
            if let Some(t) = duration(child, attr, scale, kinds, depth + 1) {
                sum = Some(sum.unwrap_or(0.0) + t);
            }
        }
    }
    sum
}

fn expect_root(root: roxmltree::Node<'_, '_>, names: &[&str]) -> Result<(), String> {
    if names.iter().any(|n| is(&root, n)) {
        return Ok(());
    }
    let names: Vec<_> = names.iter().map(|n| format!("<{n}>")).collect();
    Err(format!(
        "its root element is <{}>, not {}",
        root.tag_name().name(),
        names.join(" or ")
    ))
}

/// JUnit XML (Surefire, pytest, jest-junit, Gradle, go-junit-report, …).
fn junit(root: roxmltree::Node<'_, '_>) -> Result<Counts, String> {
    expect_root(root, &["testsuites", "testsuite"])?;
    let mut c = Counts::default();
    for case in root.descendants().filter(|n| is(n, "testcase")) {
        let has = |name: &str| case.children().any(|n| is(&n, name));
        if has("failure") {
            c.failed += 1;
        } else if has("error") {
            c.errors += 1;
        } else if has("skipped") {
            c.skipped += 1;
        } else {
            c.passed += 1;
        }
    }
    c.ms = duration(root, "time", 1000.0, &["testsuite", "testcase"], 0);
    Ok(c)
}

/// TestNG's `testng-results.xml`.
fn testng(root: roxmltree::Node<'_, '_>) -> Result<Counts, String> {
    expect_root(root, &["testng-results"])?;
    let mut c = Counts::default();
    for method in root.descendants().filter(|n| is(n, "test-method")) {
        if method.attribute("is-config") == Some("true") {
            continue;
        }
        match method.attribute("status") {
            Some("PASS") => c.passed += 1,
            Some("SKIP") => c.skipped += 1,
            _ => c.failed += 1,
        }
    }
    c.ms = duration(
        root,
        "duration-ms",
        1.0,
        &["suite", "test", "class", "test-method"],
        0,
    );
    Ok(c)
}

/// NUnit 3's `TestResult.xml`.
fn nunit3(root: roxmltree::Node<'_, '_>) -> Result<Counts, String> {
    expect_root(root, &["test-run", "test-suite"])?;
    let mut c = Counts::default();
    for case in root.descendants().filter(|n| is(n, "test-case")) {
        match (case.attribute("result"), case.attribute("label")) {
            (Some("Passed" | "Warning"), _) => c.passed += 1,
            (Some("Skipped" | "Inconclusive"), _) => c.skipped += 1,
            (Some("Failed"), Some("Error" | "Invalid" | "Cancelled")) => c.errors += 1,
            _ => c.failed += 1,
        }
    }
    c.ms = duration(root, "duration", 1000.0, &["test-suite", "test-case"], 0);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(files: &[&str], base: Option<&str>, format: ReportFormat) -> ReportGroup {
        ReportGroup {
            name: "unit".into(),
            files: files.iter().map(|s| s.to_string()).collect(),
            base_directory: base.map(str::to_string),
            file_format: format,
        }
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `(files, total, passed, failed, errors, skipped)`.
    fn counts(s: &ReportSummary) -> (usize, u64, u64, u64, u64, u64) {
        (s.files, s.total, s.passed, s.failed, s.errors, s.skipped)
    }

    const SUREFIRE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd" version="3.0" name="com.example.CalculatorTest" time="1,234.5" tests="4" errors="1" skipped="1" failures="1">
  <properties>
    <property name="java.version" value="17.0.9"/>
    <property name="testcase" value="not a test case"/>
  </properties>
  <testcase name="adds" classname="com.example.CalculatorTest" time="0.004"/>
  <testcase name="divides" classname="com.example.CalculatorTest" time="0.012">
    <failure message="expected: &lt;2&gt; but was: &lt;3&gt;" type="org.opentest4j.AssertionFailedError"><![CDATA[org.opentest4j.AssertionFailedError: expected: <2> but was: <3>
	at com.example.CalculatorTest.divides(CalculatorTest.java:21)
]]></failure>
    <system-out><![CDATA[dividing <testcase>
]]></system-out>
  </testcase>
  <testcase name="connects" classname="com.example.CalculatorTest" time="0.001">
    <error message="Connection refused" type="java.net.ConnectException">java.net.ConnectException: Connection refused</error>
  </testcase>
  <testcase name="later" classname="com.example.CalculatorTest" time="0">
    <skipped message="not yet"/>
  </testcase>
</testsuite>
"#;

    const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.052" timestamp="2024-05-01T10:00:00.000000+00:00" hostname="runner"><testcase classname="tests.test_app" name="test_ok" time="0.001" /><testcase classname="tests.test_app" name="test_params[1-2]" time="0.001" /><testcase classname="tests.test_app" name="test_bad" time="0.002"><failure message="assert 1 == 2">def test_bad():
&gt;       assert 1 == 2
E       assert 1 == 2

tests/test_app.py:9: AssertionError</failure></testcase><testcase classname="tests.test_app" name="test_fixture" time="0.000"><error message="failed on setup with &quot;RuntimeError: db down&quot;">RuntimeError: db down</error></testcase><testcase classname="tests.test_app" name="test_later" time="0.000"><skipped type="pytest.skip" message="later">tests/test_app.py:20: later</skipped></testcase></testsuite></testsuites>"#;

    const JEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="3" failures="1" errors="0" time="2.5">
  <testsuite name="sum" errors="0" failures="1" skipped="1" timestamp="2024-05-01T10:00:00" time="1.5" tests="3">
    <testcase classname="sum adds" name="sum adds" time="0.003">
    </testcase>
    <testcase classname="sum subtracts" name="sum subtracts" time="0.01">
      <failure>Error: expect(received).toBe(expected)</failure>
    </testcase>
    <testcase classname="sum multiplies" name="sum multiplies" time="0">
      <skipped/>
    </testcase>
  </testsuite>
</testsuites>
"#;

    #[test]
    fn junit_from_surefire_pytest_and_jest() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "target/surefire-reports/TEST-Calc.xml", SUREFIRE);
        let s = collect(
            d.path(),
            &group(&["**/TEST-*.xml"], None, ReportFormat::JunitXml),
        );
        assert_eq!(counts(&s), (1, 4, 1, 1, 1, 1), "{s:?}");
        assert_eq!(s.duration_ms, Some(1_234_500), "`1,234.5` seconds");
        assert!(s.problems.is_empty(), "{s:?}");
        assert_eq!((s.name.as_str(), s.format.as_str()), ("unit", "JUNITXML"));

        write(d.path(), "reports/pytest.xml", PYTEST);
        let s = collect(
            d.path(),
            &group(&["pytest.xml"], Some("reports"), ReportFormat::JunitXml),
        );
        assert_eq!(counts(&s), (1, 5, 2, 1, 1, 1), "{s:?}");
        assert_eq!(
            s.duration_ms,
            Some(52),
            "the suite's time, not its cases' sum"
        );

        write(d.path(), "reports/jest/junit.xml", JEST);
        let s = collect(
            d.path(),
            &group(&["**/*.xml"], Some("./reports"), ReportFormat::JunitXml),
        );
        assert_eq!(counts(&s), (2, 8, 3, 2, 1, 2), "{s:?}");
        assert_eq!(s.duration_ms, Some(2_552), "52 ms + 2.5 s");
        assert!(s.problems.is_empty(), "{s:?}");
    }

    #[test]
    fn junit_nesting_and_missing_times() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "nested.xml",
            r#"<testsuites>
  <testsuite name="outer">
    <testcase name="a" time="0.5"/>
    <testsuite name="inner" time="1">
      <testcase name="b" time="0.25"><failure/></testcase>
      <testsuite name="innermost"><testcase name="c" time="0.125"/></testsuite>
    </testsuite>
  </testsuite>
</testsuites>"#,
        );
        write(
            d.path(),
            "untimed.xml",
            r#"<testsuite name="t"><testcase name="a"/><testcase name="b"><skipped/></testcase></testsuite>"#,
        );
        let s = collect(
            d.path(),
            &group(&["nested.xml"], None, ReportFormat::JunitXml),
        );
        assert_eq!(counts(&s), (1, 3, 2, 1, 0, 0), "{s:?}");
        // outer has no time: its case (0.5) plus inner's own time (1, not 0.25 + 0.125).
        assert_eq!(s.duration_ms, Some(1_500));
        let s = collect(
            d.path(),
            &group(&["untimed.xml"], None, ReportFormat::JunitXml),
        );
        assert_eq!(counts(&s), (1, 2, 1, 0, 0, 1), "{s:?}");
        assert_eq!(s.duration_ms, None);
        let s = collect(d.path(), &group(&["*.xml"], None, ReportFormat::JunitXml));
        assert_eq!((s.files, s.total, s.duration_ms), (2, 5, Some(1_500)));
    }

    #[test]
    fn malformed_and_foreign_files_are_skipped_with_their_position() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "r/good.xml", JEST);
        write(
            d.path(),
            "r/bad.xml",
            "<testsuite>\n  <testcase name=\"a\">\n  </testsuite>\n",
        );
        write(
            d.path(),
            "r/cut.xml",
            "<testsuites>\n  <testsuite>\n    <testcase name=\"a",
        );
        write(
            d.path(),
            "r/pom.xml",
            "<project><modelVersion>4.0.0</modelVersion></project>",
        );
        write(d.path(), "r/empty.xml", "");
        write(d.path(), "r/binary.xml", "\u{0}\u{1}PK\u{3}\u{4}");
        let s = collect(
            d.path(),
            &group(&["**/*.xml"], Some("r"), ReportFormat::JunitXml),
        );
        assert_eq!(
            counts(&s),
            (1, 3, 1, 1, 0, 1),
            "only good.xml counts: {s:?}"
        );
        assert_eq!(s.problems.len(), 5, "{:#?}", s.problems);
        let find = |file: &str| {
            s.problems
                .iter()
                .find(|p| p.starts_with(file))
                .unwrap_or_else(|| panic!("no problem for {file}: {:#?}", s.problems))
        };
        assert_eq!(
            find("r/bad.xml"),
            "r/bad.xml:3:3: not well-formed XML: expected 'testcase' tag, not 'testsuite'; skipped"
        );
        assert_eq!(
            find("r/cut.xml"),
            "r/cut.xml:3:22: not well-formed XML: unexpected end of stream; skipped",
            "placed at its end, not at 1:1"
        );
        assert_eq!(
            find("r/pom.xml"),
            "r/pom.xml: its root element is <project>, not <testsuites> or <testsuite>, so it is not a JUNITXML report; skipped"
        );
        assert!(find("r/empty.xml").contains("not well-formed XML"));
        assert!(find("r/binary.xml").contains("not well-formed XML"));
    }

    #[test]
    fn symlinks_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret/TEST-x.xml", SUREFIRE);
        write(d.path(), "reports/own.xml", JEST);
        let link = |target: &Path, at: &str| {
            std::os::unix::fs::symlink(target, d.path().join(at)).unwrap();
        };
        link(
            &outside.path().join("secret/TEST-x.xml"),
            "reports/linked.xml",
        );
        link(&outside.path().join("secret"), "reports/dir");
        link(&outside.path().join("secret"), "via");
        let s = collect(
            d.path(),
            &group(&["**/*.xml"], None, ReportFormat::JunitXml),
        );
        assert_eq!(
            counts(&s),
            (1, 3, 1, 1, 0, 1),
            "only reports/own.xml: {s:?}"
        );
        assert!(s.problems.is_empty(), "{s:?}");

        let s = collect(
            d.path(),
            &group(&["**/*.xml"], Some("via"), ReportFormat::JunitXml),
        );
        assert_eq!(s.files, 0);
        assert_eq!(
            s.problems,
            vec!["base-directory `via`: via is a symbolic link, which reports do not follow"]
        );

        // A link swapped in after the walk is refused by the open itself.
        let err = read_report(&d.path().join("reports/linked.xml")).unwrap_err();
        assert!(err.starts_with("cannot open"), "{err}");
    }

    #[test]
    fn empty_selections_and_bad_groups_say_why() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "out/readme.txt", "not a report");
        let s = collect(
            d.path(),
            &group(&["**/*.xml"], None, ReportFormat::JunitXml),
        );
        assert_eq!(counts(&s), (0, 0, 0, 0, 0, 0));
        assert_eq!(s.duration_ms, None);
        assert_eq!(s.problems, vec![r#"no files match ["**/*.xml"] under ."#]);
        let s = collect(
            d.path(),
            &group(&["*.xml"], Some("out"), ReportFormat::JunitXml),
        );
        assert_eq!(s.problems, vec![r#"no files match ["*.xml"] under out"#]);
        let s = collect(
            d.path(),
            &group(&["*.xml"], Some("missing"), ReportFormat::JunitXml),
        );
        assert_eq!(s.problems, vec!["base-directory `missing` does not exist"]);
        let s = collect(
            d.path(),
            &group(&["*.xml"], Some("../x"), ReportFormat::JunitXml),
        );
        assert!(
            s.problems[0].contains("must be a path inside the source"),
            "{s:?}"
        );
        let s = collect(d.path(), &group(&["a/[b"], None, ReportFormat::JunitXml));
        assert!(s.problems[0].starts_with("report pattern `a/[b`"), "{s:?}");
        let s = collect(d.path(), &group(&["*"], None, ReportFormat::CucumberJson));
        assert_eq!(s.problems, vec!["format CUCUMBERJSON is not supported yet"]);
        assert_eq!(s.format, "CUCUMBERJSON");
    }

    #[test]
    fn oversized_files_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(d.path().join("huge.xml")).unwrap();
        f.set_len(MAX_REPORT_FILE_BYTES + 1).unwrap();
        write(d.path(), "ok.xml", JEST);
        let s = collect(d.path(), &group(&["*.xml"], None, ReportFormat::JunitXml));
        assert_eq!(s.files, 1);
        assert_eq!(
            s.problems,
            vec!["huge.xml: 16777217 bytes, over the 16 MiB limit for a report file; skipped"]
        );
    }

    #[test]
    fn problems_are_capped() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..MAX_PROBLEMS + 7 {
            write(d.path(), &format!("bad{i:03}.xml"), "<testsuite>");
        }
        let s = collect(d.path(), &group(&["*.xml"], None, ReportFormat::JunitXml));
        assert_eq!(s.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(s.problems.last().unwrap(), "… and 7 more problems");
    }

    #[test]
    fn encodings() {
        let d = tempfile::tempdir().unwrap();
        let mut utf16 = vec![0xFF, 0xFE];
        let text =
            r#"<?xml version="1.0" encoding="utf-16"?><testsuite><testcase name="é"/></testsuite>"#;
        utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        std::fs::write(d.path().join("utf16.xml"), utf16).unwrap();
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><testsuite><testcase name=\"caf\xE9\"><failure/></testcase></testsuite>");
        std::fs::write(d.path().join("latin1.xml"), bom).unwrap();
        let s = collect(d.path(), &group(&["*.xml"], None, ReportFormat::JunitXml));
        assert_eq!(counts(&s), (2, 2, 1, 1, 0, 0), "{s:?}");
    }

    #[test]
    fn testng_results() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "target/surefire-reports/testng-results.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testng-results ignored="0" total="4" passed="1" failed="1" skipped="1">
  <reporter-output>
  </reporter-output>
  <suite started-at="2024-05-01T10:00:00 UTC" name="Surefire suite" finished-at="2024-05-01T10:00:01 UTC" duration-ms="812">
    <groups>
    </groups>
    <test started-at="2024-05-01T10:00:00 UTC" name="Surefire test" finished-at="2024-05-01T10:00:01 UTC" duration-ms="800">
      <class name="com.example.ShopTest">
        <test-method is-config="true" signature="setUp()[pri:0, instance:com.example.ShopTest@1]" name="setUp" duration-ms="5" status="PASS" finished-at="x" started-at="x"/>
        <test-method signature="buys()" name="buys" duration-ms="20" status="PASS" finished-at="x" started-at="x"/>
        <test-method signature="pays()" name="pays" duration-ms="31" status="FAIL" finished-at="x" started-at="x">
          <exception class="java.lang.AssertionError">
            <message><![CDATA[expected [true] but found [false]]]></message>
          </exception>
        </test-method>
        <test-method signature="ships()" name="ships" duration-ms="0" status="SKIP" finished-at="x" started-at="x"/>
        <test-method is-config="true" signature="tearDown()" name="tearDown" duration-ms="1" status="FAIL" finished-at="x" started-at="x"/>
      </class>
    </test>
  </suite>
</testng-results>
"#,
        );
        let s = collect(
            d.path(),
            &group(&["**/testng-results.xml"], None, ReportFormat::TestNgXml),
        );
        assert_eq!(counts(&s), (1, 3, 1, 1, 0, 1), "{s:?}");
        assert_eq!(s.duration_ms, Some(812));
        let s = collect(
            d.path(),
            &group(&["**/testng-results.xml"], None, ReportFormat::JunitXml),
        );
        assert!(
            s.problems[0].contains("its root element is <testng-results>"),
            "{s:?}"
        );
    }

    #[test]
    fn nunit3_results() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "TestResult.xml",
            r#"<?xml version="1.0" encoding="utf-8" standalone="no"?>
<test-run id="0" runstate="Runnable" testcasecount="6" result="Failed" label="Error" total="6" passed="2" failed="2" warnings="0" inconclusive="1" skipped="1" asserts="3" engine-version="3.16.3.0" clr-version="4.0.30319.42000" start-time="2024-05-01 10:00:00Z" end-time="2024-05-01 10:00:01Z" duration="0.5">
  <test-suite type="Assembly" id="0-1008" name="Shop.Tests.dll" fullname="/src/Shop.Tests.dll" runstate="Runnable" testcasecount="6" result="Failed" total="6" duration="0.42">
    <test-suite type="TestFixture" id="0-1000" name="CartTests" fullname="Shop.Tests.CartTests" testcasecount="6" result="Failed">
      <test-case id="0-1001" name="Adds" fullname="Shop.Tests.CartTests.Adds" result="Passed" duration="0.01" asserts="1"/>
      <test-case id="0-1002" name="Warns" fullname="Shop.Tests.CartTests.Warns" result="Warning" duration="0.01"/>
      <test-case id="0-1003" name="Totals" fullname="Shop.Tests.CartTests.Totals" result="Failed" duration="0.02">
        <failure><message><![CDATA[Expected: 3 But was: 4]]></message></failure>
      </test-case>
      <test-case id="0-1004" name="Throws" fullname="Shop.Tests.CartTests.Throws" result="Failed" label="Error" duration="0.01">
        <failure><message><![CDATA[System.NullReferenceException]]></message></failure>
      </test-case>
      <test-case id="0-1005" name="Later" fullname="Shop.Tests.CartTests.Later" result="Skipped" label="Ignored"/>
      <test-case id="0-1006" name="Maybe" fullname="Shop.Tests.CartTests.Maybe" result="Inconclusive" duration="0"/>
    </test-suite>
  </test-suite>
</test-run>
"#,
        );
        let s = collect(d.path(), &group(&["*.xml"], None, ReportFormat::Nunit3Xml));
        assert_eq!(counts(&s), (1, 6, 2, 1, 1, 2), "{s:?}");
        assert_eq!(s.duration_ms, Some(500));
    }

    #[test]
    fn summaries_serialize() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "j.xml", JEST);
        let s = collect(d.path(), &group(&["j.xml"], None, ReportFormat::JunitXml));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""format":"JUNITXML""#), "{json}");
        assert_eq!(serde_json::from_str::<ReportSummary>(&json).unwrap(), s);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let d = tempfile::tempdir().unwrap();
        let n = 100_000;
        let text = format!(
            "{}<testcase time=\"1\"/>{}",
            "<testsuite>".repeat(n),
            "</testsuite>".repeat(n)
        );
        write(d.path(), "deep.xml", &text);
        let s = collect(
            d.path(),
            &group(&["deep.xml"], None, ReportFormat::JunitXml),
        );
        assert_eq!(s.total, 1, "{s:?}");
    }
}
