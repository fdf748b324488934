//! Who and where this CLI runs: `MOSAIC_HOME`, the roster, tenant and host.
//! Every default is resolved here, once.

use crate::exit::{self, CliResult};
use anyhow::{Context as _, anyhow};
use fleet_core::heartbeat::HeartbeatEnv;
use fleet_core::names::DnsLabel;
use fleet_core::roster::Roster;
use std::path::{Path, PathBuf};

/// A command's own arguments, and the overrides of this host's roster and
/// names: only the commands that read the roster take them (`fleet ps --help`
/// shows them, `fleet web pair --help` does not).
#[derive(Debug, clap::Args)]
pub struct WithHost<A: clap::Args> {
    #[command(flatten)]
    pub args: A,
    #[command(flatten)]
    pub host: GlobalArgs,
}

/// Overrides given on the command line (or by `FLEET_*` variables through clap).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GlobalArgs {
    /// The roster file [default: $MOSAIC_HOME/fleet/roster.yaml].
    #[arg(long, env = "FLEET_ROSTER", value_name = "FILE")]
    pub roster: Option<PathBuf>,
    /// The tenant id on records [default: the roster's tenant_id, else the user name].
    #[arg(long, env = "FLEET_TENANT_ID", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// This host's name on records [default: the short hostname].
    #[arg(long = "hostname", env = "FLEET_HOST", value_name = "HOST")]
    pub hostname: Option<String>,
}

/// The paths of this host that do not need the roster.
pub struct Paths {
    pub env: HeartbeatEnv,
    pub mosaic_home: PathBuf,
}

impl Paths {
    pub fn from_env() -> Self {
        let env = HeartbeatEnv::from_lookup(|k| std::env::var(k).ok());
        let mosaic_home = env.mosaic_home();
        Paths { env, mosaic_home }
    }

    pub fn default_roster(&self) -> PathBuf {
        self.mosaic_home.join("fleet/roster.yaml")
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.mosaic_home.join("fleet/certs")
    }
}

/// Everything a local command needs.
pub struct Local {
    pub paths: Paths,
    pub roster_path: PathBuf,
    pub roster: Roster,
    pub tenant_id: String,
    pub host: DnsLabel,
    pub run_dir: PathBuf,
    pub interval_secs: u64,
}

/// Read and parse a roster, with the file named in every error.
pub fn read_roster(path: &Path) -> CliResult<Roster> {
    let text = fleet_core::file::read_to_string(path, fleet_core::file::ROSTER_MAX)
        .with_context(|| {
            format!(
                "cannot read the roster {}: create one (see framework/fleet/presets) or pass --roster",
                path.display()
            )
        })
        .map_err(exit::usage)?;
    Roster::parse(&text).map_err(|e| {
        let shown: Vec<String> = e.problems.iter().map(|p| format!("{}:{p}", path.display())).collect();
        exit::usage(anyhow!(
            "the roster is invalid:\n  {}\n(run `fleet roster check {}`)",
            shown.join("\n  "),
            path.display()
        ))
    })
}

pub use fleet_node::server::{short_hostname, user_name};

impl Local {
    pub fn load(g: &GlobalArgs) -> CliResult<Local> {
        let paths = Paths::from_env();
        let roster_path = g.roster.clone().unwrap_or_else(|| paths.default_roster());
        let roster = read_roster(&roster_path)?;
        let tenant_id = match (&g.tenant, &roster.tenant_id) {
            (Some(t), _) => DnsLabel::parse_as("tenant id", t).map_err(exit::usage)?.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => {
                let user = user_name();
                DnsLabel::sanitize("user name", &user)
                    .map_err(|e| exit::usage(anyhow!("{e}; set the tenant with --tenant or FLEET_TENANT_ID")))?
                    .to_string()
            }
        };
        let host = match &g.hostname {
            Some(h) => DnsLabel::parse_as("host name", h).map_err(exit::usage)?,
            None => DnsLabel::sanitize("host name", &short_hostname())
                .map_err(|e| exit::usage(anyhow!("{e}; set the host with --hostname or FLEET_HOST")))?,
        };
        let interval_secs = paths.env.interval_secs().map_err(|e| exit::usage(anyhow!(e)))?;
        let run_dir = paths.env.run_dir();
        Ok(Local { paths, roster_path, roster, tenant_id, host, run_dir, interval_secs })
    }

    /// Names of the roster agents on this host, for "known agents" hints.
    /// `known: a, b` (and `did you mean ...?`) for an error about agent `name`.
    pub fn known_agents(&self, name: &str) -> String {
        let names: Vec<&str> = self.roster.agents_on(&self.host).map(|a| a.name.as_str()).collect();
        fleet_core::names::known(name, &names)
    }
}
