//! Talking to the node: `fleet node` itself, and the client side of `ps`,
//! `send`, `start`/`stop`, `heartbeats` and `peers` when `--local` is not given.

use crate::context::Paths;
use crate::exit::{self, CliError, Code};
use anyhow::anyhow;
use fleet_node::client::{self, Target};
use fleet_node::config::NodeConfig;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The node config [default: $MOSAIC_HOME/fleet/node.yaml, if present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// A runtime for the CLI's own calls (small: the CLI makes a handful).
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(exit::failed)
}

/// Where the node is: `FLEET_NODE=https://host:port` (with the operator
/// certificate in the certs dir), else a saved context (`FLEET_CONTEXT`, or
/// the current one: `fleet context`), else the local socket. A broken
/// contexts file or an unknown context is said on stderr, and the local
/// socket is used.
pub fn target() -> Target {
    let paths = Paths::from_env();
    let certs_dir = std::env::var_os("FLEET_CERTS_DIR").map(PathBuf::from).unwrap_or_else(|| paths.certs_dir());
    if let Some(url) = std::env::var("FLEET_NODE").ok().filter(|s| !s.is_empty()) {
        return Target::Remote { url, certs_dir };
    }
    let socket = || {
        Target::Socket(
            std::env::var_os("FLEET_SOCKET")
                .map(PathBuf::from)
                .unwrap_or_else(|| paths.mosaic_home.join("fleet/node.sock")),
        )
    };
    match crate::targets::chosen(&paths) {
        Ok(Some(s)) => Target::Remote { url: s.node, certs_dir: s.certs },
        Ok(None) => socket(),
        Err(e) => {
            eprintln!("fleet: {e}; using this host's node socket");
            socket()
        }
    }
}

/// Map a client error to exit 3 (or 2 for a bad FLEET_NODE).
pub fn unreachable(e: client::ClientError) -> CliError {
    match e {
        client::ClientError::BadUrl(_) | client::ClientError::Credentials { .. } => exit::usage(e),
        client::ClientError::NoNode(_) | client::ClientError::Remote(_) => exit::unreachable(e),
    }
}

/// Map a gRPC status to an exit code, keeping the node's message. A call cut
/// at the transport (the node refused or dropped the connection) is exit 3.
pub fn status(s: tonic::Status) -> CliError {
    // A status made on this side of the wire (the connection to our node broke)
    // carries its cause as a source; one sent by the node (a peer it could not
    // reach) names that peer in its message.
    let local = (s.code() == tonic::Code::Unknown && s.message() == "transport error")
        || (std::error::Error::source(&s).is_some()
            && matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled));
    if !local && matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) {
        return CliError::new(Code::Unreachable, anyhow!("{}", s.message()));
    }
    if local && let Some(failure) = explain(&s) {
        return CliError::new(Code::Unreachable, anyhow!("{failure}"));
    }
    if local {
        let mut why = s.message().to_string();
        let mut src = std::error::Error::source(&s);
        while let Some(e) = src {
            why.push_str(&format!(": {e}"));
            src = e.source();
        }
        return CliError::new(
            Code::Unreachable,
            anyhow!("the fleet node at {} did not answer the call ({why})", target().describe()),
        );
    }
    let code = match s.code() {
        tonic::Code::InvalidArgument => Code::Usage,
        _ => Code::Failed,
    };
    let what = match s.code() {
        tonic::Code::PermissionDenied => "permission denied: ",
        tonic::Code::Unauthenticated => "not authenticated: ",
        _ => "",
    };
    CliError::new(code, anyhow!("{what}{}", s.message()))
}

/// Why a call to a remote node failed on its connection ([`client::explain_call`], which may
/// dial the node once more). Callers are inside the CLI's runtime, so it runs on a thread of
/// its own; it is only ever asked after a failure.
fn explain(s: &tonic::Status) -> Option<client::Failure> {
    let target = target();
    if !matches!(target, Target::Remote { .. }) {
        return None;
    }
    std::thread::scope(|scope| {
        scope.spawn(|| runtime().ok()?.block_on(client::explain_call(&target, s))).join().ok().flatten()
    })
}

pub fn run(args: NodeArgs) -> Result<(), CliError> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = NodeConfig::load(args.config.as_deref(), &env).map_err(exit::usage)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let exe = std::env::current_exe().map_err(exit::failed)?;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(exit::failed)?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let grace = cfg.timings.shutdown_grace;
    let result = rt.block_on(fleet_node::server::run(cfg, exe, cancel));
    // Blocking work still running (a probe, a send) gets the grace period, not forever.
    rt.shutdown_timeout(grace);
    result.map_err(|e| match e {
        fleet_node::server::NodeError::Config(m) => exit::usage(anyhow!(m)),
        fleet_node::server::NodeError::Serve(m) => exit::failed(anyhow!(m)),
    })
}
