//! The HTTP listener over HTTPS (`http.tls`): a private CA and a server certificate made
//! with the `openssl` CLI at test time; a real `slipway-agent` that trusts the CA with
//! `--ca` deploys through it, one that does not is refused at the handshake; and the
//! server will not serve plain HTTP beyond loopback or start with a broken certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::deployments::{
    agent_binary, agent_token, app_work, build_done, revision, start_agent_via, wait_deployment,
    Connection,
};
use crate::harness::*;

/// A private CA and a certificate it signed for 127.0.0.1 and localhost.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A key that belongs to no certificate here.
    other_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args)).ok();
}

/// Makes the CA and the server's certificate in `dir`; None (test skipped) without
/// the `openssl` program.
fn make_pki(dir: &Path) -> Option<Pki> {
    require_peer("openssl", "apt-get install openssl")?;
    std::fs::create_dir_all(dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=slipway test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-nodes"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            "other.key",
        ],
    );
    Some(Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_key: dir.join("other.key"),
    })
}

/// Runs `cmd`, which must end by itself within a minute (a server that starts when it
/// should have refused is killed and the test fails).
fn run_to_end(cmd: &mut Command) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not end:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `slipway-agent register` against `url` with a fresh token and its own state.
fn register(s: &Server, name: &str, url: &str, extra: &[&str]) -> Out {
    let token = agent_token(s, &["role=web"]);
    run(Command::new(agent_binary())
        .args([
            "register", "--server", url, "--token", &token, "--name", name,
        ])
        .arg("--state")
        .arg(s.scratch(&format!("agent-{name}-state")))
        .args(extra))
}

/// With `http.tls` (relative paths, in the data directory) the listener speaks HTTPS:
/// an agent given the private CA registers and carries a deployment through; without
/// the CA, or with plain http://, it cannot register; /healthz answers over HTTPS.
#[test]
fn an_agent_trusting_the_private_ca_deploys_over_https() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(pki) = make_pki(scratch.path()) else {
        return;
    };
    let s = Server::start_with(Options {
        settings: Some("http:\n  tls:\n    cert: tls/server.pem\n    key: tls/server.key\n".into()),
        data_files: vec![
            ("tls/server.pem", std::fs::read(&pki.cert).unwrap()),
            ("tls/server.key", std::fs::read(&pki.key).unwrap()),
        ],
        ..Options::default()
    });
    let https = format!("https://127.0.0.1:{}", s.http_port);
    let ca = pki.ca.display().to_string();

    if let Some(curl) = require_peer("curl", "apt-get install curl") {
        let healthz = format!("{https}/healthz");
        run(Command::new(&curl).args(["-sS", "--cacert", &ca, &healthz]))
            .ok()
            .says("ok");
        let plain = format!("http://127.0.0.1:{}/healthz", s.http_port);
        run(Command::new(&curl).args(["-sS", "--max-time", "20", &plain]))
            .fails()
            .never_says("ok");
    }

    // The agent's own trust store does not know the private CA.
    register(&s, "no-ca", &https, &[])
        .fails()
        .says("certificate")
        .says("--ca");
    let key = pki.key.display().to_string();
    register(&s, "key-as-ca", &https, &["--ca", &key])
        .fails()
        .says("holds no PEM certificate");
    // Plain HTTP to the HTTPS port gets no answer the agent could take.
    let plain = format!("http://127.0.0.1:{}", s.http_port);
    register(&s, "plain", &plain, &[])
        .fails()
        .says("cannot reach the server")
        .says("use https://")
        .never_says("registered as");
    let list = s.ssh(&s.admin, "agent list --json").ok().stdout;
    assert!(!list.contains("no-ca") && !list.contains("plain"), "{list}");

    s.push_admin_file(
        "deploy.yaml",
        "applications:\n  web:\n    groups:\n      prod:\n        tags: [[\"role=web\"]]\n",
    )
    .ok();
    let agent = start_agent_via(
        &s,
        "web-1",
        &["role=web"],
        &Connection {
            url: https.clone(),
            args: vec!["--ca".into(), ca.clone()],
        },
    );
    let work = app_work(&s);
    revision(&s, &work, "served over https", true);
    s.git(&s.admin, &work, &["push", "-q", &s.url("app-tls"), "main"])
        .ok();
    assert_eq!(build_done(&s, 1)["status"], "SUCCEEDED");
    s.ssh(&s.admin, "deploy create web prod --build 1").ok();
    let done = wait_deployment(&s, 1);
    assert_eq!(done["deployment"]["status"], "SUCCEEDED", "{done:#}");
    assert_eq!(done["hosts"][0]["agent"], "web-1", "{done:#}");
    let page = std::fs::read_to_string(agent.root.join("srv/web/index.html")).unwrap();
    assert_eq!(page, "served over https\n");
}

/// Plain HTTP on an address that is not loopback needs `http.tls` or
/// `http.allow_insecure`; a missing certificate or a key that is not the certificate's
/// stops the start with the file's name; `slipway check` reports the same.
#[test]
fn the_server_refuses_insecure_or_broken_http_settings() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_pki(&dir.path().join("pki")) else {
        return;
    };
    let key = Key::generate(dir.path(), "admin", "ed25519");
    let data = dir.path().join("data");
    run(Command::new(SLIPWAY)
        .arg("init")
        .arg("--data")
        .arg(&data)
        .arg("--admin-key")
        .arg(&key.public))
    .ok();
    let settings = |yaml: &str| std::fs::write(data.join("slipway.yaml"), yaml).unwrap();
    let check = || run(Command::new(SLIPWAY).arg("check").arg("--data").arg(&data));
    // 192.0.2.1 (TEST-NET-1) is not loopback and cannot be bound here: nothing ever
    // listens beyond loopback, even if the refusal were missing.
    let serve = |http: Option<&str>| {
        let mut cmd = Command::new(SLIPWAY);
        cmd.args(["serve", "--ssh-listen", "127.0.0.1:0", "--data"])
            .arg(&data);
        if let Some(address) = http {
            cmd.args(["--http-listen", address]);
        }
        run_to_end(&mut cmd)
    };

    serve(Some("192.0.2.1:0"))
        .fails()
        .says("192.0.2.1:0, which is not a loopback address")
        .says("tls: { cert: CERT.pem, key: KEY.pem }")
        .says("allow_insecure: true");
    settings("http:\n  listen: 192.0.2.1:8080\n");
    check().fails().says("not a loopback address");
    serve(None).fails().says("not a loopback address");
    settings("http:\n  listen: 192.0.2.1:8080\n  allow_insecure: true\n");
    check().ok().never_says("error");

    let tls = |cert: &Path, key: &Path| {
        format!(
            "http:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n",
            cert.display(),
            key.display()
        )
    };
    let missing = dir.path().join("missing.pem");
    settings(&tls(&missing, &pki.key));
    check()
        .fails()
        .says("cannot read the TLS certificate")
        .says("missing.pem");
    serve(Some("127.0.0.1:0"))
        .fails()
        .says("cannot read the TLS certificate")
        .says("missing.pem");
    settings(&tls(&pki.cert, &pki.other_key));
    check()
        .fails()
        .says("other.key cannot serve the certificate in");
    serve(Some("127.0.0.1:0"))
        .fails()
        .says("other.key cannot serve the certificate in")
        .says("server.pem");
    // The CA's certificate is no private key.
    settings(&tls(&pki.cert, &pki.ca));
    serve(Some("127.0.0.1:0"))
        .fails()
        .says("ca.pem holds no PEM private key");

    settings(&tls(&pki.cert, &pki.key));
    check().ok().says("ok    HTTPS certificate");
}

/// A self-signed certificate for 127.0.0.1 in `dir` (`NAME.pem`, `NAME.key`), with the
/// extra `openssl req` arguments given.
fn self_signed(dir: &Path, name: &str, extra: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
    ];
    args.extend(extra);
    openssl(dir, &args);
    (
        std::fs::read(dir.join(&cert)).unwrap(),
        std::fs::read(dir.join(&key)).unwrap(),
    )
}

/// A self-signed certificate given to the agent with `--ca` works when it is not a CA
/// certificate (as docs/deployments.md makes it); the CA certificate a plain
/// `openssl req -x509` makes is refused by the agent, which says how to make it right.
#[test]
fn a_self_signed_certificate_works_when_it_is_not_a_ca_certificate() {
    let scratch = tempfile::tempdir().unwrap();
    if require_peer("openssl", "apt-get install openssl").is_none() {
        return;
    }
    let (ca_cert, ca_key) = self_signed(scratch.path(), "as-ca", &[]);
    let (cert, key) = self_signed(
        scratch.path(),
        "leaf",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    );
    let mut s = Server::start_with(Options {
        settings: Some("http:\n  tls: { cert: server.pem, key: server.key }\n".into()),
        data_files: vec![("server.pem", ca_cert), ("server.key", ca_key)],
        ..Options::default()
    });
    let https = |s: &Server| format!("https://127.0.0.1:{}", s.http_port);
    let trust = scratch.path().join("as-ca.pem").display().to_string();
    register(&s, "web-1", &https(&s), &["--ca", &trust])
        .fails()
        .says("basicConstraints=critical,CA:FALSE");

    s.stop();
    std::fs::write(s.data.join("server.pem"), cert).unwrap();
    std::fs::write(s.data.join("server.key"), key).unwrap();
    s.spawn();
    let trust = scratch.path().join("leaf.pem").display().to_string();
    register(&s, "web-1", &https(&s), &["--ca", &trust])
        .ok()
        .says("registered as web-1");
}
