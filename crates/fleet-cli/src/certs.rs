//! `fleet certs`: the mesh CA and its certificates (`init`, `issue`, `show`, `revoke`;
//! `invite` and `renew` are in [`crate::join`]).
//!
//! Thin: arguments in, `fleet_tls` does the work, paths and facts out. Bad names and
//! refused overwrites exit 2 before anything is written; I/O failures exit 1.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand};
use fleet_tls::show::{self, CertInfo};
use fleet_tls::{CertsDir, Kind, issue, revoke};

use crate::exit::{self, CliResult};
use crate::out;

#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Create the mesh CA of a tenant (once, on the host that will issue certificates)
    Init {
        /// Tenant id of the mesh: a DNS label (letters, digits, '-'; 1-63 characters)
        #[arg(long)]
        tenant: String,
        /// Certs dir [default: $MOSAIC_HOME/fleet/certs]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Replace an existing CA (every certificate it issued stops being trusted)
        #[arg(long)]
        force: bool,
    },
    /// Issue a node, operator or viewer certificate signed by the mesh CA
    Issue {
        #[command(subcommand)]
        what: IssueCmd,
    },
    /// A single-use join token for a new host, from this host's node (the CA host), and the
    /// `fleet join` command to run there
    Invite(crate::join::InviteArgs),
    /// Renew an operator's or viewer's certificate (client.pem/client.key) at the node of
    /// FLEET_NODE, with the current one; nodes renew their own
    Renew(crate::join::RenewArgs),
    /// Show what certificates say and whether they chain to the mesh CA
    Show {
        /// A PEM certificate [default: ca.pem, node.pem and client.pem of the certs dir]
        file: Option<PathBuf>,
        /// Certs dir whose ca.pem the chain is checked against [default: $MOSAIC_HOME/fleet/certs]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// JSON output: an array with one object per certificate
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate: add it to the mesh CA's revocation list (crl.pem), which
    /// nodes and clients that have a copy in their certs dir enforce
    #[command(group(clap::ArgGroup::new("what").required(true).args(["cert", "serial"])))]
    Revoke {
        /// The certificate file to revoke (issued by this CA)
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// Or its serial number, in hex as `fleet certs show` prints it
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// Certs dir holding the mesh CA (ca.pem, ca.key) [default: $MOSAIC_HOME/fleet/certs]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IssueCmd {
    /// A node certificate for a host (DNS SANs <host>.<tenant>.fleet.internal and node.<tenant>.fleet.internal)
    Node {
        /// Host name: a DNS label (letters, digits, '-'; 1-63 characters)
        #[arg(long)]
        host: String,
        #[command(flatten)]
        opts: IssueOpts,
    },
    /// An operator certificate: may list, watch, send, start, stop and attach
    Operator {
        /// Operator name: letters, digits, '_', '-'
        #[arg(long)]
        name: String,
        #[command(flatten)]
        opts: IssueOpts,
    },
    /// A viewer certificate: may list and watch
    Viewer {
        /// Viewer name: letters, digits, '_', '-'
        #[arg(long)]
        name: String,
        #[command(flatten)]
        opts: IssueOpts,
    },
}

#[derive(Debug, Args)]
pub struct IssueOpts {
    /// Days of validity
    #[arg(long, value_name = "N", default_value_t = issue::DEFAULT_LEAF_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(issue::MAX_LEAF_DAYS)))]
    days: u32,
    /// Certs dir holding the mesh CA (ca.pem, ca.key) [default: $MOSAIC_HOME/fleet/certs]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Write a ready certs dir for the holder instead of DIR/issued/: ca.pem plus
    /// node.pem/node.key (nodes) or client.pem/client.key (operators, viewers)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace existing certificate files
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: CertsCmd, default_dir: &Path) -> CliResult {
    let dir_or_default = |dir: Option<PathBuf>| dir.unwrap_or_else(|| default_dir.to_path_buf());
    match cmd {
        CertsCmd::Init { tenant, dir, force } => init(&dir_or_default(dir), &tenant, force),
        CertsCmd::Issue { what } => {
            let (kind, name, opts) = match what {
                IssueCmd::Node { host, opts } => (Kind::Node, host, opts),
                IssueCmd::Operator { name, opts } => (Kind::Operator, name, opts),
                IssueCmd::Viewer { name, opts } => (Kind::Viewer, name, opts),
            };
            let dir = dir_or_default(opts.dir);
            issue_leaf(&dir, kind, &name, opts.days, opts.out.as_deref(), opts.force)
        }
        CertsCmd::Show { file, dir, json } => show_certs(&dir_or_default(dir), file, json),
        CertsCmd::Invite(a) => crate::join::invite(a),
        CertsCmd::Renew(a) => crate::join::renew(a),
        CertsCmd::Revoke { cert, serial, dir, json } => {
            let target = match (&cert, &serial) {
                (Some(c), _) => revoke::Target::Cert(c),
                (None, Some(s)) => revoke::Target::Serial(s),
                (None, None) => unreachable!("clap requires --cert or --serial"),
            };
            revoke_cert(&dir_or_default(dir), target, json)
        }
    }
}

fn revoke_cert(dir: &Path, target: revoke::Target<'_>, json: bool) -> CliResult {
    let done = revoke::revoke(dir, target).map_err(|e| cli_error(e, ""))?;
    if json {
        let v = serde_json::json!({
            "serial": done.serial, "already_revoked": done.already, "crl": done.crl,
            "crl_number": done.number.to_string(), "revoked": done.all,
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(exit::failed)?);
        return Ok(());
    }
    if done.already {
        println!("serial {} is already revoked in {}; nothing was written", done.serial, done.crl.display());
        return Ok(());
    }
    println!("revoked serial {}", done.serial);
    println!("wrote {} (CRL number {}, {} revoked in all)", done.crl.display(), done.number, done.all.len());
    println!(
        "next: copy {} into the certs dir of every host and off-host client \
         ($MOSAIC_HOME/fleet/certs/crl.pem); nodes read it again within a few seconds",
        done.crl.display()
    );
    Ok(())
}

fn init(dir: &Path, tenant: &str, force: bool) -> CliResult {
    let certs = CertsDir::new(dir);
    let had_node = certs.node_cert().exists();
    let done = issue::init_ca(dir, tenant, force).map_err(|e| cli_error(e, "replace the CA"))?;
    println!("created the mesh CA of tenant {}", done.tenant);
    println!("wrote {} (CA private key, 0600: keep it on this host)", done.key.display());
    println!("wrote {} (CA certificate: every host and client of the mesh needs it)", done.cert.display());
    if force && had_node {
        println!(
            "note: {} was issued by the old CA and is no longer trusted: issue a new one with \
             `fleet certs issue node --host HOST --out {} --force`",
            certs.node_cert().display(),
            dir.display()
        );
    }
    println!(
        "next: `fleet node` on this host creates its node certificate on first start, or run \
         `fleet certs issue node --host HOST --out DIR` for another host"
    );
    Ok(())
}

fn issue_leaf(dir: &Path, kind: Kind, name: &str, days: u32, out: Option<&Path>, force: bool) -> CliResult {
    let issued = issue::issue(dir, kind, name, days, out, force).map_err(|e| cli_error(e, "replace them"))?;
    println!("issued {} (valid until {})", issued.principal, show::rfc3339(issued.not_after));
    println!("wrote {} (private key, 0600)", issued.key.display());
    println!("wrote {} (certificate)", issued.cert.display());
    if let Some(ca) = &issued.ca_copy {
        println!("wrote {} (mesh CA certificate)", ca.display());
    }
    if let Some(out) = out {
        match kind {
            Kind::Node => println!(
                "next: copy {} to host {} as its certs dir ($MOSAIC_HOME/fleet/certs), keeping node.key 0600",
                out.display(),
                issued.principal.name
            ),
            Kind::Operator | Kind::Viewer => println!(
                "next: give {} to {} (client.pem, client.key and ca.pem), keeping client.key 0600",
                out.display(),
                issued.principal.name
            ),
        }
    }
    Ok(())
}

fn show_certs(dir: &Path, file: Option<PathBuf>, json: bool) -> CliResult {
    let certs = CertsDir::new(dir);
    let files = match file {
        Some(f) => vec![f],
        None => {
            let found: Vec<PathBuf> =
                [certs.ca_cert(), certs.node_cert(), certs.client_cert()].into_iter().filter(|p| p.exists()).collect();
            if found.is_empty() {
                return Err(exit::usage(anyhow!(
                    "no certificates in {}: create a mesh with `fleet certs init --tenant T`, \
                     start `fleet node`, or name a file: `fleet certs show FILE`",
                    dir.display()
                )));
            }
            found
        }
    };
    let infos = files
        .iter()
        .map(|f| show::show(f, Some(&certs)).map_err(|e| cli_error(e, "")))
        .collect::<CliResult<Vec<_>>>()?;
    let now = show::now();
    if json {
        let arr: Vec<_> = infos.iter().map(|i| i.to_json(now)).collect();
        out::line(serde_json::to_string_pretty(&arr).map_err(exit::failed)?)
    } else {
        let shown: Vec<String> = infos.iter().map(|info| info_text(info, now, dir)).collect();
        out::print(&shown.join("\n"))
    }
}

/// One certificate as `certs show` prints it: its path, then a line per field.
fn info_text(info: &CertInfo, now: show::OffsetDateTime, dir: &Path) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let kind = if info.is_ca { "ca" } else { info.kind().map(Kind::as_str).unwrap_or("unknown") };
    rows.push(("kind", kind.into()));
    if let Some(p) = &info.principal {
        rows.push(("principal", p.to_string()));
    }
    rows.push(("tenant", info.tenant.as_ref().map(|t| t.as_str()).unwrap_or("unknown").into()));
    if let Some(host) = info.principal.as_ref().and_then(|p| p.host()) {
        rows.push(("host", host.into()));
    }
    if let Some(problem) = &info.problem {
        rows.push(("problem", problem.clone()));
    }
    rows.push(("subject", info.subject.clone()));
    // As `certs revoke --serial` takes it.
    rows.push(("serial", info.serial.clone()));
    let days = info.days_left(now);
    let plural = |n: i64| if n == 1 { "day" } else { "days" };
    let state = if now < info.not_before {
        "NOT YET VALID".to_string()
    } else if !info.valid_at(now) {
        format!("EXPIRED {} {} ago", -days, plural(-days))
    } else {
        format!("{days} {} left", plural(days))
    };
    rows.push(("valid", format!("{} .. {} ({state})", show::rfc3339(info.not_before), show::rfc3339(info.not_after))));
    rows.push(("sha256", info.sha256.clone()));
    let chain = match (info.chains_to_ca, &info.ca_path) {
        (Some(true), Some(ca)) => format!("yes ({})", ca.display()),
        (Some(false), Some(ca)) => format!("NO: not issued by {}", ca.display()),
        _ => format!("unknown: no ca.pem in {}", dir.display()),
    };
    rows.push(("chains to CA", chain));
    if !info.uris.is_empty() {
        rows.push(("URIs", info.uris.join(", ")));
    }
    if !info.dns_names.is_empty() {
        rows.push(("DNS names", info.dns_names.join(", ")));
    }
    let path = info.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
    rows.iter().fold(format!("{path}\n"), |text, (k, v)| text + &format!("  {k:<13}{v}\n"))
}

/// Map a library error to an exit code, adding the next step to refused overwrites.
fn cli_error(e: fleet_tls::Error, replace_what: &str) -> exit::CliError {
    match e {
        fleet_tls::Error::Exists { path } if !replace_what.is_empty() => exit::usage(anyhow!(
            "{} already exists: pass --force to {replace_what}; nothing was written",
            path.display()
        )),
        fleet_tls::Error::Name(name) => exit::usage(anyhow!("{name}; nothing was written")),
        e if e.is_usage() => exit::usage(e),
        e => exit::failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: CertsCmd,
    }

    fn run_args(default_dir: &Path, args: &[&str]) -> CliResult {
        let top = Top::try_parse_from(std::iter::once("certs").chain(args.iter().copied())).unwrap();
        run(top.cmd, default_dir)
    }

    fn code(r: CliResult) -> (Code, String) {
        let e = r.unwrap_err();
        (e.code, format!("{:#}", e.error))
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd {
                let p = e.unwrap().path();
                out.extend(files(&p));
                out.push(p);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn bad_names_exit_2_and_write_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let (c, msg) = code(run_args(&dir, &["init", "--tenant", "ac_me"]));
        assert_eq!(c, Code::Usage);
        assert!(msg.contains("\"ac_me\"") && msg.contains("nothing was written"), "{msg}");
        assert!(!dir.exists());

        run_args(&dir, &["init", "--tenant", "acme"]).unwrap();
        let before = files(&dir);
        for args in [
            &["issue", "node", "--host", "h_1"][..],
            &["issue", "operator", "--name", "al.ice"],
            &["issue", "viewer", "--name", "a b"],
            &["issue", "node", "--host", "h.1", "--out", "OUT"],
        ] {
            let out = tmp.path().join("out");
            let args: Vec<&str> = args.iter().map(|a| if *a == "OUT" { out.to_str().unwrap() } else { a }).collect();
            let (c, msg) = code(run_args(&dir, &args));
            assert_eq!(c, Code::Usage, "{args:?}: {msg}");
            assert!(!out.exists());
        }
        assert_eq!(files(&dir), before);
    }

    #[test]
    fn overwrites_are_refused_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        run_args(&dir, &["init", "--tenant", "acme"]).unwrap();
        let ca = std::fs::read(dir.join("ca.pem")).unwrap();
        let (c, msg) = code(run_args(&dir, &["init", "--tenant", "acme"]));
        assert_eq!(c, Code::Usage);
        assert!(msg.contains("--force"), "{msg}");
        assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);

        run_args(&dir, &["issue", "operator", "--name", "alice"]).unwrap();
        let (c, msg) = code(run_args(&dir, &["issue", "operator", "--name", "alice"]));
        assert_eq!(c, Code::Usage);
        assert!(msg.contains("operator-alice") && msg.contains("--force"), "{msg}");
        run_args(&dir, &["issue", "operator", "--name", "alice", "--force"]).unwrap();
        run_args(&dir, &["init", "--tenant", "acme", "--force"]).unwrap();
        assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    }

    #[test]
    fn issue_out_makes_a_certs_dir_and_show_reads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let out = tmp.path().join("h2");
        let (c, _) = code(run_args(&dir, &["issue", "node", "--host", "h2"]));
        assert_eq!(c, Code::Usage, "no CA yet");
        run_args(&dir, &["init", "--tenant", "acme"]).unwrap();
        run_args(&dir, &["issue", "node", "--host", "h2", "--days", "30", "--out", out.to_str().unwrap()]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out.join("node.key")), 0o600);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert!(out.join("node.pem").exists() && out.join("ca.pem").exists());
        run_args(&dir, &["show", out.join("node.pem").to_str().unwrap(), "--json"]).unwrap();
        run_args(&dir, &["show", "--dir", out.to_str().unwrap()]).unwrap();
        let (c, _) = code(run_args(&dir, &["show", tmp.path().join("nope.pem").to_str().unwrap()]));
        assert_eq!(c, Code::Usage);
        let (c, _) = code(run_args(&tmp.path().join("empty"), &["show"]));
        assert_eq!(c, Code::Usage);
        assert!(Top::try_parse_from(["certs", "issue", "viewer", "--name", "v", "--days", "0"]).is_err());
    }
}
