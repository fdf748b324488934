//! mDNS seeds: announce this node as `_fleet-mesh._tcp.local.` on the host's real interfaces and
//! browse for the other nodes of the same tenant and mesh CA.
//!
//! mDNS is a hint for finding someone to join, never a liveness signal: [`Found`] is only ever
//! "add or update". A removal (goodbye or expiry) is not reported; after a crash it arrives two
//! minutes late anyway, so membership (SWIM) decides who is up.
//!
//! The record (DESIGN.md, "Membership"):
//! - instance `<host>@<tenant>._fleet-mesh._tcp.local.` (one node per host and tenant; `@` never
//!   occurs in a DNS label, so the name is unambiguous and needs no escaped dot),
//! - SRV port = the gRPC port, target `fleet-<tenant>-<host>.local.` (a name of our own, so
//!   that our address records never collide with the system's responder for `<hostname>.local.`),
//! - TXT `v=1`, `tenant`, `host`, `mesh` (short CA fingerprint), `grpc`, `quic` (ports) and `gen`
//!   (the node's generation, which changes on restart).
//!
//! A record of another tenant, another mesh CA, an unknown version, or our own is dropped here,
//! before anyone connects (logged at debug with the reason). Which host really answered is
//! decided later by the TLS identity, never by these TXT fields.
//!
//! Interfaces: loopback is never used unless named in `allow_interfaces`; `deny_interfaces` wins
//! over everything. mdns-sd re-reads the host's interfaces every few seconds, so an interface
//! that comes up later is announced on as well.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::thread;
use std::time::Duration;

use fleet_core::names::DnsLabel;
use mdns_sd::{
    DaemonEvent, IfKind, IfPredicate, Receiver, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo,
};
use tokio::sync::mpsc;

/// The DNS-SD service type of a fleet node.
pub const SERVICE_TYPE: &str = "_fleet-mesh._tcp.local.";
/// The value of the TXT key `v` this code writes and the only one it accepts.
pub const TXT_VERSION: &str = "1";

/// TXT keys (DESIGN.md, "Membership").
pub mod txt {
    pub const VERSION: &str = "v";
    pub const TENANT: &str = "tenant";
    pub const HOST: &str = "host";
    pub const MESH: &str = "mesh";
    pub const GRPC: &str = "grpc";
    pub const QUIC: &str = "quic";
    pub const GENERATION: &str = "gen";
}

/// Longest accepted `mesh` value (a short CA fingerprint).
const MESH_MAX_LEN: usize = 64;
/// How long shutdown waits for each answer of the mdns-sd daemon.
const DAEMON_REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// mdns-sd repeats a goodbye once, 120 ms after the first; let it go out before the daemon stops.
const GOODBYE_REPEAT_WAIT: Duration = Duration::from_millis(150);

/// What this node announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub tenant: String,
    pub host: String,
    /// Short fingerprint of the mesh CA.
    pub mesh: String,
    pub grpc_port: u16,
    pub quic_port: u16,
    /// Changes on every restart of the node.
    pub generation: u64,
}

/// Which interfaces to announce and browse on, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MdnsConfig {
    /// Empty: every non-loopback interface. Otherwise only these (a loopback interface only if
    /// named here).
    pub allow_interfaces: Vec<String>,
    /// Never these, whatever `allow_interfaces` says.
    pub deny_interfaces: Vec<String>,
}

impl MdnsConfig {
    /// Whether mDNS runs on the interface `name`.
    pub fn selects(&self, name: &str, is_loopback: bool) -> bool {
        if self.deny_interfaces.iter().any(|d| d == name) {
            return false;
        }
        if self.allow_interfaces.is_empty() { !is_loopback } else { self.allow_interfaces.iter().any(|a| a == name) }
    }

    /// Whether a loopback interface was asked for explicitly (then loopback addresses in other
    /// nodes' records are kept, e.g. for a lab of nodes on one host).
    fn wants_loopback(&self) -> bool {
        !self.allow_interfaces.is_empty()
    }
}

/// A node of our tenant and mesh, seen by mDNS. Every resolve of its record is sent again when
/// it changed (typically: an IPv6 link-local address first, IPv4 a moment later); each `Found`
/// carries every address the record has at that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub tenant: String,
    pub host: String,
    pub mesh: String,
    pub generation: u64,
    /// IPv4 first, then global IPv6, then link-local IPv6 (with its scope id).
    pub grpc_addrs: Vec<SocketAddr>,
    /// The same addresses with the QUIC port.
    pub quic_addrs: Vec<SocketAddr>,
}

/// What the browser reports: a node of our mesh found (or found again with
/// other addresses), or QUIC addresses no longer announced (a record removed,
/// or addresses a changed record dropped). Membership stops announcing to an
/// address that is gone and is not a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Found(Found),
    Gone(Vec<SocketAddr>),
}

#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("mdns: invalid announcement: {0}")]
    Invalid(String),
    #[error("mdns: cannot {what}: {source}")]
    Daemon {
        what: &'static str,
        #[source]
        source: mdns_sd::Error,
    },
}

fn daemon_err(what: &'static str) -> impl FnOnce(mdns_sd::Error) -> MdnsError {
    move |source| MdnsError::Daemon { what, source }
}

/// The running announcer and browser. Stops (with a goodbye) on [`Mdns::shutdown`] or drop.
pub struct Mdns {
    daemon: Option<ServiceDaemon>,
    fullname: String,
}

impl fmt::Debug for Mdns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mdns").field("fullname", &self.fullname).field("running", &self.daemon.is_some()).finish()
    }
}

impl Mdns {
    /// Announce ourselves and browse. Every resolved record of OUR tenant and mesh that is not
    /// ourselves is sent on `found` (add-or-update: a later resolve that changed, e.g. with more
    /// addresses, is sent again). Records of another tenant or mesh are dropped here, before
    /// anyone connects (logged at debug with the reason).
    ///
    /// Needs no async runtime: mdns-sd runs its own thread; one more thread hands resolves to
    /// `found` (waiting when the channel is full), and one logs the daemon's own errors (mdns-sd
    /// opens its sockets on its thread, so e.g. a failure to join the multicast group shows up
    /// there as a warning, not here).
    pub fn start(ann: Announcement, cfg: &MdnsConfig, found: mpsc::Sender<Report>) -> Result<Mdns, MdnsError> {
        let ann = normalize(ann)?;
        let daemon = ServiceDaemon::new().map_err(daemon_err("start the mDNS daemon"))?;
        let mdns = Mdns { fullname: String::new(), daemon: Some(daemon) };
        // On an error below, dropping `mdns` stops the daemon thread again.
        mdns.configure(ann, cfg, found)
    }

    fn configure(
        mut self,
        ann: Announcement,
        cfg: &MdnsConfig,
        found: mpsc::Sender<Report>,
    ) -> Result<Mdns, MdnsError> {
        let daemon = self.daemon.as_ref().expect("daemon");
        // Interface selections apply in order, the last match wins; this one is queued before the
        // registration, whose automatic addresses are taken from the selected interfaces only.
        let selection = cfg.clone();
        let unselected = IfPredicate::new(move |intf| !selection.selects(&intf.name, intf.is_loopback()));
        daemon.disable_interface(IfKind::Predicate(unselected)).map_err(daemon_err("select interfaces"))?;

        let info = service_info(&ann)?;
        self.fullname = info.get_fullname().to_string();
        let events = daemon.browse(SERVICE_TYPE).map_err(daemon_err("browse"))?;
        daemon.register(info).map_err(daemon_err("register the service"))?;

        let monitor = daemon.monitor().map_err(daemon_err("monitor the daemon"))?;
        spawn("fleet-mdns-monitor", move || log_daemon_events(&monitor))?;

        let own = Own { tenant: ann.tenant.clone(), host: ann.host.clone(), mesh: ann.mesh.clone() };
        let keep_loopback = cfg.wants_loopback();
        spawn("fleet-mdns", move || forward(events, &own, keep_loopback, &found))?;
        tracing::info!(instance = %self.fullname, grpc = ann.grpc_port, quic = ann.quic_port, "mdns: announcing");
        Ok(self)
    }

    /// The full DNS-SD name we announce, e.g. `dragon-lin@ops._fleet-mesh._tcp.local.`.
    pub fn instance(&self) -> &str {
        &self.fullname
    }

    /// Unregister (goodbye packet) and stop the daemon; also on drop. Blocks about 150 ms (so
    /// that mdns-sd's repeated goodbye goes out), at most about 2 s if the daemon does not answer;
    /// from async code, call it in `spawn_blocking` if that matters.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(daemon) = self.daemon.take() else { return };
        match daemon.unregister(&self.fullname) {
            Ok(reply) => match reply.recv_timeout(DAEMON_REPLY_TIMEOUT) {
                Ok(status) => {
                    tracing::debug!(instance = %self.fullname, ?status, "mdns: unregistered");
                    thread::sleep(GOODBYE_REPEAT_WAIT);
                }
                Err(e) => tracing::debug!(instance = %self.fullname, error = %e, "mdns: no answer to unregister"),
            },
            Err(e) => tracing::debug!(instance = %self.fullname, error = %e, "mdns: cannot unregister"),
        }
        // Shutting down also sends goodbyes for whatever is still registered, and ends the
        // browse, which ends the forwarding thread.
        match daemon.shutdown() {
            Ok(reply) => {
                if let Err(e) = reply.recv_timeout(DAEMON_REPLY_TIMEOUT) {
                    tracing::debug!(error = %e, "mdns: no answer to shutdown");
                }
            }
            Err(e) => tracing::debug!(error = %e, "mdns: cannot shut the daemon down"),
        }
        tracing::info!(instance = %self.fullname, "mdns: stopped");
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), MdnsError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| MdnsError::Daemon { what: "spawn a thread", source: mdns_sd::Error::Msg(e.to_string()) })
}

/// Log what the daemon reports about itself, until it stops.
fn log_daemon_events(events: &Receiver<DaemonEvent>) {
    while let Ok(event) = events.recv() {
        match event {
            DaemonEvent::Error(e) => tracing::warn!(error = %e, "mdns: daemon error"),
            DaemonEvent::IpAdd(ip) => tracing::debug!(%ip, "mdns: now using address"),
            DaemonEvent::IpDel(ip) => tracing::debug!(%ip, "mdns: address gone"),
            DaemonEvent::NameChange(change) => tracing::info!(?change, "mdns: name conflict resolved by renaming"),
            _ => {}
        }
    }
}

/// Validate and lower-case the announcement (tenant and host are DNS labels).
fn normalize(ann: Announcement) -> Result<Announcement, MdnsError> {
    let invalid = |e: fleet_core::names::NameError| MdnsError::Invalid(e.to_string());
    let tenant = DnsLabel::parse_as("tenant id", &ann.tenant).map_err(invalid)?.as_str().to_string();
    let host = DnsLabel::parse_as("host name", &ann.host).map_err(invalid)?.as_str().to_string();
    check_mesh(&ann.mesh).map_err(MdnsError::Invalid)?;
    if ann.grpc_port == 0 || ann.quic_port == 0 {
        return Err(MdnsError::Invalid(format!(
            "ports must be bound ones, not 0 (grpc {}, quic {})",
            ann.grpc_port, ann.quic_port
        )));
    }
    Ok(Announcement { tenant, host, mesh: ann.mesh.to_ascii_lowercase(), ..ann })
}

fn check_mesh(mesh: &str) -> Result<(), String> {
    if mesh.is_empty() || mesh.len() > MESH_MAX_LEN {
        return Err(format!("mesh fingerprint {mesh:?} must be 1-{MESH_MAX_LEN} characters"));
    }
    if let Some(c) = mesh.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_'))) {
        return Err(format!("mesh fingerprint {mesh:?} has {c:?}: letters, digits, '-', ':' and '_' only"));
    }
    Ok(())
}

/// The TXT properties of an announcement, in a stable order.
pub fn txt_properties(ann: &Announcement) -> Vec<(&'static str, String)> {
    vec![
        (txt::VERSION, TXT_VERSION.to_string()),
        (txt::TENANT, ann.tenant.clone()),
        (txt::HOST, ann.host.clone()),
        (txt::MESH, ann.mesh.clone()),
        (txt::GRPC, ann.grpc_port.to_string()),
        (txt::QUIC, ann.quic_port.to_string()),
        (txt::GENERATION, ann.generation.to_string()),
    ]
}

/// The instance label: `<host>@<tenant>`, shortened with a hash if longer than a DNS label.
pub fn instance_name(tenant: &str, host: &str) -> String {
    fit_label(&format!("{host}@{tenant}"))
}

/// The SRV target label (without `.local.`).
fn mdns_hostname(tenant: &str, host: &str) -> String {
    fit_label(&format!("fleet-{tenant}-{host}"))
}

/// Keep `s` within 63 bytes (one DNS label): a longer one keeps its start and gets a hash of the
/// whole as suffix, so that distinct long names stay distinct. `s` is ASCII here.
fn fit_label(s: &str) -> String {
    const MAX: usize = 63;
    if s.len() <= MAX {
        return s.to_string();
    }
    // FNV-1a, 32 bits: stable across builds and platforms.
    let hash = s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let keep = MAX - 9;
    let mut cut = keep;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash:08x}", &s[..cut])
}

fn service_info(ann: &Announcement) -> Result<ServiceInfo, MdnsError> {
    let props = txt_properties(ann);
    let hostname = format!("{}.local.", mdns_hostname(&ann.tenant, &ann.host));
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        &instance_name(&ann.tenant, &ann.host),
        &hostname,
        (),
        ann.grpc_port,
        &props[..],
    )
    .map_err(daemon_err("build the service record"))?;
    Ok(info.enable_addr_auto())
}

/// Our own identity, for filtering what we browse.
#[derive(Clone, Debug)]
struct Own {
    tenant: String,
    host: String,
    mesh: String,
}

/// The TXT fields of a record, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    tenant: String,
    host: String,
    mesh: String,
    grpc_port: u16,
    quic_port: u16,
    generation: u64,
}

/// Why a browsed record is not reported.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rejected {
    Malformed(String),
    Version(String),
    OtherTenant(String),
    OtherMesh(String),
    Ourselves { generation: u64 },
    NoAddress,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Malformed(why) => write!(f, "malformed record: {why}"),
            Rejected::Version(v) => write!(f, "unknown record version v={v:?} (we speak v={TXT_VERSION})"),
            Rejected::OtherTenant(t) => write!(f, "another tenant ({t})"),
            Rejected::OtherMesh(m) => write!(f, "another mesh CA ({m})"),
            Rejected::Ourselves { generation } => write!(f, "our own record (generation {generation})"),
            Rejected::NoAddress => write!(f, "no usable address"),
        }
    }
}

/// Parse the TXT fields of a record; `get` looks a key up (case-insensitively, as mdns-sd does).
fn parse_txt<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Record, Rejected> {
    let field = |key: &'static str| get(key).ok_or_else(|| Rejected::Malformed(format!("no TXT key {key:?}")));
    let version = field(txt::VERSION)?;
    if version != TXT_VERSION {
        return Err(Rejected::Version(version.to_string()));
    }
    let label = |key: &'static str, what: &'static str| -> Result<String, Rejected> {
        DnsLabel::parse_as(what, field(key)?)
            .map(|l| l.as_str().to_string())
            .map_err(|e| Rejected::Malformed(e.to_string()))
    };
    let port = |key: &'static str| -> Result<u16, Rejected> {
        let raw = field(key)?;
        match raw.parse::<u16>() {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(Rejected::Malformed(format!("TXT {key}={raw:?} is not a port"))),
        }
    };
    let tenant = label(txt::TENANT, "tenant id")?;
    let host = label(txt::HOST, "host name")?;
    let mesh = field(txt::MESH)?;
    check_mesh(mesh).map_err(Rejected::Malformed)?;
    let raw_gen = field(txt::GENERATION)?;
    let generation =
        raw_gen.parse::<u64>().map_err(|_| Rejected::Malformed(format!("TXT gen={raw_gen:?} is not a number")))?;
    Ok(Record {
        tenant,
        host,
        mesh: mesh.to_ascii_lowercase(),
        grpc_port: port(txt::GRPC)?,
        quic_port: port(txt::QUIC)?,
        generation,
    })
}

/// Keep only records of our tenant and mesh that are not our own.
fn admit(own: &Own, rec: &Record) -> Result<(), Rejected> {
    if rec.tenant != own.tenant {
        return Err(Rejected::OtherTenant(rec.tenant.clone()));
    }
    if rec.mesh != own.mesh {
        return Err(Rejected::OtherMesh(rec.mesh.clone()));
    }
    // One node per host and tenant: the same host is us, possibly a stale record of our
    // previous generation.
    if rec.host == own.host {
        return Err(Rejected::Ourselves { generation: rec.generation });
    }
    Ok(())
}

/// Socket addresses for `port`: IPv4 first, then global IPv6, then link-local IPv6 (which needs
/// the scope id of the interface it was seen on). Loopback, unspecified and multicast addresses
/// are dropped (loopback kept only if `keep_loopback`).
fn socket_addrs(ips: &[(IpAddr, u32)], port: u16, keep_loopback: bool) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = ips
        .iter()
        .filter(|(ip, _)| !ip.is_unspecified() && !ip.is_multicast() && (keep_loopback || !ip.is_loopback()))
        .map(|&(ip, scope)| match ip {
            IpAddr::V6(v6) if is_link_local_v6(&ip) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)),
            _ => SocketAddr::new(ip, port),
        })
        .collect();
    out.sort_by_key(|a| (addr_rank(&a.ip()), *a));
    out.dedup();
    out
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

fn addr_rank(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) if is_link_local_v6(ip) => 2,
        IpAddr::V6(_) => 1,
    }
}

/// The addresses of a resolved record with their interface index (IPv6 scope id).
fn scoped_ips(rs: &ResolvedService) -> Vec<(IpAddr, u32)> {
    rs.get_addresses()
        .iter()
        .map(|s| match s {
            ScopedIp::V6(v6) => (IpAddr::V6(*v6.addr()), v6.scope_id().index),
            other => (other.to_ip_addr(), 0),
        })
        .collect()
}

/// Decide about one resolved record: the `Found` to report, or why not.
fn judge(own: &Own, rs: &ResolvedService, keep_loopback: bool) -> Result<Found, Rejected> {
    let rec = parse_txt(|k| rs.get_property_val_str(k))?;
    admit(own, &rec)?;
    let ips = scoped_ips(rs);
    let grpc_addrs = socket_addrs(&ips, rec.grpc_port, keep_loopback);
    if grpc_addrs.is_empty() {
        return Err(Rejected::NoAddress);
    }
    let quic_addrs = socket_addrs(&ips, rec.quic_port, keep_loopback);
    Ok(Found { tenant: rec.tenant, host: rec.host, mesh: rec.mesh, generation: rec.generation, grpc_addrs, quic_addrs })
}

/// The browse thread: judge every resolve and send what changed, until the daemon stops or the
/// receiver of `found` is gone.
fn forward(events: Receiver<ServiceEvent>, own: &Own, keep_loopback: bool, found: &mpsc::Sender<Report>) {
    // The last `Found` sent per instance, so that a resolve that changed nothing is not resent.
    let mut sent: HashMap<String, Found> = HashMap::new();
    let send = |r: Report| {
        let ok = found.blocking_send(r).is_ok();
        if !ok {
            tracing::debug!("mdns: nobody listens for peers any more; browse thread ends");
        }
        ok
    };
    while let Ok(event) = events.recv() {
        match event {
            ServiceEvent::ServiceResolved(rs) => match judge(own, &rs, keep_loopback) {
                Ok(f) => {
                    if sent.get(&rs.fullname) == Some(&f) {
                        continue;
                    }
                    tracing::debug!(instance = %rs.fullname, host = %f.host, generation = f.generation,
                        grpc = ?f.grpc_addrs, "mdns: found a peer");
                    let gone: Vec<SocketAddr> = sent
                        .get(&rs.fullname)
                        .map(|old| old.quic_addrs.iter().filter(|a| !f.quic_addrs.contains(a)).copied().collect())
                        .unwrap_or_default();
                    if (!gone.is_empty() && !send(Report::Gone(gone))) || !send(Report::Found(f.clone())) {
                        return;
                    }
                    sent.insert(rs.fullname.clone(), f);
                }
                Err(reason) => {
                    tracing::debug!(instance = %rs.fullname, %reason, "mdns: ignoring a record");
                }
            },
            ServiceEvent::ServiceRemoved(_, fullname) => {
                // Not a liveness signal (SWIM decides that): its addresses are no longer
                // announced, and its return is reported again.
                tracing::debug!(instance = %fullname, "mdns: record removed");
                if let Some(old) = sent.remove(&fullname)
                    && !send(Report::Gone(old.quic_addrs))
                {
                    return;
                }
            }
            _ => {}
        }
    }
    tracing::debug!("mdns: browse ended");
}

/// A fleet node's record as a bystander sees it (`fleet doctor`): whoever it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub instance: String,
    /// Its tenant, host and short mesh CA fingerprint; `Err` why the record does not parse.
    pub record: Result<(String, String, String), String>,
    pub addrs: Vec<IpAddr>,
}

/// Browse the LAN for `wait` without announcing anything: every fleet record resolved by then,
/// of any tenant or mesh, so `fleet doctor` can say which nodes of another mesh are about.
pub fn look_around(wait: std::time::Duration) -> Result<Vec<Seen>, MdnsError> {
    let daemon = ServiceDaemon::new().map_err(daemon_err("start the mDNS daemon"))?;
    let events = daemon.browse(SERVICE_TYPE).map_err(daemon_err("browse"))?;
    let until = std::time::Instant::now() + wait;
    let mut seen: HashMap<String, Seen> = HashMap::new();
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else { break };
        if let ServiceEvent::ServiceResolved(rs) = event {
            let record = parse_txt(|k| rs.get_property_val_str(k)).map(|r| (r.tenant, r.host, r.mesh));
            let addrs = scoped_ips(&rs).into_iter().map(|(ip, _)| ip).collect();
            let instance = rs.fullname.clone();
            seen.insert(instance.clone(), Seen { instance, record: record.map_err(|e| e.to_string()), addrs });
        }
    }
    let _ = daemon.shutdown();
    let mut out: Vec<Seen> = seen.into_values().collect();
    out.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ann(tenant: &str, host: &str, mesh: &str) -> Announcement {
        Announcement {
            tenant: tenant.into(),
            host: host.into(),
            mesh: mesh.into(),
            grpc_port: 7420,
            quic_port: 7421,
            generation: 1_700_000_000_123,
        }
    }

    fn own() -> Own {
        Own { tenant: "ops".into(), host: "dragon-lin".into(), mesh: "ab12cd34".into() }
    }

    fn lookup<'a>(props: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |k| props.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }

    /// A record as the browser would see it, built through mdns-sd's own types.
    fn resolved(a: &Announcement, addrs: &str) -> ResolvedService {
        let props = txt_properties(a);
        ServiceInfo::new(SERVICE_TYPE, &instance_name(&a.tenant, &a.host), "x.local.", addrs, a.grpc_port, &props[..])
            .expect("service info")
            .as_resolved_service()
    }

    #[test]
    fn txt_has_the_design_keys_and_round_trips() {
        let a = ann("ops", "w-jarvis", "ab12cd34");
        let props = txt_properties(&a);
        let keys: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["v", "tenant", "host", "mesh", "grpc", "quic", "gen"]);
        assert_eq!(props[0].1, "1");
        let rec = parse_txt(lookup(&props)).expect("parses");
        assert_eq!(
            rec,
            Record {
                tenant: "ops".into(),
                host: "w-jarvis".into(),
                mesh: "ab12cd34".into(),
                grpc_port: 7420,
                quic_port: 7421,
                generation: 1_700_000_000_123,
            }
        );
        // mdns-sd accepts the record (key charset, 255-byte limit).
        service_info(&a).expect("service info");
    }

    #[test]
    fn txt_parse_rejects_what_it_does_not_understand() {
        let good = txt_properties(&ann("ops", "w-jarvis", "ab12cd34"));
        let with = |key: &str, val: &str| -> Vec<(&'static str, String)> {
            good.iter().map(|(k, v)| (*k, if *k == key { val.to_string() } else { v.clone() })).collect()
        };
        let without =
            |key: &str| -> Vec<(&'static str, String)> { good.iter().filter(|(k, _)| *k != key).cloned().collect() };
        assert_eq!(parse_txt(lookup(&with("v", "2"))), Err(Rejected::Version("2".into())));
        for key in ["v", "tenant", "host", "mesh", "grpc", "quic", "gen"] {
            assert!(matches!(parse_txt(lookup(&without(key))), Err(Rejected::Version(_) | Rejected::Malformed(_))));
        }
        for (key, val) in [
            ("grpc", "0"),
            ("grpc", "70000"),
            ("quic", "x"),
            ("gen", "-1"),
            ("tenant", "a.b"),
            ("host", ""),
            ("host", "-x"),
            ("mesh", ""),
            ("mesh", "a b"),
        ] {
            let r = parse_txt(lookup(&with(key, val)));
            assert!(matches!(r, Err(Rejected::Malformed(_))), "{key}={val:?}: {r:?}");
        }
        // Tenant and host compare as DNS labels: case-insensitive.
        let rec = parse_txt(lookup(&with("tenant", "OPS"))).expect("parses");
        assert_eq!(rec.tenant, "ops");
    }

    #[test]
    fn other_tenant_other_mesh_and_ourselves_are_dropped() {
        let own = own();
        let rec = |tenant: &str, host: &str, mesh: &str| {
            parse_txt(lookup(&txt_properties(&ann(tenant, host, mesh)))).expect("parses")
        };
        assert_eq!(admit(&own, &rec("ops", "w-jarvis", "ab12cd34")), Ok(()));
        assert_eq!(admit(&own, &rec("ops", "W-Jarvis", "AB12CD34")), Ok(()));
        assert_eq!(admit(&own, &rec("build", "w-jarvis", "ab12cd34")), Err(Rejected::OtherTenant("build".into())));
        assert_eq!(admit(&own, &rec("ops", "w-jarvis", "ffff0000")), Err(Rejected::OtherMesh("ffff0000".into())));
        assert_eq!(
            admit(&own, &rec("ops", "dragon-lin", "ab12cd34")),
            Err(Rejected::Ourselves { generation: 1_700_000_000_123 })
        );
        // The reasons read well in a debug log.
        assert_eq!(Rejected::OtherTenant("build".into()).to_string(), "another tenant (build)");
    }

    #[test]
    fn judge_reports_a_peer_with_all_its_addresses() {
        let own = own();
        let peer = ann("ops", "w-jarvis", "ab12cd34");
        let rs = resolved(&peer, "fe80::1,10.0.0.7,2001:db8::7");
        let f = judge(&own, &rs, false).expect("admitted");
        assert_eq!((f.tenant.as_str(), f.host.as_str(), f.mesh.as_str()), ("ops", "w-jarvis", "ab12cd34"));
        assert_eq!(f.generation, peer.generation);
        let grpc: Vec<String> = f.grpc_addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(grpc, ["10.0.0.7:7420", "[2001:db8::7]:7420", "[fe80::1]:7420"]);
        let quic: Vec<u16> = f.quic_addrs.iter().map(|a| a.port()).collect();
        assert_eq!(quic, [7421, 7421, 7421]);

        assert_eq!(
            judge(&own, &resolved(&ann("build", "w-jarvis", "ab12cd34"), "10.0.0.7"), false).map(|_| ()),
            Err(Rejected::OtherTenant("build".into()))
        );
        assert!(matches!(
            judge(&own, &resolved(&ann("ops", "dragon-lin", "ab12cd34"), "10.0.0.8"), false),
            Err(Rejected::Ourselves { .. })
        ));
        assert_eq!(judge(&own, &resolved(&peer, "127.0.0.1"), false), Err(Rejected::NoAddress));
        assert!(judge(&own, &resolved(&peer, "127.0.0.1"), true).is_ok());
    }

    #[test]
    fn link_local_v6_keeps_its_scope_and_sorts_last() {
        let ips = [
            (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)), 3),
            (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 0),
            (IpAddr::V4(Ipv4Addr::LOCALHOST), 1),
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 0),
        ];
        let addrs = socket_addrs(&ips, 7420, false);
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[0], "192.168.1.20:7420".parse().unwrap());
        match addrs[1] {
            SocketAddr::V6(v6) => {
                assert_eq!(v6.scope_id(), 3);
                assert_eq!(v6.to_string(), "[fe80::2%3]:7420");
            }
            SocketAddr::V4(_) => panic!("expected v6"),
        }
        // A first resolve with only a link-local address is still a usable Found.
        assert_eq!(socket_addrs(&ips[..1], 7420, false).len(), 1);
    }

    #[test]
    fn instance_names_are_labels_and_unique() {
        assert_eq!(instance_name("ops", "dragon-lin"), "dragon-lin@ops");
        let long_t = "t".repeat(63);
        let a = instance_name(&long_t, &"a".repeat(63));
        let b = instance_name(&long_t, &format!("{}b", "a".repeat(62)));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(mdns_hostname(&long_t, &"h".repeat(63)).len() <= 63);
        service_info(&ann(&long_t, &"a".repeat(63), "ab12cd34")).expect("long names still make a record");
    }

    #[test]
    fn interface_selection() {
        let all = MdnsConfig::default();
        assert!(all.selects("eth0", false));
        assert!(!all.selects("lo", true));
        let deny = MdnsConfig { deny_interfaces: vec!["docker0".into()], ..MdnsConfig::default() };
        assert!(!deny.selects("docker0", false));
        assert!(deny.selects("eth0", false));
        let allow =
            MdnsConfig { allow_interfaces: vec!["eth1".into(), "lo".into()], deny_interfaces: vec!["lo".into()] };
        assert!(allow.selects("eth1", false));
        assert!(!allow.selects("eth0", false));
        assert!(!allow.selects("lo", true), "deny wins over allow");
        let lo = MdnsConfig { allow_interfaces: vec!["lo".into()], ..MdnsConfig::default() };
        assert!(lo.selects("lo", true), "loopback only when named");
    }

    #[test]
    fn invalid_announcements_are_refused_before_anything_starts() {
        let (tx, _rx) = mpsc::channel(1);
        let cfg = MdnsConfig::default();
        for bad in [ann("a.b", "h", "ab"), ann("ops", "", "ab"), ann("ops", "h", ""), ann("ops", "h", "a=b")] {
            let e = Mdns::start(bad.clone(), &cfg, tx.clone()).expect_err("refused");
            assert!(matches!(e, MdnsError::Invalid(_)), "{bad:?}: {e}");
        }
        let zero = Announcement { grpc_port: 0, ..ann("ops", "h", "ab") };
        assert!(matches!(Mdns::start(zero, &cfg, tx), Err(MdnsError::Invalid(_))));
        let n = normalize(ann("OPS", "Dragon-Lin", "AB12")).expect("valid");
        assert_eq!((n.tenant.as_str(), n.host.as_str(), n.mesh.as_str()), ("ops", "dragon-lin", "ab12"));
    }

    // ---- live test: real mDNS between two network namespaces -----------------------------------

    mod live {
        use super::*;
        use std::io::{BufRead, BufReader, Read, Write};
        use std::process::{Child, ChildStdin, Command, Stdio};
        use std::sync::mpsc as std_mpsc;
        use std::time::Instant;

        /// Tells the inner test process which role to play.
        const ROLE_ENV: &str = "FLEET_MDNS_TEST_ROLE";
        const READY: &str = "FLEET-MDNS-READY";
        const TENANT: &str = "acme";
        const MESH: &str = "m1abcdef";
        /// Each peer must find the other within this.
        const FIND_WITHIN: Duration = Duration::from_secs(5);
        /// The whole test gives up after this.
        const OUTER_DEADLINE: Duration = Duration::from_secs(14);

        fn ip(args: &[&str]) -> Result<(), String> {
            let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
            }
        }

        /// Two namespaces joined by a veth pair; removed on drop, also on panic.
        struct Lab {
            ns: [String; 2],
            addrs: [String; 2],
        }

        impl Lab {
            fn new() -> Lab {
                let pid = std::process::id();
                let net = pid % 250;
                let lab = Lab {
                    ns: [format!("fmdns-{pid}-a"), format!("fmdns-{pid}-b")],
                    addrs: [format!("10.214.{net}.1"), format!("10.214.{net}.2")],
                };
                // A panic from here on drops `lab`, which removes whatever was made.
                let veth = [format!("fmv{pid}a"), format!("fmv{pid}b")];
                let setup = || -> Result<(), String> {
                    for ns in &lab.ns {
                        ip(&["netns", "add", ns]).map_err(|e| format!("{e} (this test needs root)"))?;
                    }
                    ip(&[
                        "link", "add", &veth[0], "netns", &lab.ns[0], "type", "veth", "peer", "name", &veth[1],
                        "netns", &lab.ns[1],
                    ])?;
                    for ((ns, addr), dev) in lab.ns.iter().zip(&lab.addrs).zip(&veth) {
                        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
                        ip(&["-n", ns, "link", "set", "lo", "up"])?;
                        ip(&["-n", ns, "link", "set", dev, "up"])?;
                    }
                    Ok(())
                };
                if let Err(e) = setup() {
                    panic!("{e}");
                }
                // mdns-sd uses only interfaces that are operationally up when it starts (it
                // looks again every 5 s): wait for the carrier of both ends.
                let until = Instant::now() + Duration::from_secs(3);
                for (ns, dev) in lab.ns.iter().zip(&veth) {
                    loop {
                        let out = Command::new("ip")
                            .args(["-n", ns, "-o", "link", "show", "dev", dev])
                            .output()
                            .expect("ip link show");
                        if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                            break;
                        }
                        assert!(Instant::now() < until, "{dev} never came up");
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                lab
            }
        }

        impl Drop for Lab {
            fn drop(&mut self) {
                for ns in &self.ns {
                    // Deleting a namespace also deletes the veth end inside it. One that was never
                    // made fails harmlessly.
                    let _ = ip(&["netns", "del", ns]);
                }
            }
        }

        /// One inner test process inside a namespace; killed on drop if still running.
        struct Inner {
            name: String,
            child: Child,
            stdin: Option<ChildStdin>,
            stderr: Option<thread::JoinHandle<String>>,
        }

        impl Inner {
            fn spawn(name: &str, ns: &str, role: &str, lines: std_mpsc::Sender<(String, String)>) -> Inner {
                let exe = std::env::current_exe().expect("current exe");
                let test = format!("{}::live_role", module_path!().split_once("::").map_or("", |(_, rest)| rest));
                let mut child = Command::new("ip")
                    .args(["netns", "exec", ns])
                    .arg(exe)
                    .args(["--exact", &test, "--ignored", "--nocapture", "--test-threads=1"])
                    .env(ROLE_ENV, role)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn the inner test");
                let stdout = child.stdout.take().expect("stdout");
                let who = name.to_string();
                thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        let _ = lines.send((who.clone(), line));
                    }
                });
                let mut stderr = child.stderr.take().expect("stderr");
                let stderr = thread::spawn(move || {
                    let mut s = String::new();
                    let _ = stderr.read_to_string(&mut s);
                    s
                });
                Inner { name: name.into(), stdin: child.stdin.take(), child, stderr: Some(stderr) }
            }

            /// Close its stdin (it then shuts down cleanly) and wait; kill after `grace`.
            fn finish(&mut self, grace: Duration) -> (bool, String) {
                self.stdin = None;
                let until = Instant::now() + grace;
                let ok = loop {
                    match self.child.try_wait() {
                        Ok(Some(status)) => break status.success(),
                        Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(20)),
                        _ => {
                            let _ = self.child.kill();
                            let _ = self.child.wait();
                            break false;
                        }
                    }
                };
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
                (ok, err)
            }
        }

        impl Drop for Inner {
            fn drop(&mut self) {
                if let Ok(None) = self.child.try_wait() {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
            }
        }

        /// Two peers of one tenant in two namespaces find each other within 5 s with the right TXT
        /// fields; a third process (in the first namespace) announces another tenant and another
        /// mesh, which both peers see on the wire and never report.
        #[test]
        #[ignore = "needs root: network namespaces"]
        fn peers_in_two_namespaces_find_each_other_and_nothing_else() {
            let started = Instant::now();
            let lab = Lab::new();
            let (tx, rx) = std_mpsc::channel();
            let mut procs = [
                Inner::spawn("intruders", &lab.ns[0], "intruders", tx.clone()),
                Inner::spawn("alpha", &lab.ns[0], &format!("peer alpha 1001 beta 2002 {}", lab.addrs[1]), tx.clone()),
                Inner::spawn("beta", &lab.ns[1], &format!("peer beta 2002 alpha 1001 {}", lab.addrs[0]), tx.clone()),
            ];
            drop(tx);
            let mut ready: Vec<String> = Vec::new();
            let mut transcript = String::new();
            while ready.len() < procs.len() {
                let left = OUTER_DEADLINE.saturating_sub(started.elapsed());
                match rx.recv_timeout(left) {
                    Ok((who, line)) => {
                        transcript.push_str(&format!("[{who}] {line}\n"));
                        if line.ends_with(READY) {
                            ready.push(who);
                        }
                    }
                    Err(_) => break,
                }
            }
            let mut failures = Vec::new();
            // Peers first: the intruders must stay up until both peers have checked them.
            for p in procs.iter_mut().rev() {
                let (ok, err) = p.finish(Duration::from_secs(3));
                if !ok || !ready.contains(&p.name) {
                    failures.push(format!("{} failed (ready: {}):\n{err}", p.name, ready.contains(&p.name)));
                }
            }
            while let Ok((who, line)) = rx.try_recv() {
                transcript.push_str(&format!("[{who}] {line}\n"));
            }
            println!("{transcript}");
            assert!(failures.is_empty(), "{}\ntranscript:\n{transcript}", failures.join("\n"));
            println!("live mDNS test took {:?}", started.elapsed());
        }

        /// The inner half of the live test; does nothing unless started by it.
        #[test]
        #[ignore = "needs root: network namespaces (started by the live test)"]
        fn live_role() {
            let Ok(role) = std::env::var(ROLE_ENV) else { return };
            let words: Vec<&str> = role.split_whitespace().collect();
            match words.as_slice() {
                ["intruders"] => intruders(),
                ["peer", me, my_gen, other, other_gen, other_ip] => peer(
                    me,
                    my_gen.parse().expect("gen"),
                    other,
                    other_gen.parse().expect("gen"),
                    other_ip.parse().expect("ip"),
                ),
                _ => panic!("bad role {role:?}"),
            }
        }

        fn ready() {
            println!("{READY}");
            std::io::stdout().flush().expect("flush");
        }

        /// Returns a receiver that fires when stdin closes (the outer test is done with us).
        fn stdin_closed() -> std_mpsc::Receiver<()> {
            let (tx, rx) = std_mpsc::channel();
            thread::spawn(move || {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
                let _ = tx.send(());
            });
            rx
        }

        fn announce(tenant: &str, host: &str, mesh: &str, generation: u64) -> (Mdns, mpsc::Receiver<Report>) {
            let (tx, rx) = mpsc::channel(64);
            let a = Announcement { generation, ..ann(tenant, host, mesh) };
            (Mdns::start(a, &MdnsConfig::default(), tx).expect("start mdns"), rx)
        }

        fn intruders() {
            let closed = stdin_closed();
            let (other_tenant, _rx1) = announce("other", "intruder1", MESH, 1);
            let (other_mesh, _rx2) = announce(TENANT, "intruder2", "m2999999", 2);
            ready();
            let _ = closed.recv_timeout(OUTER_DEADLINE);
            other_tenant.shutdown();
            other_mesh.shutdown();
        }

        fn peer(me: &str, my_gen: u64, other: &str, other_gen: u64, other_ip: IpAddr) {
            let closed = stdin_closed();
            let t0 = Instant::now();
            // A plain mdns-sd browser beside ours proves the intruders' records are on the wire.
            let raw = ServiceDaemon::new().expect("raw daemon");
            let raw_events = raw.browse(SERVICE_TYPE).expect("raw browse");
            let (mdns, mut found) = announce(TENANT, me, MESH, my_gen);

            let mut found_other: Option<Duration> = None;
            let mut intruders_seen: HashMap<String, Instant> = HashMap::new();
            let mut is_ready = false;
            loop {
                while let Ok(report) = found.try_recv() {
                    let Report::Found(f) = report else { continue };
                    let at = t0.elapsed();
                    println!(
                        "{me}: Found after {at:?}: {} gen {} grpc {:?} quic {:?}",
                        f.host, f.generation, f.grpc_addrs, f.quic_addrs
                    );
                    assert_eq!(f.host, other, "{me} reported a record it should have dropped: {f:?}");
                    assert_eq!((f.tenant.as_str(), f.mesh.as_str(), f.generation), (TENANT, MESH, other_gen), "{f:?}");
                    if f.grpc_addrs.contains(&SocketAddr::new(other_ip, 7420)) {
                        assert!(f.quic_addrs.contains(&SocketAddr::new(other_ip, 7421)), "{f:?}");
                        found_other.get_or_insert(at);
                    }
                }
                while let Ok(ev) = raw_events.try_recv() {
                    if let ServiceEvent::ServiceResolved(rs) = ev {
                        let tenant = rs.get_property_val_str(txt::TENANT).unwrap_or_default();
                        let mesh = rs.get_property_val_str(txt::MESH).unwrap_or_default();
                        if tenant != TENANT || mesh != MESH {
                            intruders_seen.entry(rs.fullname.clone()).or_insert_with(Instant::now);
                        }
                    }
                }
                if found_other.is_none() && t0.elapsed() > FIND_WITHIN {
                    panic!("{me} did not find {other} within {FIND_WITHIN:?}");
                }
                // Ready when the peer is found and both intruders were on the wire for a while, so
                // our browser had every chance to (wrongly) report them.
                let settled = intruders_seen.len() >= 2
                    && intruders_seen.values().all(|t| t.elapsed() > Duration::from_millis(500));
                if !is_ready && found_other.is_some() && settled {
                    println!(
                        "{me}: found {other} after {:?}; intruders on the wire: {:?}",
                        found_other.unwrap_or_default(),
                        intruders_seen.keys().collect::<Vec<_>>()
                    );
                    ready();
                    is_ready = true;
                }
                if closed.try_recv().is_ok() {
                    break;
                }
                assert!(t0.elapsed() < OUTER_DEADLINE, "{me}: never became ready (intruders seen: {intruders_seen:?})");
                thread::sleep(Duration::from_millis(20));
            }
            assert!(is_ready, "{me}: stopped before it was ready");
            let t = Instant::now();
            mdns.shutdown();
            println!("{me}: shutdown took {:?}", t.elapsed());
            let _ = raw.shutdown();
        }
    }
}
