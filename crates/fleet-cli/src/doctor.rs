//! `fleet doctor [--json]`: what this host needs for the mesh, checked one by
//! one, each with what is wrong and the next step: tmux, the roster, the
//! certificates (chain, tenant, expiry, key mode, revocation), the node and
//! its peers, the activity rules, the runtimes' hooks. Exit 1 when a check
//! fails (a warning alone is exit 0).

use crate::context::{GlobalArgs, Paths};
use crate::exit::{self, CliResult};
use crate::{node, table};
use fleet_proto::v1;
use fleet_tls::layout::CertsDir;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// One JSON object per check, in an array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, serde::Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it (empty when nothing).
    pub next: String,
}

fn check(check: &'static str, status: Status, detail: impl Into<String>, next: impl Into<String>) -> Check {
    Check { check, status, detail: detail.into(), next: next.into() }
}

pub fn run(args: DoctorArgs, g: &GlobalArgs) -> CliResult {
    let paths = Paths::from_env();
    let mut checks = vec![tmux()];
    let roster = roster(g, &paths, &mut checks);
    certificates(&paths, roster.as_ref().and_then(|r| r.tenant_id.as_ref()).map(|t| t.as_str()), &mut checks);
    let node = node_and_peers(&mut checks);
    lan(&paths, node.as_ref(), &mut checks);
    let (_, problem) = fleet_tmux::screen::load_rules(&paths.mosaic_home);
    checks.push(match problem {
        None => check("activity rules", Status::Ok, "the screen rules parse", ""),
        Some(p) => check("activity rules", Status::Warn, p, "fix it (`fleet explain` shows what the rules decide)"),
    });
    checks.push(hooks());
    let written = if args.json {
        crate::out::line(serde_json::to_string_pretty(&checks).map_err(exit::failed)?)
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                let status = match c.status {
                    Status::Ok => "ok",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                };
                let detail = if c.next.is_empty() { c.detail.clone() } else { format!("{} -> {}", c.detail, c.next) };
                vec![c.check.to_string(), status.to_string(), detail]
            })
            .collect();
        crate::out::print(&table::render(&["CHECK", "STATUS", "DETAIL -> NEXT STEP"], &rows))
    };
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    crate::out::verdict(written, failed.then_some(exit::Code::Failed))
}

/// tmux 3.2 or later: control-mode flow control (`pause-after`) and clients
/// that do not size windows (`ignore-size`) came with 3.2.
fn tmux() -> Check {
    let out = std::process::Command::new("tmux").arg("-V").output();
    let version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return check(
                "tmux",
                Status::Fail,
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
                "install tmux 3.2 or later",
            );
        }
        Err(e) => {
            return check(
                "tmux",
                Status::Fail,
                format!("cannot run tmux: {e}"),
                "install tmux 3.2 or later (apt install tmux)",
            );
        }
    };
    match tmux_version(&version) {
        Some(v) if v >= (3, 2) => check("tmux", Status::Ok, format!("{version}; {}", locale()), ""),
        Some(_) => check(
            "tmux",
            Status::Fail,
            format!("{version}: watch, attach and follow need 3.2 or later"),
            "upgrade tmux",
        ),
        None => check(
            "tmux",
            Status::Warn,
            format!("cannot read the version of {version:?}"),
            "make sure it is tmux 3.2 or later",
        ),
    }
}

/// The locale tmux would see, and why it does not matter to fleet: a unit
/// started by systemd often has no LANG, and tmux then draws non-ASCII as `_`.
fn locale() -> String {
    let var = ["LC_ALL", "LC_CTYPE", "LANG"].into_iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    let shown = var.map_or("no locale set (LANG unset)".to_string(), |v| format!("locale {v}"));
    format!("{shown}: fleet runs tmux with -u, so panes are UTF-8 whatever the locale")
}

/// `tmux 3.3a` -> (3, 3); `tmux next-3.4` -> (3, 4).
fn tmux_version(v: &str) -> Option<(u32, u32)> {
    let num = v.rsplit([' ', '-']).next()?;
    let (major, rest) = num.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn roster(g: &GlobalArgs, paths: &Paths, checks: &mut Vec<Check>) -> Option<fleet_core::roster::Roster> {
    let path = g.roster.clone().unwrap_or_else(|| paths.default_roster());
    let text = match fleet_core::file::read_to_string(&path, fleet_core::file::ROSTER_MAX) {
        Ok(t) => t,
        Err(e) => {
            checks.push(check(
                "roster",
                Status::Fail,
                format!("cannot read {}: {e}", path.display()),
                "write one: `fleet init --preset minimal --write`",
            ));
            return None;
        }
    };
    match fleet_core::roster::Roster::parse(&text) {
        Ok(r) => {
            let holder = match &r.holder_session {
                Some(h) => format!(", holder session {h}"),
                None => ", no holder session (sends and screen reads spawn tmux)".into(),
            };
            checks.push(check(
                "roster",
                Status::Ok,
                format!("{}: {} agents{holder}", path.display(), r.agents.len()),
                "",
            ));
            Some(r)
        }
        Err(e) => {
            checks.push(check(
                "roster",
                Status::Fail,
                format!("{}: {} problem(s), first: {}", path.display(), e.problems.len(), e.problems[0]),
                format!("`fleet roster check {}` lists them all", path.display()),
            ));
            None
        }
    }
}

fn certificates(paths: &Paths, roster_tenant: Option<&str>, checks: &mut Vec<Check>) {
    let dir = CertsDir::new(std::env::var_os("FLEET_CERTS_DIR").map(Into::into).unwrap_or_else(|| paths.certs_dir()));
    let now = fleet_tls::show::now();
    let ca = match fleet_tls::show::show(&dir.ca_cert(), None) {
        Ok(ca) => ca,
        Err(e) => {
            checks.push(check(
                "certificates",
                Status::Fail,
                format!("no mesh CA certificate: {e}"),
                "`fleet node` makes a one-host mesh on first start; to join a mesh, `fleet certs invite` on the CA's host, then the `fleet join ADDR TOKEN` it prints here (docs/operations.md)",
            ));
            return;
        }
    };
    let (cert, key) = if dir.node_cert().exists() {
        (dir.node_cert(), dir.node_key())
    } else {
        (dir.client_cert(), dir.client_key())
    };
    let leaf = match fleet_tls::show::show(&cert, Some(&dir)) {
        Ok(l) => l,
        Err(e) => {
            checks.push(check(
                "certificates",
                Status::Fail,
                format!("{e}"),
                "join the mesh: `fleet certs invite --host HOST` on the CA's host, then `fleet join` here",
            ));
            return;
        }
    };
    let who = leaf.principal.as_ref().map_or_else(|| "?".to_string(), |p| p.to_string());
    let mut problems: Vec<(Status, String, String)> = Vec::new();
    if leaf.chains_to_ca != Some(true) {
        problems.push((
            Status::Fail,
            format!("{} is not signed by {}", cert.display(), dir.ca_cert().display()),
            "issue it again from this mesh's CA".into(),
        ));
    }
    if let (Some(t), Some(lt)) = (roster_tenant, leaf.tenant.as_ref())
        && t != lt.as_str()
    {
        problems.push((
            Status::Fail,
            format!("the certificate is of tenant {lt}, the roster says {t}"),
            "use one mesh per tenant: fix the roster's tenant_id or the certificate".into(),
        ));
    }
    let days = leaf.days_left(now);
    if !leaf.valid_at(now) {
        problems.push((
            Status::Fail,
            format!("{} is not valid now (not after {})", cert.display(), fleet_tls::show::rfc3339(leaf.not_after)),
            "re-enroll: `fleet certs invite --host HOST` on the CA's host, then `fleet join ... --force` here".into(),
        ));
    } else if days < 14 {
        problems.push((
            Status::Warn,
            format!("{} expires in {days} days", cert.display()),
            "a node renews it by itself (is the CA host's node running?); operators and viewers: `fleet certs renew`"
                .into(),
        ));
    }
    match std::fs::metadata(&key) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => problems.push((
            Status::Fail,
            format!("{} is readable by others (mode {:o})", key.display(), m.permissions().mode() & 0o777),
            format!("chmod 600 {}", key.display()),
        )),
        Ok(_) => {}
        Err(e) => problems.push((
            Status::Fail,
            format!("{}: {e}", key.display()),
            "the private key must sit beside its certificate".into(),
        )),
    }
    problems.extend(revoked(&dir, &cert));
    if problems.is_empty() {
        checks.push(check(
            "certificates",
            Status::Ok,
            format!("{who}, {days} days left, signed by the mesh CA ({})", ca.sha256.get(..23).unwrap_or(&ca.sha256)),
            "",
        ));
    }
    for (status, detail, next) in problems {
        checks.push(check("certificates", status, detail, next));
    }
}

fn revoked(dir: &CertsDir, cert: &Path) -> Option<(Status, String, String)> {
    let ca = fleet_tls::show::read_single_cert(&dir.ca_cert()).ok()?;
    let leaf = fleet_tls::show::read_single_cert(cert).ok()?;
    match fleet_tls::revoke::read_crl(&dir.crl(), &ca) {
        Ok(Some(crl)) if fleet_tls::revoke::serial_of(&leaf).is_some_and(|s| crl.revokes(&s)) => Some((
            Status::Fail,
            format!("{} is revoked by {}", cert.display(), dir.crl().display()),
            "issue a new certificate for this host".into(),
        )),
        Ok(_) => None,
        Err(e) => Some((
            Status::Fail,
            format!("{}: {e}", dir.crl().display()),
            "copy the mesh's current crl.pem from the CA's host".into(),
        )),
    }
}

/// The node and its peers; the node's answer, when it answered.
fn node_and_peers(checks: &mut Vec<Check>) -> Option<(v1::NodeInfoResponse, v1::ListPeersResponse)> {
    let target = node::target();
    let Ok(rt) = node::runtime() else { return None };
    type Answers = (v1::NodeInfoResponse, v1::ListPeersResponse, Option<Vec<v1::HostCert>>);
    let r: Result<Answers, String> = rt.block_on(async {
        let channel = fleet_node::client::connect(&target).await.map_err(|e| e.to_string())?;
        let mut mesh = v1::mesh_client::MeshClient::new(channel.clone());
        let info = mesh.node_info(v1::NodeInfoRequest {}).await.map_err(|s| s.message().to_string())?.into_inner();
        let peers = mesh.list_peers(v1::ListPeersRequest {}).await.map_err(|s| s.message().to_string())?.into_inner();
        let mut certs = v1::certs_client::CertsClient::new(channel);
        let certs = certs.cert_status(v1::CertStatusRequest { mesh: true }).await.ok().map(|r| r.into_inner().hosts);
        Ok((info, peers, certs))
    });
    match &r {
        Ok((info, peers, certs)) => {
            if let Some(certs) = certs {
                checks.push(renewal(certs));
            }
            checks.push(check(
                "node",
                Status::Ok,
                format!("{} of tenant {} answers at {}", info.host, info.tenant_id, target.describe()),
                "",
            ));
            checks.push(membership(info, peers));
            let others: Vec<&v1::Peer> = peers.peers.iter().filter(|p| p.host != info.host).collect();
            let down: Vec<String> =
                others.iter().filter(|p| p.state != v1::PeerState::Alive as i32).map(|p| p.host.clone()).collect();
            checks.push(if others.is_empty() {
                check(
                    "peers",
                    Status::Warn,
                    "no other node in the mesh",
                    "start `fleet node` on another host of the LAN (mDNS) or give `peers:` in node.yaml",
                )
            } else if down.is_empty() {
                check("peers", Status::Ok, format!("{} other node(s), all alive", others.len()), "")
            } else {
                check(
                    "peers",
                    Status::Warn,
                    format!("not alive: {}", down.join(", ")),
                    "`fleet peers` says since when; check those hosts and their `fleet node`",
                )
            });
        }
        Err(e) => {
            // The client's own words usually carry the next step already.
            let next = if e.contains("`fleet node`") { "" } else { "start one: `fleet node`" };
            checks.push(check("node", Status::Fail, e.clone(), next))
        }
    }
    r.ok().map(|(info, peers, _)| (info, peers))
}

/// The QUIC plane (UDP, the gRPC port number): SWIM hears the members that gRPC knows, or a
/// firewall drops UDP.
fn membership(info: &v1::NodeInfoResponse, peers: &v1::ListPeersResponse) -> Check {
    let known = peers.peers.iter().filter(|p| p.host != info.host).count();
    if known > 0 && info.members_alive == 0 {
        check(
            "membership",
            Status::Fail,
            format!("QUIC on {} hears none of {known} known peer(s)", info.quic_address),
            "let UDP through to that port on every host (the gRPC port number, over UDP)",
        )
    } else {
        check(
            "membership",
            Status::Ok,
            format!("QUIC on {}: {} member(s), {} alive", info.quic_address, info.members, info.members_alive),
            "",
        )
    }
}

/// Other fleet nodes announced on the LAN by mDNS (two seconds of listening): this mesh's, and
/// nodes of another tenant or mesh CA, which the node ignores (a host given the wrong certs).
fn lan(paths: &Paths, node: Option<&(v1::NodeInfoResponse, v1::ListPeersResponse)>, checks: &mut Vec<Check>) {
    let ours = fleet_tls::show::read_single_cert(&CertsDir::new(paths.certs_dir()).ca_cert())
        .ok()
        .map(|ca| fleet_tls::show::mesh_fingerprint(ca.as_ref()));
    let seen = match fleet_node::mdns::look_around(std::time::Duration::from_secs(2)) {
        Ok(seen) => seen,
        Err(e) => {
            checks.push(check(
                "mdns",
                Status::Warn,
                e.to_string(),
                "peers must then be given as `peers:` in node.yaml",
            ));
            return;
        }
    };
    let me = node.map(|(info, _)| info.host.as_str());
    let (mut same, mut other) = (vec![], vec![]);
    for s in &seen {
        let addrs: Vec<String> = s.addrs.iter().map(ToString::to_string).collect();
        match &s.record {
            Ok((_, host, mesh)) if Some(mesh) == ours.as_ref() => {
                if Some(host.as_str()) != me {
                    same.push(host.clone());
                }
            }
            Ok((tenant, host, mesh)) => {
                other.push(format!("{host} (tenant {tenant}, mesh CA {mesh}) at {}", addrs.join(" ")))
            }
            Err(why) => other.push(format!("{} at {}: {why}", s.instance, addrs.join(" "))),
        }
    }
    checks.push(if same.is_empty() {
        check(
            "mdns",
            Status::Ok,
            "no other node of this mesh announces itself on this LAN",
            if node.is_some_and(|(_, p)| p.peers.len() > 1) {
                ""
            } else {
                "peers on other subnets: `peers:` in node.yaml"
            },
        )
    } else {
        check("mdns", Status::Ok, format!("this mesh's nodes on the LAN: {}", same.join(", ")), "")
    });
    if !other.is_empty() {
        checks.push(check(
            "other meshes",
            Status::Warn,
            format!("nodes of another tenant or mesh CA on the LAN, ignored: {}", other.join("; ")),
            "if one should be in this mesh, give it a certificate of this mesh's CA (`fleet certs issue node`)",
        ));
    }
}

/// Every node's certificate renews before it expires: a node past its renewal time whose
/// renewal fails warns, one in the last tenth of its lifetime (or expired) fails.
fn renewal(certs: &[v1::HostCert]) -> Check {
    let now = fleet_node::live::now_ms();
    let mut worst = Status::Ok;
    let mut said = Vec::new();
    for c in certs {
        if let Some(w) = crate::watch_cmd::cert_warning(c, now) {
            let status = if matches!(c.state.as_str(), "expiring" | "expired") { Status::Fail } else { Status::Warn };
            if status == Status::Fail || worst == Status::Ok {
                worst = status;
            }
            said.push(w);
        }
    }
    if said.is_empty() {
        let signers: Vec<&str> = certs.iter().filter(|c| c.can_sign).map(|c| c.host.as_str()).collect();
        return check(
            "certificate renewal",
            Status::Ok,
            format!(
                "{} node(s) renew on time; signer: {}",
                certs.len(),
                if signers.is_empty() { "none reachable".into() } else { signers.join(", ") }
            ),
            "",
        );
    }
    check(
        "certificate renewal",
        worst,
        said.join("; "),
        "start the CA host's node (it signs renewals), or re-enroll the host: `fleet certs invite --host H` there, `fleet join --force` on H",
    )
}

fn hooks() -> Check {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    let claude = std::fs::read_to_string(home.join(".claude/settings.json")).unwrap_or_default();
    let codex = std::fs::read_to_string(home.join(".codex/config.toml")).unwrap_or_default();
    let mut have = Vec::new();
    if claude.contains("hook --claude") {
        have.push("claude");
    }
    if codex.contains("\"--codex\"") {
        have.push("codex");
    }
    if have.is_empty() {
        check(
            "runtime hooks",
            Status::Warn,
            "no runtime reports its activity through hooks (the screen alone decides)",
            "`fleet install --hooks claude` (or codex)",
        )
    } else {
        check("runtime hooks", Status::Ok, format!("installed for {}", have.join(", ")), "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmux_versions_are_read() {
        assert_eq!(tmux_version("tmux 3.3a"), Some((3, 3)));
        assert_eq!(tmux_version("tmux 3.2"), Some((3, 2)));
        assert_eq!(tmux_version("tmux next-3.4"), Some((3, 4)));
        assert_eq!(tmux_version("tmux 2.9a"), Some((2, 9)));
        assert_eq!(tmux_version("tmux master"), None);
    }
}
