//! `slipway serve --dev`: a local data directory, made on first use, with the user's own
//! SSH key (or a generated one) as administrator, and a printed quick start.

use std::path::PathBuf;

use anyhow::Context;

use crate::datadir::DataDir;
use crate::serve::BoundAddresses;

/// The key `--dev` makes the administrator, and whether slipway generated it.
pub struct DevKey {
    /// The public key file.
    pub public: PathBuf,
    /// The private key to pass to `ssh -i`, when slipway generated it.
    pub generated_private: Option<PathBuf>,
}

/// Initializes `data` for development when it is not initialized yet.
pub fn prepare(data: &DataDir) -> anyhow::Result<Option<DevKey>> {
    if data.database().exists() && data.host_key().exists() {
        return Ok(None);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let own = home.as_ref().and_then(|h| {
        ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
            .iter()
            .map(|n| h.join(".ssh").join(n))
            .find(|p| p.is_file())
    });
    let key = match own {
        Some(public) => DevKey {
            public,
            generated_private: None,
        },
        None => {
            std::fs::create_dir_all(data.keys())?;
            let private = data.dev_admin_key();
            let public = private.with_extension("pub");
            if !private.exists() {
                let key = crate::ssh::random_ed25519();
                let text = key
                    .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                    .context("cannot encode the generated key")?;
                crate::ssh::write_private(&private, text.as_bytes())?;
                let public_text = key
                    .public_key()
                    .to_openssh()
                    .context("cannot encode the generated key")?;
                std::fs::write(&public, format!("{public_text} slipway-dev-admin\n"))?;
            }
            DevKey {
                public,
                generated_private: Some(private),
            }
        }
    };
    let name = std::env::var("USER")
        .ok()
        .filter(|u| crate::access::config_check_name(u).is_ok())
        .unwrap_or_else(|| "admin".into());
    let report = crate::cli::init::init(data, &key.public, &name)?;
    for line in report.lines {
        eprintln!("  {line}");
    }
    Ok(Some(key))
}

/// The quick start printed once the server listens.
pub fn quick_start(data: &DataDir, bound: &BoundAddresses, key: Option<&PathBuf>) -> String {
    let port = bound.ssh.port();
    let host = bound.ssh.ip();
    let ssh = match key {
        Some(k) => format!("ssh -i {} -p {port}", k.display()),
        None => format!("ssh -p {port}"),
    };
    let git_env = match key {
        Some(k) => format!("GIT_SSH_COMMAND='ssh -i {}' ", k.display()),
        None => String::new(),
    };
    format!(
        "\nslipway is serving (development mode)\n  data:    {data}\n  ssh:     {ssh_addr}\n  metrics: {http}/metrics\n\nStart here:\n  {ssh} git@{host} whoami\n  {ssh} git@{host} help\n  {git_env}git clone ssh://git@{host}:{port}/admin.git      # who may do what: access.yaml\n  {ssh} git@{host} repo create demo\n  {git_env}git clone ssh://git@{host}:{port}/demo.git\n\nStop with Ctrl-C.\n",
        data = data.root().display(),
        ssh_addr = bound.ssh,
        http = bound.http_url,
    )
}
