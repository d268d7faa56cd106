//! Real peers for the tests: an SMTP server (aiosmtpd) and an HTTP webhook receiver.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{eventually, peers_required};

/// The Python that has aiosmtpd: Debian's (python3-aiosmtpd) or the first on PATH.
pub fn python_with_aiosmtpd() -> Option<String> {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(python.to_string());
        }
    }
    if peers_required() {
        panic!("aiosmtpd is required (SLIPWAY_REQUIRE_PEERS=1) but missing: apt-get install python3-aiosmtpd");
    }
    eprintln!("SKIPPED: aiosmtpd is not installed (apt-get install python3-aiosmtpd); set SLIPWAY_REQUIRE_PEERS=1 to make this a failure");
    None
}

/// One received mail.
#[derive(Debug, Clone)]
pub struct Mail {
    pub raw: String,
}

impl Mail {
    /// A header's value (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body (decoded only as far as 7bit/8bit text goes).
    pub fn body(&self) -> String {
        self.raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
}

/// A real SMTP server (aiosmtpd) on a loopback port.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl SmtpSink {
    /// Starts the sink on `port` (0: any); the first `tempfail` messages get a 451.
    pub fn start(python: &str, dir: &Path, port: u16, tempfail: u32) -> SmtpSink {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/smtp_sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([
                "--port",
                &port.to_string(),
                "--tempfail",
                &tempfail.to_string(),
                "--dir",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP sink starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        SmtpSink {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Every mail received so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort_by_key(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('-').next())
                .and_then(|n| n.parse::<u128>().ok())
                .unwrap_or(0)
        });
        names
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|raw| Mail {
                raw: String::from_utf8_lossy(&raw).into_owned(),
            })
            .collect()
    }

    /// Waits until at least `n` mails arrived (or `timeout`); returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        eventually(timeout, || self.mails().len() >= n);
        self.mails()
    }

    /// Stops the server (the port is free again).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that records requests and answers with a status the test sets.
pub struct WebhookReceiver {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub status: Arc<Mutex<u16>>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(200u16));
        let (r, s) = (received.clone(), status.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &r, &s);
                });
            }
        });
        WebhookReceiver {
            port,
            received,
            status,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }
}

fn serve_one(
    stream: std::net::TcpStream,
    received: &Mutex<Vec<Received>>,
    status: &Mutex<u16>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    received.lock().unwrap().push(Received {
        method,
        path,
        headers,
        body,
    });
    let code = *status.lock().unwrap();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()
}

/// The tag of the small image the Docker executor tests build locally (no registry can
/// be reached: it is made with `docker import` from Debian's static busybox and bash).
pub const BUILD_IMAGE: &str = "slipway-test/build:1";

/// A Docker engine with [`BUILD_IMAGE`] (made on first use), or `None` (skip) when there
/// is no engine or no static busybox/bash to make the image from.
pub fn docker_build_image() -> Option<&'static str> {
    static READY: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    match READY.get_or_init(make_build_image) {
        Ok(()) => Some(BUILD_IMAGE),
        Err(why) => {
            if peers_required() {
                panic!("the Docker executor tests need {why} (SLIPWAY_REQUIRE_PEERS=1)");
            }
            eprintln!("SKIPPED: no {why}; set SLIPWAY_REQUIRE_PEERS=1 to make this a failure");
            None
        }
    }
}

fn make_build_image() -> Result<(), String> {
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    if !engine.is_ok_and(|o| o.status.success()) {
        return Err("running Docker engine (docker version failed)".into());
    }
    let present = Command::new("docker")
        .args(["image", "inspect", BUILD_IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    let (busybox, bash) = (Path::new("/bin/busybox"), Path::new("/bin/bash-static"));
    if !busybox.exists() || !bash.exists() {
        return Err("static busybox and bash to build the test image (apt-get install busybox-static bash-static)".into());
    }
    // A root filesystem: busybox with its applets, bash, users for run-as, /tmp.
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let r = root.path();
    for d in ["bin", "etc", "tmp", "root", "home/builder"] {
        std::fs::create_dir_all(r.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(busybox, r.join("bin/busybox")).map_err(|e| e.to_string())?;
    std::fs::copy(bash, r.join("bin/bash")).map_err(|e| e.to_string())?;
    let applets = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| e.to_string())?;
    for name in String::from_utf8_lossy(&applets.stdout).lines() {
        if name != "bash" && !name.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(name));
        }
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        r.join("etc/group"),
        "root:x:0:\nbuilder:x:1000:\nnogroup:x:65534:\n",
    )
    .map_err(|e| e.to_string())?;
    let chmod = Command::new("chmod")
        .args(["1777"])
        .arg(r.join("tmp"))
        .status();
    let chown = Command::new("chown")
        .args(["1000:1000"])
        .arg(r.join("home/builder"))
        .status();
    if !chmod.is_ok_and(|s| s.success()) || !chown.is_ok_and(|s| s.success()) {
        return Err("a writable /tmp in the test image (chmod/chown failed)".into());
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(r)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let Some(tar_out) = tar.stdout else {
        return Err("tar output".into());
    };
    let import = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/bin",
            "--change",
            "CMD [\"/bin/sh\"]",
            "-",
            BUILD_IMAGE,
        ])
        .stdin(tar_out)
        .output()
        .map_err(|e| e.to_string())?;
    if !import.status.success() {
        return Err(format!(
            "a test image (docker import failed: {})",
            String::from_utf8_lossy(&import.stderr).trim()
        ));
    }
    Ok(())
}

/// A real Prometheus server scraping loopback targets every second, killed when dropped.
pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    /// Starts `binary` (from [`crate::harness::require_peer`]) in `dir`, scraping
    /// `127.0.0.1:PORT/metrics` for each of `targets`.
    pub fn start(binary: &Path, dir: &Path, targets: &[u16]) -> Prometheus {
        let list: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        // Prometheus cannot report a port it chose itself, so try a few until one binds.
        for attempt in 0..10u16 {
            let port = 20000 + (std::process::id() as u16 % 20000) + attempt * 7;
            let mut child = Command::new(binary)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("data{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.join(format!("prometheus{attempt}.log"))).unwrap(),
                )
                .spawn()
                .unwrap();
            let up = eventually(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(None))
                    && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Prometheus { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "prometheus did not start on any port; see {}",
            dir.display()
        );
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /api/v1/query?query=…` (the query given already URL-encoded).
    pub fn query(&self, encoded: &str) -> String {
        crate::harness::http_get(self.port, &format!("/api/v1/query?query={encoded}")).1
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback `/metrics` endpoint whose text the test sets.
pub struct MetricsEndpoint {
    pub port: u16,
    text: Arc<Mutex<String>>,
}

impl MetricsEndpoint {
    pub fn start(text: &str) -> MetricsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let text = Arc::new(Mutex::new(text.to_string()));
        let shared = text.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let body = shared.lock().unwrap().clone();
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    // Read the request head; the answer is the same for every path.
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) if line.trim_end().is_empty() => break,
                            Ok(_) => {}
                        }
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        MetricsEndpoint { port, text }
    }

    /// What the next scrape sees.
    pub fn set(&self, text: &str) {
        *self.text.lock().unwrap() = text.to_string();
    }
}
