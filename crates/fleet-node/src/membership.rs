//! Membership: SWIM (the `foca` crate) spoken over QUIC datagrams (`quinn`)
//! with the mesh certificates, on the node's UDP port (the gRPC port number).
//!
//! - A member's identity ([`MemberId`]) carries tenant, host, the gRPC and QUIC
//!   addresses and a generation that changes on every start, so a restarted
//!   node is a new identity that replaces the old one (foca's address conflict
//!   rule: same host, newer generation wins), never a zombie.
//! - Seeds (static peers, mDNS finds) are announced to by address; SWIM spreads
//!   the rest by gossip. One reachable seed is enough.
//! - QUIC: both sides present node certificates of the mesh CA; a client dials
//!   with the server name `node.<tenant>.fleet.internal`, and a server drops an
//!   incoming connection whose certificate is not a node of its tenant. So a
//!   peer of another tenant or CA never exchanges a SWIM message.
//! - A member is who its certificate says. Every datagram's sender identity
//!   (the SWIM header's `src`) must name the host and tenant of the node
//!   certificate on the QUIC connection it came in on, or it is dropped
//!   ([`claim_holds`]). Membership updates that a datagram carries about other
//!   members are filtered too ([`believable`]): one that claims another host
//!   than the certificate at its address, or a newer identity for an address
//!   whose node itself announces another, never reaches foca, and such an
//!   identity is never sent to nor shown. So a node certificate of the tenant
//!   can neither pass for another host nor, by gossip, replace one.
//! - The driver is one task owning the `Foca` state; timers are tasks that post
//!   back; the published view is a `watch` of [`MemberInfo`] rows.
//! - Full sync (memberlist's push/pull, see the `sync` section): when a node
//!   joins (and while its view grows) and every [`sync_period`] it opens one
//!   bidirectional QUIC stream on the membership connection to one member and
//!   both sides send their whole membership state, so a joiner learns every
//!   member at once instead of the ~25 of a `Feed`. The same guarantees hold:
//!   the stream's connection is one kept after [`Transport::admit`] (a node of
//!   our tenant; an unadmitted peer never gets to open a stream), and every
//!   received member passes the [`believable`] rules before foca sees it (a
//!   refused one is counted and logged as for datagrams; placeholders are
//!   refused too). A frame is bounded ([`SYNC_MAX_FRAME`] bytes,
//!   [`SYNC_MAX_MEMBERS`] members) before anything is allocated for it, an
//!   exchange is bounded in time ([`SYNC_TIMEOUT`]), a peer may open one
//!   stream at a time, and a node answers at most [`SYNC_SERVE`] syncs at
//!   once (more are refused, not queued). The stream I/O runs in tasks; the
//!   driver takes each snapshot and applies each received list.

use bytes::Bytes;
use foca::{Codec as _, Config, Foca, Identity, OwnedNotification, PostcardCodec, Timer};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// ALPN of the membership plane.
pub const ALPN: &[u8] = b"fleet-swim/1";

/// A membership connection that carries nothing for this long is closed. Long enough
/// for a connection to outlive the gaps between SWIM's exchanges with a member in a mesh
/// of up to about 100: each of two members probes the other once in a round of all
/// members, one a second, so at 100 members they talk about every 50 s. With a 10 s close
/// nearly every probe there paid a handshake, and an idle node sent 12 datagrams a second
/// at 50 and 100 members against 4 at 10 (docs/benchmarks.md, "Tenth pass"). Bounded in any
/// mesh: a node talks to about two members a second, so it holds at most a few hundred
/// connections, whatever the size.
pub const IDLE_CLOSE: Duration = Duration::from_secs(120);

/// What a node's stateless-reset secret is derived from its key for ([`endpoint`]).
pub const RESET_LABEL: &[u8] = b"fleet-swim/1 stateless reset";

/// Datagrams kept per peer while a dial to it is in progress.
const DIAL_QUEUE: usize = 16;

/// Who a member is. `addr()` is the QUIC address: one live identity per
/// address, and a seed known only by its address can be announced to (foca
/// accepts an announce addressed to any identity with its address).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MemberId {
    pub tenant: String,
    pub host: String,
    pub grpc: SocketAddr,
    pub quic: SocketAddr,
    /// Changes on every start of the node.
    pub generation: u64,
    /// Bumped when foca renews the identity (after being declared down).
    pub bump: u16,
}

impl Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(MemberId { bump: self.bump.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.quic
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self.bump) > (adversary.generation, adversary.bump)
    }
}

/// Why the QUIC endpoint bound on `local` cannot dial `to`, if it cannot: an IPv6 address
/// from an IPv4 socket (quinn refuses it: "invalid remote address"), or an IPv6 link-local
/// address without the scope id that says which interface it is on.
fn undialable(local: SocketAddr, to: SocketAddr) -> Option<&'static str> {
    match to {
        SocketAddr::V6(_) if local.is_ipv4() => {
            Some("an IPv6 address, and this node listens on IPv4 (`listen: \"[::]:PORT\"` listens on both)")
        }
        SocketAddr::V6(v6) if (v6.ip().segments()[0] & 0xffc0) == 0xfe80 && v6.scope_id() == 0 => {
            Some("an IPv6 link-local address without its interface (write it fe80::...%IFINDEX)")
        }
        _ => None,
    }
}

/// What a change of a member's identity (foca's `Rename`) means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rename {
    /// A new generation: the node was started again.
    Restarted,
    /// The same generation, a new `bump`: the same run came back after being declared down
    /// (a healed partition), nothing restarted.
    Renewed,
}

fn rename_kind(old: &MemberId, new: &MemberId) -> Rename {
    if old.generation == new.generation { Rename::Renewed } else { Rename::Restarted }
}

/// How a member was first found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    Static,
    Mdns,
    Gossip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

/// One row of the membership view.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    pub id: MemberId,
    pub state: MemberState,
    pub incarnation: u64,
    pub found_by: FoundBy,
    pub last_seen_ms: i64,
}

/// A seed address: how it was reported, and whether its reporter has since
/// withdrawn it (an mDNS record removed or changed, a static name that moved).
/// One that is not a member is announced to every `reseed` period until it is
/// withdrawn; then it is forgotten once it is not (or no longer) a member.
struct Seed {
    how: FoundBy,
    withdrawn: bool,
}

/// What reporters tell the membership loop about seed addresses.
enum SeedNews {
    Report(SocketAddr, FoundBy),
    Withdraw(SocketAddr),
}

/// How often a node that is no member's member yet announces itself to its seeds (a node
/// with members: [`SwimTimings::reseed`]).
const ALONE_RESEED: Duration = Duration::from_secs(1);

/// Settable timings of the failure detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimTimings {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
    /// How often seeds that are not members are announced to again.
    pub reseed: Duration,
}

impl Default for SwimTimings {
    fn default() -> Self {
        // Detection ≈ one probe period + rtt + suspicion: about 4-5 s on a LAN.
        SwimTimings {
            probe_period: Duration::from_millis(1000),
            probe_rtt: Duration::from_millis(400),
            suspect_to_down: Duration::from_millis(3000),
            reseed: Duration::from_secs(3),
        }
    }
}

/// How many times gossip carries each membership update in a mesh of `members` (this node
/// included): memberlist's retransmit limit, 4 x ceil(log10(members + 1)): 4 up to 9 members,
/// 8 up to 99, 12 up to 999. foca's `new_lan` derives it once from a size given at start
/// (6 for the 32 this node gave it), so at 100 members an update, a suspect's refutation
/// among them, reached too few, and the members that missed a refutation declared a live
/// node down (half the mesh at once, in a mass start of 100).
pub fn retransmissions(members: usize) -> NonZeroU8 {
    // Ends: `reach` saturates at usize::MAX after 20 decades, which is 80 retransmissions.
    let (mut decades, mut reach) = (1u8, 10usize);
    while reach < members.saturating_add(1) {
        decades += 1;
        reach = reach.saturating_mul(10);
    }
    NonZeroU8::new(4 * decades).expect("at least 4")
}

/// The configuration to give foca ([`Foca::set_config`]) now that it knows `members` (this
/// node included), if the retransmissions for that size differ from `current` (updated).
pub fn refit(t: &SwimTimings, members: usize, current: &mut NonZeroU8) -> Option<Config> {
    let want = retransmissions(members);
    (want != *current).then(|| {
        *current = want;
        foca_config(t, members)
    })
}

/// The failure detector's configuration for a mesh of `members` (this node included); foca
/// takes a new one at run time ([`Foca::set_config`]) as the mesh grows or shrinks.
pub fn foca_config(t: &SwimTimings, members: usize) -> Config {
    let mut c = Config::new_lan(NonZeroU32::new(32).expect("nonzero"));
    c.max_transmissions = retransmissions(members);
    c.probe_period = t.probe_period;
    c.probe_rtt = t.probe_rtt;
    c.suspect_to_down_after = t.suspect_to_down;
    // A QUIC datagram must fit the smallest path MTU QUIC assumes (1200).
    c.max_packet_size = NonZeroUsize::new(1100).expect("nonzero");
    c.remove_down_after = Some(Duration::from_secs(120));
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: NonZeroUsize::new(2).expect("nonzero"),
    });
    // Returning members are readmitted quickly.
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(2),
        num_members: NonZeroUsize::new(3).expect("nonzero"),
    });
    c
}

/// The join burst. foca answers an announce with a `Feed`: as many random
/// members as fit one datagram (about 25), and a joiner otherwise learns the
/// members that joined before it only as they probe it or as the periodic
/// announce (every 10 s) returns another `Feed`, so after a mass start of 100
/// nodes the last views took tens of seconds to fill. While this node's view
/// still grows by more than one member per [`JoinBurst::PERIOD`] (it just
/// joined, or many nodes start at once), it announces to [`JoinBurst::FANOUT`]
/// members each period; once the view stops growing for
/// [`JoinBurst::QUIET_TICKS`] periods it stops. A single join elsewhere (growth
/// by one) starts no burst, so a steady mesh pays nothing.
#[derive(Clone, Debug, Default)]
pub struct JoinBurst {
    /// Active members at the last tick.
    last: usize,
    /// Ticks since the view last grew by more than one member.
    quiet: u32,
    /// Where the next announces start in the member list (each tick asks others).
    cursor: usize,
}

impl JoinBurst {
    pub const PERIOD: Duration = Duration::from_millis(500);
    pub const FANOUT: usize = 3;
    pub const QUIET_TICKS: u32 = 2;

    /// At a tick, with `members` active members: how many of them to announce to now.
    pub fn tick(&mut self, members: usize) -> usize {
        let grew = members.saturating_sub(self.last) > 1;
        self.last = members;
        self.quiet = if grew { 0 } else { self.quiet.saturating_add(1) };
        // No members: min(0) is none to announce to.
        if self.quiet < Self::QUIET_TICKS { Self::FANOUT.min(members) } else { 0 }
    }

    /// `k` of `members`, others at each call (round robin).
    pub fn targets<T: Clone>(&mut self, k: usize, members: &[T]) -> Vec<T> {
        if members.is_empty() {
            return vec![];
        }
        let out = (0..k.min(members.len())).map(|j| members[(self.cursor + j) % members.len()].clone()).collect();
        self.cursor = (self.cursor + k) % members.len();
        out
    }
}

/// Handle on the membership plane.
#[derive(Clone)]
pub struct Membership {
    pub members: watch::Receiver<Vec<MemberInfo>>,
    seeds: mpsc::Sender<SeedNews>,
    transport: Arc<Transport>,
    /// Datagram bytes received, for the traffic benchmark.
    pub bytes_in: Arc<std::sync::atomic::AtomicU64>,
    pub bytes_out: Arc<std::sync::atomic::AtomicU64>,
    /// The newest state version each host announced ([`crate::versions`]).
    pub versions: watch::Receiver<crate::versions::Book>,
    publish: Arc<watch::Sender<u64>>,
}

/// How many members a node's view holds, and in which state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounts {
    pub total: u32,
    pub alive: u32,
    pub suspect: u32,
}

/// [`Membership::counts`] of a view.
fn counts(view: &watch::Receiver<Vec<MemberInfo>>) -> MemberCounts {
    let view = view.borrow();
    let count = |s: MemberState| view.iter().filter(|m| m.state == s).count() as u32;
    MemberCounts { total: view.len() as u32, alive: count(MemberState::Alive), suspect: count(MemberState::Suspect) }
}

impl Membership {
    /// The view's member counts, read under one borrow of the view. Never borrow the
    /// view twice in one expression: the guards live to the end of the statement, and a
    /// second read waits behind the membership loop's pending write, which waits for the
    /// first (a NodeInfo that did so froze a node's membership for good in a 100-node run).
    pub fn counts(&self) -> MemberCounts {
        counts(&self.members)
    }

    /// Announce a new version of this host's state to the mesh (by gossip; the
    /// newest of several quick ones is what spreads).
    pub fn publish_version(&self, version: u64) {
        self.publish.send_replace(version);
    }

    /// Join through a node at this QUIC address.
    pub fn seed(&self, addr: SocketAddr, how: FoundBy) {
        let _ = self.seeds.try_send(SeedNews::Report(addr, how));
    }

    /// The reporter of `addr` no longer announces it (see [`Seed`]).
    pub fn withdraw(&self, addr: SocketAddr) {
        let _ = self.seeds.try_send(SeedNews::Withdraw(addr));
    }

    /// QUIC connections open now (to the members this node talked to lately).
    pub fn connections(&self) -> usize {
        self.transport.conns.lock().expect("conns").len()
    }

    /// Datagrams dropped since start because their sender claimed another
    /// host than its certificate.
    pub fn refused_claims(&self) -> u64 {
        self.transport.refused_claims.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// New TLS configs (a new revocation list) for the next handshakes both ways.
    pub fn set_tls(&self, server: &rustls::ServerConfig, client: &rustls::ClientConfig) -> Result<(), String> {
        let (sc, cc) = quic_configs(server, client)?;
        self.transport.endpoint.set_server_config(Some(sc));
        *self.transport.client.lock().expect("client config") = Some(cc);
        Ok(())
    }

    /// Put `crl` in force: close the open connections with a node whose
    /// certificate it revokes, and any such connection kept later (one whose
    /// handshake began before the new list); how many were closed now.
    pub fn apply(&self, crl: Option<fleet_tls::revoke::Crl>) -> usize {
        let mut conns = self.transport.conns.lock().expect("conns");
        let revoked: Vec<SocketAddr> =
            conns.iter().filter(|(_, c)| revoked_by(crl.as_ref(), c)).map(|(a, _)| *a).collect();
        for a in &revoked {
            if let Some(c) = conns.remove(a) {
                self.transport.owners.lock().expect("owners").remove(a);
                c.close(2u32.into(), b"certificate revoked");
            }
        }
        *self.transport.crl.lock().expect("crl") = crl;
        revoked.len()
    }
}

// ---------------------------------------------------------------- transport

/// May a member identity be taken from (or sent to) the node whose
/// certificate names `cert_host` of `tenant`? Only if it names that host and
/// tenant. A seed placeholder (`seed:ADDR`, an address we announce to before
/// we know who answers) stands for whoever answers there.
pub fn claim_holds(tenant: &str, cert_host: &str, id: &MemberId) -> bool {
    id.tenant == tenant && id.host.eq_ignore_ascii_case(cert_host)
}

fn is_placeholder(id: &MemberId) -> bool {
    id.host.starts_with("seed:")
}

/// The node at an address, as far as an open QUIC connection there shows it:
/// the host in its certificate, and the identity it last announced itself as.
#[derive(Clone, Debug)]
struct Owner {
    /// The connection kept for this address (`stable_id`), whose certificate names `host`.
    conn: usize,
    host: String,
    spoke: Option<MemberId>,
}

impl Owner {
    /// May a datagram over a connection whose certificate names `cert_host` say who the
    /// node at this owner's address is now (its `spoke`)? Over any connection of the same
    /// host, not only the one the owner was kept with: two nodes that dial each other at
    /// once hold two connections, and the identity a node renewed may come over the one
    /// not kept. (Only over the kept one, a renewal that came over the other stayed
    /// unbelieved, and the node hidden from this node's view, until the kept connection
    /// spoke or closed: up to the 10 s idle close in a mass start.)
    fn speaks_for(&self, cert_host: &str) -> bool {
        self.host.eq_ignore_ascii_case(cert_host)
    }
}

/// May an identity that a datagram names (its sender's or a gossiped one) be
/// believed, given the node at the identity's address (`owner`: its
/// certificate's host and the identity it last announced, when a connection
/// is open there)? Only if it is of our tenant, the certificate at its address
/// (if known) names its host, and it would not replace (win the address
/// conflict against) the identity that node itself announced: a node alone
/// introduces its next generation, so nobody can gossip a node out of the
/// mesh with a forged newer one.
pub fn believable(tenant: &str, owner: Option<(&str, Option<&MemberId>)>, id: &MemberId) -> bool {
    if id.tenant != tenant {
        return false;
    }
    let Some((cert_host, spoke)) = owner else { return true };
    claim_holds(tenant, cert_host, id) && spoke.is_none_or(|s| s == id || !id.win_addr_conflict(s))
}

/// Does `crl` revoke the certificate the peer of `conn` presented?
fn revoked_by(crl: Option<&fleet_tls::revoke::Crl>, conn: &quinn::Connection) -> bool {
    let Some(crl) = crl else { return false };
    conn.peer_identity()
        .and_then(|any| any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().and_then(fleet_tls::revoke::serial_of))
        .is_some_and(|serial| crl.revokes(&serial))
}

struct Transport {
    endpoint: quinn::Endpoint,
    tenant: String,
    server_name: String,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    /// The node at the address of each open connection (kept and dropped with `conns`).
    owners: Mutex<HashMap<SocketAddr, Owner>>,
    /// Datagrams dropped because their sender claimed another host than its
    /// certificate, and gossiped updates dropped as not [`believable`]; each
    /// (address, claim) is logged once.
    refused_claims: std::sync::atomic::AtomicU64,
    claims_logged: Mutex<HashSet<(SocketAddr, String)>>,
    /// The client config of dials, once [`Membership::set_tls`] replaced the endpoint's default.
    client: Mutex<Option<quinn::ClientConfig>>,
    /// The revocation list in force ([`Membership::apply`]).
    crl: Mutex<Option<fleet_tls::revoke::Crl>>,
    /// Dials in progress, with the datagrams that wait for each (at most
    /// [`DIAL_QUEUE`]): sent once the handshake is done, never dropped for
    /// being early (a mass start sends many datagrams to new peers at once).
    dialing: Mutex<HashMap<SocketAddr, Vec<Bytes>>>,
    /// The last dial error per address, so each new one is logged once.
    dial_errors: Mutex<HashMap<SocketAddr, String>>,
    inbound: mpsc::Sender<(SocketAddr, Bytes)>,
    bytes_in: Arc<std::sync::atomic::AtomicU64>,
    bytes_out: Arc<std::sync::atomic::AtomicU64>,
    /// Syncs asked of us, to the driver (which answers with its snapshot).
    sync_news: mpsc::Sender<SyncNews>,
    /// Syncs answered at once, all peers together ([`SYNC_SERVE`]).
    sync_slots: Arc<tokio::sync::Semaphore>,
    sync_stats: SyncCounters,
    /// What a rows stream is answered with ([`Membership::serve_rows`]).
    rows: std::sync::OnceLock<RowsSource>,
}

impl Transport {
    /// Is the peer of `conn` a node of our tenant?
    fn admit(&self, conn: &quinn::Connection) -> Result<fleet_tls::Principal, String> {
        let certs = conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
            .ok_or("no client certificate")?;
        let p = fleet_tls::Principal::from_peer_certs(Some(&certs)).map_err(|e| e.to_string())?;
        if p.tenant.as_str() != self.tenant || p.kind != fleet_tls::Kind::Node {
            return Err(format!("{p} is not a node of tenant {}", self.tenant));
        }
        Ok(p)
    }

    /// Keep `conn` (its peer's certificate names `host`) and feed its datagrams to SWIM.
    fn keep(self: &Arc<Self>, conn: quinn::Connection, host: String) {
        let addr = conn.remote_address();
        {
            // Under the conns lock, as `apply` holds it while it swaps the list.
            let mut conns = self.conns.lock().expect("conns");
            if revoked_by(self.crl.lock().expect("crl").as_ref(), &conn) {
                conn.close(2u32.into(), b"certificate revoked");
                return;
            }
            conns.insert(addr, conn.clone());
            let owner = Owner { conn: conn.stable_id(), host: host.clone(), spoke: None };
            self.owners.lock().expect("owners").insert(addr, owner);
        }
        self.serve_syncs(conn.clone(), host.clone());
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let bytes = match conn.read_datagram().await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(peer = %addr, error = %e, "membership: connection ended");
                        break;
                    }
                };
                tracing::trace!(peer = %addr, bytes = bytes.len(), "membership: received");
                me.bytes_in.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let Some(bytes) = me.vet(addr, &host, bytes) else { continue };
                if me.inbound.send((addr, bytes)).await.is_err() {
                    break;
                }
            }
            let mut conns = me.conns.lock().expect("conns");
            if conns.get(&addr).is_some_and(|c| c.stable_id() == conn.stable_id()) {
                conns.remove(&addr);
                me.owners.lock().expect("owners").remove(&addr);
            }
        });
    }

    /// A datagram from a connection at `addr`, whose certificate
    /// names `cert_host`, as foca may see it: `None` when its sender claims
    /// another host or tenant; otherwise without the membership updates that
    /// are not [`believable`]. One that does not decode goes on unchanged
    /// (foca refuses it).
    fn vet(&self, addr: SocketAddr, cert_host: &str, bytes: Bytes) -> Option<Bytes> {
        let mut rest: &[u8] = &bytes;
        let Ok(header) = PostcardCodec.decode_header(&mut rest) else { return Some(bytes) };
        if !claim_holds(&self.tenant, cert_host, &header.src) {
            self.refused(
                addr,
                cert_host,
                &header.src,
                "refused a member that claims another host than its certificate",
            );
            return None;
        }
        if let Some(o) = self.owners.lock().expect("owners").get_mut(&addr).filter(|o| o.speaks_for(cert_host)) {
            o.spoke = Some(header.src.clone());
        }
        // Updates follow the header as a count and members (foca 2's layout),
        // except in broadcasts, which carry none.
        if rest.len() < 2 || header.message == foca::Message::Broadcast {
            return Some(bytes);
        }
        let header_len = bytes.len() - rest.len();
        let count = u16::from_be_bytes([rest[0], rest[1]]);
        let mut cursor = &rest[2..];
        let mut kept = Vec::with_capacity(usize::from(count));
        let mut dropped = false;
        for _ in 0..count {
            let Ok(member) = PostcardCodec.decode_member(&mut cursor) else { return Some(bytes) };
            if self.believes(member.id()) {
                kept.push(member);
            } else {
                self.refused(addr, cert_host, member.id(), "dropped a gossiped member that is not believable");
                dropped = true;
            }
        }
        if !dropped {
            return Some(bytes);
        }
        let mut out = bytes::BytesMut::with_capacity(bytes.len());
        out.extend_from_slice(&bytes[..header_len]);
        out.extend_from_slice(&(kept.len() as u16).to_be_bytes());
        for m in &kept {
            PostcardCodec.encode_member(m, &mut out).ok()?;
        }
        out.extend_from_slice(cursor);
        Some(out.freeze())
    }

    /// Count a refused identity; log each (address, claimed host) once.
    fn refused(&self, addr: SocketAddr, cert_host: &str, id: &MemberId, what: &str) {
        self.refused_claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut logged = self.claims_logged.lock().expect("claims logged");
        // Bounded: a peer cycling through claims is counted, not remembered without end.
        if logged.len() < 256 && logged.insert((addr, id.host.clone())) {
            tracing::warn!(
                peer = %addr, certificate = %cert_host, claims = %id.host, tenant = %id.tenant,
                at = %id.quic, generation = id.generation, "membership: {what}"
            );
        }
    }

    /// Is `id` [`believable`], given what the connection at its address shows?
    fn believes(&self, id: &MemberId) -> bool {
        if is_placeholder(id) {
            return true;
        }
        let owners = self.owners.lock().expect("owners");
        let owner = owners.get(&id.quic).map(|o| (o.host.as_str(), o.spoke.as_ref()));
        believable(&self.tenant, owner, id)
    }

    /// Whether a dial of `addr` is under way (what is sent there meanwhile waits for it).
    fn dialing(&self, addr: SocketAddr) -> bool {
        self.dialing.lock().expect("dialing").contains_key(&addr)
    }

    fn send(self: &Arc<Self>, to_id: &MemberId, data: Bytes) {
        if !self.believes(to_id) {
            tracing::trace!(peer = %to_id.quic, host = %to_id.host, "membership: not sent to an identity that is not believable");
            return;
        }
        let to = to_id.quic;
        tracing::trace!(peer = %to, bytes = data.len(), "membership: send");
        self.bytes_out.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let conn = self.conns.lock().expect("conns").get(&to).cloned();
        if let Some(c) = conn
            && c.close_reason().is_none()
            && c.send_datagram(data.clone()).is_ok()
        {
            return;
        }
        // Dial in the background; SWIM tolerates the loss of these packets if it fails.
        {
            let mut dialing = self.dialing.lock().expect("dialing");
            if let Some(waiting) = dialing.get_mut(&to) {
                if waiting.len() < DIAL_QUEUE {
                    waiting.push(data);
                }
                return;
            }
            dialing.insert(to, vec![]);
        }
        let me = self.clone();
        let dst = to_id.clone();
        tokio::spawn(async move {
            let result = async {
                let client = me.client.lock().expect("client config").clone();
                let conn = match client {
                    Some(c) => me.endpoint.connect_with(c, to, &me.server_name),
                    None => me.endpoint.connect(to, &me.server_name),
                }
                .map_err(|e| e.to_string())?;
                let conn = tokio::time::timeout(Duration::from_secs(3), conn)
                    .await
                    .map_err(|_| "handshake timed out".to_string())?
                    .map_err(|e| e.to_string())?;
                let p = me.admit(&conn).inspect_err(|_| conn.close(1u32.into(), b"not a node of this tenant"))?;
                Ok::<_, String>((conn, p.name))
            }
            .await;
            let waiting = me.dialing.lock().expect("dialing").remove(&to).unwrap_or_default();
            match result {
                Ok((conn, host)) => {
                    me.dial_errors.lock().expect("dial errors").remove(&to);
                    tracing::debug!(peer = %to, "membership: connected");
                    // The first datagrams too go only where the certificate agrees.
                    if claim_holds(&me.tenant, &host, &dst) || is_placeholder(&dst) {
                        for d in std::iter::once(data).chain(waiting) {
                            if let Err(e) = conn.send_datagram(d) {
                                tracing::debug!(peer = %to, error = %e, "membership: datagram not sent");
                            }
                        }
                    }
                    me.keep(conn, host);
                }
                Err(e) => {
                    let mut errors = me.dial_errors.lock().expect("dial errors");
                    if errors.get(&to) != Some(&e) {
                        tracing::warn!(peer = %to, error = %e, "membership: cannot reach a peer over QUIC");
                        errors.insert(to, e);
                    }
                }
            }
        });
    }

    /// Drop every connection: the mesh declared this node down, so each member dropped its
    /// connection to this node (`forget`) and one still open here leads nowhere. It could
    /// stay open for up to [`IDLE_CLOSE`] after the node was stopped, and the renewal's
    /// announces went into it until the member's close arrived.
    fn forget_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().expect("conns"));
        self.owners.lock().expect("owners").clear();
        for c in conns.into_values() {
            c.close(0u32.into(), b"this node was declared down");
        }
    }

    /// Drop the connection to a member declared down: the next packet dials afresh.
    fn forget(&self, addr: SocketAddr) {
        if let Some(c) = self.conns.lock().expect("conns").remove(&addr) {
            self.owners.lock().expect("owners").remove(&addr);
            c.close(0u32.into(), b"declared down");
        }
    }

    async fn accept_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let incoming = tokio::select! {
                () = cancel.cancelled() => return,
                i = self.endpoint.accept() => match i { Some(i) => i, None => return },
            };
            let me = self.clone();
            tokio::spawn(async move {
                let conn = match tokio::time::timeout(Duration::from_secs(3), incoming).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return tracing::debug!(error = %e, "membership: handshake refused"),
                    Err(_) => return tracing::debug!("membership: handshake timed out"),
                };
                match me.admit(&conn) {
                    Ok(p) => {
                        tracing::debug!(peer = %conn.remote_address(), principal = %p, "membership: accepted");
                        me.keep(conn, p.name)
                    }
                    Err(e) => {
                        tracing::warn!(peer = %conn.remote_address(), reason = %e, "membership: refused a QUIC peer");
                        conn.close(1u32.into(), b"not a node of this tenant");
                    }
                }
            });
        }
    }
}

mod sync;
use sync::{PEER_STREAMS, SyncCounters, SyncNews, Syncer};
pub use sync::{
    SYNC_MAX_FRAME, SYNC_MAX_MEMBERS, SYNC_SERVE, SYNC_TIMEOUT, SyncPolicy, SyncStats, decode_sync, encode_sync,
    sync_frame_len, sync_period, sync_target, vet_synced,
};
mod rows;
pub use rows::{ROWS_ASK, ROWS_MAX_FRAME, Rows, RowsError, RowsSource};
mod tls;
pub use tls::endpoint;
use tls::quic_configs;

// ---------------------------------------------------------------- driver

fn now_ms() -> i64 {
    crate::live::now_ms()
}

/// Start the membership plane for `me`; runs until `cancel`.
pub fn start(
    me: MemberId,
    endpoint: quinn::Endpoint,
    timings: SwimTimings,
    cancel: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Membership {
    let (inbound_tx, mut inbound) = mpsc::channel::<(SocketAddr, Bytes)>(1024);
    let (sync_tx, mut syncs) = mpsc::channel::<SyncNews>(64);
    let bytes_in = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bytes_out = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let transport = Arc::new(Transport {
        endpoint,
        tenant: me.tenant.clone(),
        server_name: format!("node.{}.fleet.internal", me.tenant),
        conns: Mutex::new(HashMap::new()),
        owners: Mutex::new(HashMap::new()),
        refused_claims: Default::default(),
        claims_logged: Mutex::new(HashSet::new()),
        client: Mutex::new(None),
        crl: Mutex::new(None),
        dialing: Mutex::new(HashMap::new()),
        dial_errors: Mutex::new(HashMap::new()),
        inbound: inbound_tx,
        bytes_in: bytes_in.clone(),
        bytes_out: bytes_out.clone(),
        sync_news: sync_tx.clone(),
        sync_slots: Arc::new(tokio::sync::Semaphore::new(SYNC_SERVE)),
        sync_stats: SyncCounters::default(),
        rows: std::sync::OnceLock::new(),
    });
    tracker.spawn(transport.clone().accept_loop(cancel.clone()));
    let transport_handle = transport.clone();

    let (seeds_tx, mut seeds) = mpsc::channel::<SeedNews>(256);
    let (view_tx, view) = watch::channel(Vec::<MemberInfo>::new());
    let (timer_tx, mut timers) = mpsc::channel::<Timer<MemberId>>(1024);
    tracing::info!(quic = %me.quic, generation = me.generation, "membership: SWIM over QUIC");
    let rng = rand_seed(&me);
    let book = Arc::new(Mutex::new(crate::versions::Book::new()));
    let (versions_tx, versions) = watch::channel(crate::versions::Book::new());
    let handler = crate::versions::Handler { book: book.clone(), tx: versions_tx };
    let (publish, mut published) = watch::channel(0u64);
    published.mark_unchanged();
    let mut retransmit = retransmissions(1);
    let mut foca = Foca::with_custom_broadcast(me.clone(), foca_config(&timings, 1), rng, PostcardCodec, handler);
    tracker.spawn(async move {
        let mut rt = foca::AccumulatingRuntime::new();
        // Seed addresses; how each host was first found; last datagram per address.
        let mut found: HashMap<SocketAddr, Seed> = HashMap::new();
        // Static seeds that cannot be dialled from this endpoint, each warned about once.
        let mut undialable_warned: HashSet<SocketAddr> = HashSet::new();
        let mut first_found: HashMap<String, FoundBy> = HashMap::new();
        let mut seen: HashMap<SocketAddr, i64> = HashMap::new();
        let mut reseed = tokio::time::interval(timings.reseed);
        reseed.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut alone = tokio::time::interval(ALONE_RESEED);
        alone.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut burst = tokio::time::interval(JoinBurst::PERIOD);
        burst.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut join = JoinBurst::default();
        let mut sync = Syncer::new(&me, sync_tx);
        let mut view_gap = ViewGap::default();
        loop {
            tokio::select! {
                () = view_gap.due() => {}
                () = cancel.cancelled() => {
                    let _ = foca.leave_cluster(&mut rt);
                    drain(&mut rt, &transport, &timer_tx);
                    // Let the goodbye datagrams leave before the endpoint closes.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    transport.endpoint.close(0u32.into(), b"node stopping");
                    return;
                }
                Some((from, bytes)) = inbound.recv() => {
                    seen.insert(from, now_ms());
                    if let Err(e) = foca.handle_data(&bytes, &mut rt) {
                        tracing::debug!(peer = %from, error = %e, "membership: bad datagram");
                    }
                }
                Some(timer) = timers.recv() => {
                    let suspect = suspicion_of(&timer);
                    if let Err(e) = foca.handle_timer(timer, &mut rt) {
                        tracing::debug!(error = %e, "membership: timer");
                    }
                    if let Some(addr) = suspect.filter(|a| refuted(*a, foca.iter_members().map(|m| m.id()))) {
                        hold_back(&mut rt, addr, &transport);
                    }
                }
                Ok(()) = published.changed() => {
                    let version = *published.borrow_and_update();
                    let data = crate::versions::encode(&me.host, (me.generation, version));
                    // Spread it now to a few members; periodic gossip carries it on.
                    if let Err(e) = foca.add_broadcast(&data).and_then(|_| foca.broadcast(&mut rt)) {
                        tracing::debug!(error = %e, "membership: cannot announce a state version");
                    }
                }
                Some(news) = seeds.recv() => match news {
                    SeedNews::Report(addr, how) => {
                        let local = transport.endpoint.local_addr();
                        if let Some(why) = local.ok().and_then(|l| undialable(l, addr)) {
                            // mDNS reports every address of a peer; one that this endpoint
                            // cannot dial is no seed (and no warning: the others are tried).
                            // A static peer is the operator's own choice: say why once.
                            if how == FoundBy::Static && undialable_warned.insert(addr) {
                                tracing::warn!(seed = %addr, "membership: static peer cannot be dialled: {why}");
                            } else {
                                tracing::debug!(seed = %addr, "membership: seed not dialled: {why}");
                            }
                            continue;
                        }
                        found.entry(addr).or_insert(Seed { how, withdrawn: false }).withdrawn = false;
                        if let Err(e) = foca.announce(placeholder(&me, addr), &mut rt) {
                            tracing::warn!(seed = %addr, error = %e, "membership: cannot announce to seed");
                        }
                    }
                    SeedNews::Withdraw(addr) => {
                        if let Some(s) = found.get_mut(&addr) {
                            s.withdrawn = true;
                        }
                    }
                },
                // Not joined yet: the seeds again every second. A first dial that failed (its
                // handshake timed out: a seed that dropped it in a mass start) then costs this
                // node a second, not a reseed period after the dial's 3 s. Not while a dial of
                // the seed is under way: its announces would wait for it and all go at once.
                _ = alone.tick(), if foca.iter_members().next().is_none() => {
                    for (addr, _) in found.iter().filter(|(a, s)| !s.withdrawn && !transport.dialing(**a)) {
                        let _ = foca.announce(placeholder(&me, *addr), &mut rt);
                    }
                }
                _ = burst.tick() => {
                    let k = join.tick(foca.iter_members().count());
                    if k > 0 {
                        let members: Vec<MemberId> = foca.iter_members().map(|m| m.id().clone()).collect();
                        for id in join.targets(k, &members) {
                            let _ = foca.announce(id, &mut rt);
                        }
                    }
                }
                _ = sync.check.tick() => {
                    sync.tick(foca.identity(), &foca.iter_membership_state().collect::<Vec<_>>(), &found, &transport);
                }
                Some(news) = syncs.recv() => {
                    let learnt = sync.news(news, foca.identity(), &foca.iter_membership_state().collect::<Vec<_>>());
                    // do_broadcast false: a synced list is what its sender already knows and
                    // gossiped when it learnt it; broadcasting it again would fill every
                    // datagram's updates with a whole view of old news (100 members per
                    // joiner in a mass start) and crowd out real changes. What a sync finds
                    // that gossip missed is healed here, on this node; others heal by their
                    // own syncs.
                    if let Err(e) = foca.apply_many(learnt.into_iter(), false, &mut rt) {
                        tracing::debug!(error = %e, "membership: synced members not applied");
                    }
                }
                _ = reseed.tick() => {
                    // Seeds that are not (or no longer) members: announce again,
                    // unless their reporter withdrew them.
                    let members: HashSet<SocketAddr> = foca.iter_members().map(|m| m.id().quic).collect();
                    found.retain(|addr, s| members.contains(addr) || !s.withdrawn);
                    for addr in found.keys().filter(|a| !members.contains(a)) {
                        let _ = foca.announce(placeholder(&me, *addr), &mut rt);
                    }
                    // What is kept per host and address follows what is still known
                    // (foca forgets a down member after a while).
                    let hosts: HashSet<&str> = foca.iter_membership_state().map(|m| m.id().host.as_str()).collect();
                    first_found.retain(|h, _| hosts.contains(h.as_str()));
                    book.lock().expect("book").retain(|h, _| h == me.host.as_str() || hosts.contains(h.as_str()));
                    let mut addrs: HashSet<SocketAddr> = foca.iter_membership_state().map(|m| m.id().quic).collect();
                    addrs.extend(found.keys());
                    seen.retain(|a, _| addrs.contains(a));
                    transport.dial_errors.lock().expect("dial errors").retain(|a, _| addrs.contains(a));
                }
            }
            while let Some(n) = rt.to_notify() {
                match n {
                    OwnedNotification::MemberUp(id) => {
                        let how = found.get(&id.quic).map_or(FoundBy::Gossip, |s| s.how);
                        first_found.entry(id.host.clone()).or_insert(how);
                        tracing::info!(host = %id.host, generation = id.generation, "membership: member up");
                    }
                    OwnedNotification::MemberDown(id) => {
                        tracing::info!(host = %id.host, "membership: member down");
                        transport.forget(id.quic);
                    }
                    OwnedNotification::Rename(old, new) => match rename_kind(&old, &new) {
                        Rename::Restarted => tracing::info!(
                            host = %new.host, old = old.generation, new = new.generation, "membership: member restarted"
                        ),
                        Rename::Renewed => tracing::info!(
                            host = %new.host, generation = new.generation, old_bump = old.bump, new_bump = new.bump,
                            "membership: member rejoined (same run: it renewed its identity after being declared down)"
                        ),
                    },
                    OwnedNotification::Rejoin(new) => {
                        // A peer believes a renewal only from this node itself while this
                        // node's last word at its address was the old identity (`believable`),
                        // so gossip alone would reach each peer as it probes or is probed: a
                        // probe period per member. Say it to every member now.
                        let members: Vec<MemberId> = foca.iter_members().map(|m| m.id().clone()).collect();
                        transport.forget_all();
                        tracing::warn!(
                            bump = new.bump, members = members.len(),
                            "membership: the mesh declared this node down (it did not answer in time); it renewed its own identity and announces it to every member"
                        );
                        for id in members {
                            let _ = foca.announce(id, &mut rt);
                        }
                    }
                    OwnedNotification::Defunct => {
                        tracing::error!("membership: the mesh declared this node down and its identity cannot be renewed");
                    }
                    _ => {}
                }
            }
            let members = foca.iter_members().count() + 1;
            if let Some(config) = refit(&timings, members, &mut retransmit) {
                tracing::debug!(members, retransmit, "membership: gossip retransmissions fit to the mesh");
                if let Err(e) = foca.set_config(config) {
                    tracing::warn!(error = %e, "membership: cannot refit the failure detector");
                }
            }
            drain(&mut rt, &transport, &timer_tx);
            if view_gap.publish_now(tokio::time::Instant::now()) {
                publish_view(&foca, &transport, &me, &first_found, &seen, &view_tx);
            }
        }
    });
    Membership {
        members: view,
        seeds: seeds_tx,
        transport: transport_handle,
        bytes_in,
        bytes_out,
        versions,
        publish: Arc::new(publish),
    }
}

/// When the member view is built and published: after an event, at once if the last build
/// was [`ViewGap::GAP`] ago or more, else once that much time has passed since it (a
/// trailing build, so the view always ends up built after the last event). A build looks at
/// every member; in a 100-node mass start the loop handles hundreds of datagrams a second
/// and building after each was 5 % of the nodes' CPU (docs/benchmarks.md, "Twelfth pass").
#[derive(Debug, Default)]
struct ViewGap {
    built: Option<tokio::time::Instant>,
    due: Option<tokio::time::Instant>,
}

impl ViewGap {
    const GAP: Duration = Duration::from_millis(20);

    /// Build now? If not, a build is due at the end of the gap ([`ViewGap::due`]).
    fn publish_now(&mut self, now: tokio::time::Instant) -> bool {
        match self.built {
            Some(at) if now < at + Self::GAP => {
                self.due = Some(at + Self::GAP);
                false
            }
            _ => {
                self.built = Some(now);
                self.due = None;
                true
            }
        }
    }

    /// Ready when a held-back build is due (never while none is).
    async fn due(&self) {
        match self.due {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Publish the members as peers see them (not this node; only believable identities).
fn publish_view(
    foca: &Foca<MemberId, PostcardCodec, rand::rngs::SmallRng, crate::versions::Handler>,
    transport: &Transport,
    me: &MemberId,
    first_found: &HashMap<String, FoundBy>,
    seen: &HashMap<SocketAddr, i64>,
    view_tx: &watch::Sender<Vec<MemberInfo>>,
) {
    let rows: Vec<MemberInfo> = foca
        .iter_membership_state()
        .filter(|m| m.id().host != me.host && transport.believes(m.id()))
        .map(|m| MemberInfo {
            id: m.id().clone(),
            state: match m.state() {
                foca::State::Alive => MemberState::Alive,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down => MemberState::Down,
            },
            incarnation: u64::from(m.incarnation()),
            found_by: first_found.get(&m.id().host).copied().unwrap_or(FoundBy::Gossip),
            last_seen_ms: seen.get(&m.id().quic).copied().unwrap_or(0),
        })
        .collect();
    view_tx.send_if_modified(move |cur| {
        let changed = cur.len() != rows.len()
            || cur.iter().zip(&rows).any(|(a, b)| a.id != b.id || a.state != b.state || a.incarnation != b.incarnation);
        *cur = rows;
        changed
    });
}

/// The address of the member whose suspicion ends with `timer`, if it is that timer.
fn suspicion_of(timer: &Timer<MemberId>) -> Option<SocketAddr> {
    match timer {
        Timer::ChangeSuspectToDown { member_id, .. } => Some(member_id.quic),
        _ => None,
    }
}

/// Whether the suspicion of the member at `addr` was refuted: when its time is up, a member at
/// that address is still active here (alive or suspect, under any identity), so it was not
/// declared down.
///
/// foca 2.0 sends `TurnUndead` ("the mesh holds you down") to the suspect when the suspicion's
/// time is up even if the suspect refuted it in time: the refutation makes the down fail its
/// condition, but the timer sends whenever the member is known. The suspect then renews its
/// identity, every member renames it, and it announces itself to all of them: 5-21 such
/// renewals in each mass start of 100 nodes, with no node ever holding it down
/// (docs/benchmarks.md, ninth pass).
fn refuted<'a>(addr: SocketAddr, mut active: impl Iterator<Item = &'a MemberId>) -> bool {
    active.any(|id| id.quic == addr)
}

/// Send what foca queued, except to `addr` (the `TurnUndead` of a refuted suspicion: the only
/// datagram that timer sends).
fn hold_back(rt: &mut foca::AccumulatingRuntime<MemberId>, addr: SocketAddr, transport: &Arc<Transport>) {
    while let Some((to, data)) = rt.to_send() {
        if to.quic == addr {
            tracing::debug!(host = %to.host, "membership: a refuted suspicion is not told it is down");
        } else {
            transport.send(&to, data);
        }
    }
}

fn drain(
    rt: &mut foca::AccumulatingRuntime<MemberId>,
    transport: &Arc<Transport>,
    timers: &mpsc::Sender<Timer<MemberId>>,
) {
    while let Some((to, data)) = rt.to_send() {
        transport.send(&to, data);
    }
    while let Some((after, timer)) = rt.to_schedule() {
        let tx = timers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(timer).await;
        });
    }
}

/// An identity standing for "whoever answers at this address": foca announces
/// to it, and learns the real identity from the reply.
fn placeholder(me: &MemberId, quic: SocketAddr) -> MemberId {
    MemberId { tenant: me.tenant.clone(), host: format!("seed:{quic}"), grpc: quic, quic, generation: 0, bump: 0 }
}

fn rand_seed(me: &MemberId) -> rand::rngs::SmallRng {
    use rand::SeedableRng;
    rand::rngs::SmallRng::seed_from_u64(me.generation ^ (std::process::id() as u64) << 17)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn id(host: &str, generation: u64) -> MemberId {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        MemberId { tenant: "t".into(), host: host.into(), grpc: a, quic: a, generation, bump: 0 }
    }

    #[test]
    fn the_view_is_built_at_once_after_a_gap_and_else_once_the_gap_is_over() {
        let t0 = tokio::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut g = ViewGap::default();
        assert!(g.publish_now(t0), "the first event builds at once");
        assert_eq!(g.due, None);
        assert!(!g.publish_now(ms(5)), "within the gap: held back");
        assert_eq!(g.due, Some(ms(20)), "due at the end of the gap, not 20 ms after the held-back event");
        assert!(!g.publish_now(ms(19)));
        assert_eq!(g.due, Some(ms(20)));
        assert!(g.publish_now(ms(20)), "the gap is over");
        assert_eq!((g.built, g.due), (Some(ms(20)), None));
        assert!(!g.publish_now(ms(21)));
        assert!(g.publish_now(ms(100)), "long after: at once");
        assert_eq!(g.due, None);
    }

    #[tokio::test]
    async fn a_held_back_build_comes_when_due_and_none_comes_while_none_is_held() {
        let mut g = ViewGap::default();
        assert!(g.publish_now(tokio::time::Instant::now()));
        let idle = Duration::from_millis(100);
        assert!(tokio::time::timeout(idle, g.due()).await.is_err(), "nothing held back");
        assert!(g.publish_now(tokio::time::Instant::now()), "the gap is over");
        assert!(!g.publish_now(tokio::time::Instant::now()));
        tokio::time::timeout(Duration::from_secs(10), g.due()).await.expect("the held-back build comes");
        assert!(tokio::time::Instant::now() >= g.built.unwrap() + ViewGap::GAP);
    }

    /// The membership loop rewrites the view within 20 ms of every datagram. Counting it while it
    /// does must never wait on itself: with a writer pending between two borrows of one
    /// statement, the second borrow waits for the writer and the writer for the first.
    #[test]
    fn member_counts_are_read_safely_while_the_loop_rewrites_the_view() {
        let info = |host: &str, state| MemberInfo {
            id: id(host, 1),
            state,
            incarnation: 0,
            found_by: FoundBy::Gossip,
            last_seen_ms: 0,
        };
        let rows = vec![info("a", MemberState::Alive), info("b", MemberState::Suspect), info("c", MemberState::Down)];
        let (tx, rx) = watch::channel(rows.clone());
        assert_eq!(counts(&rx), MemberCounts { total: 3, alive: 1, suspect: 1 });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tx.send_if_modified(|cur| {
                        cur.rotate_left(1);
                        true
                    });
                }
            })
        };
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..200_000 {
                assert_eq!(counts(&rx).total, 3);
            }
            let _ = done_tx.send(());
        });
        let finished = done.recv_timeout(Duration::from_secs(20));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(finished.is_ok(), "counting the view deadlocked against its writer");
        writer.join().unwrap();
    }

    #[test]
    fn a_node_speaks_for_its_address_over_any_connection_of_its_certificate() {
        let o = Owner { conn: 7, host: "b".into(), spoke: None };
        assert!(o.speaks_for("b"), "the kept connection, or another of b (both dialled at once)");
        assert!(o.speaks_for("B"), "host names compare without case, as claims do");
        assert!(!o.speaks_for("c"), "another host's connection from that address");
    }

    #[test]
    fn gossip_retransmissions_grow_by_decade_of_the_mesh() {
        let tx = |n| retransmissions(n).get();
        assert_eq!([tx(0), tx(1), tx(9)], [4, 4, 4]);
        assert_eq!([tx(10), tx(50), tx(99)], [8, 8, 8]);
        assert_eq!([tx(100), tx(999), tx(1000)], [12, 12, 16]);
        assert_eq!(tx(usize::MAX), 4 * 20, "no overflow");
        let t = SwimTimings::default();
        assert_eq!(foca_config(&t, 100).max_transmissions.get(), 12);
        // foca takes the refit config at run time (only its probe timings may not change).
        use rand::SeedableRng;
        let mut foca = Foca::new(id("a", 1), foca_config(&t, 1), rand::rngs::SmallRng::seed_from_u64(1), PostcardCodec);
        foca.set_config(foca_config(&t, 100)).expect("refit accepted");
        // A new configuration only when the size crosses a decade.
        let mut current = retransmissions(1);
        assert!(refit(&t, 9, &mut current).is_none());
        let c = refit(&t, 10, &mut current).expect("10 members: 8");
        assert_eq!((c.max_transmissions.get(), current.get()), (8, 8));
        assert!(refit(&t, 99, &mut current).is_none());
    }

    #[test]
    fn what_an_endpoint_cannot_dial() {
        let v4: SocketAddr = "0.0.0.0:7420".parse().unwrap();
        let v6: SocketAddr = "[::]:7420".parse().unwrap();
        let link = |scope| SocketAddr::V6(std::net::SocketAddrV6::new("fe80::2".parse().unwrap(), 7420, 0, scope));
        assert!(undialable(v4, "10.0.0.7:7420".parse().unwrap()).is_none());
        assert!(undialable(v4, "[2001:db8::7]:7420".parse().unwrap()).is_some());
        assert!(undialable(v4, link(3)).is_some());
        assert!(undialable(v6, "10.0.0.7:7420".parse().unwrap()).is_none());
        assert!(undialable(v6, "[2001:db8::7]:7420".parse().unwrap()).is_none());
        assert!(undialable(v6, link(3)).is_none());
        assert!(undialable(v6, link(0)).is_some());
    }

    #[test]
    fn a_renewed_identity_is_no_restart() {
        let before = id("h1", 7);
        // What foca does to a member that comes back after being declared down (a healed
        // partition): the same run, a new bump.
        let healed = before.renew().unwrap();
        assert_eq!(rename_kind(&before, &healed), Rename::Renewed);
        assert_eq!(rename_kind(&before, &id("h1", 8)), Rename::Restarted);
        assert_eq!(rename_kind(&healed, &MemberId { generation: 9, ..healed.clone() }), Rename::Restarted);
    }

    #[test]
    fn a_claim_holds_only_for_the_host_and_tenant_of_the_certificate() {
        let b = id("b", 1);
        assert!(claim_holds("t", "b", &b));
        assert!(claim_holds("t", "B", &b), "host names compare without case");
        assert!(!claim_holds("t", "evil", &b), "a certificate of another host");
        assert!(!claim_holds("u", "b", &b), "a certificate of another tenant");
        assert!(!claim_holds("t", "b", &MemberId { tenant: "u".into(), ..b.clone() }));
        assert!(!claim_holds("t", "seed:1", &b));
        assert!(is_placeholder(&placeholder(&b, b.quic)) && !is_placeholder(&b));
    }

    #[test]
    fn an_identity_is_believed_only_as_far_as_its_address_allows() {
        let b = id("b", 5);
        // No connection at its address: nothing contradicts it (but the tenant).
        assert!(believable("t", None, &b));
        assert!(!believable("u", None, &b), "another tenant");
        // The certificate there must name its host.
        assert!(believable("t", Some(("b", None)), &b));
        assert!(!believable("t", Some(("evil", None)), &b));
        // The node there announced b(5): b(5) itself and older identities are
        // believed (foca drops stale ones), a newer one from anyone else is not.
        assert!(believable("t", Some(("b", Some(&b))), &b));
        assert!(believable("t", Some(("b", Some(&b))), &id("b", 4)));
        assert!(!believable("t", Some(("b", Some(&b))), &id("b", 6)), "a forged next generation");
        let bumped = MemberId { bump: 1, ..b.clone() };
        assert!(!believable("t", Some(("b", Some(&b))), &bumped), "a forged renewal");
        assert!(believable("t", Some(("b", Some(&bumped))), &bumped));
        // The same identity with other addresses is another identity: not believed if it would win.
        let moved = MemberId { grpc: "127.0.0.1:9".parse().unwrap(), generation: 6, ..b.clone() };
        assert!(!believable("t", Some(("b", Some(&b))), &moved));
    }

    #[test]
    fn a_join_burst_lasts_while_the_view_grows() {
        let mut b = JoinBurst::default();
        assert_eq!(b.tick(0), 0, "nobody to announce to yet");
        assert_eq!(b.tick(25), 3, "a Feed taught 25 members: ask three more");
        assert_eq!(b.tick(60), 3);
        assert_eq!(b.tick(61), 3, "one quiet tick is not enough to stop");
        assert_eq!(b.tick(61), 0, "two quiet ticks: the view is whole");
        assert_eq!(b.tick(62), 0, "a single join elsewhere starts no burst");
        assert_eq!(b.tick(62), 0);
        assert_eq!(b.tick(90), 3, "many new members at once (a healed partition, a mass start): again");
        assert_eq!(b.tick(90), 3);
        assert_eq!(b.tick(90), 0);
        let mut small = JoinBurst::default();
        assert_eq!(small.tick(1), 1, "a fresh node with one member asks that one");
        assert_eq!(small.tick(1), 0, "and stops when nothing more comes");
        let mut two = JoinBurst::default();
        assert_eq!(two.tick(2), 2, "never more than there are members");
    }

    #[test]
    fn join_burst_targets_go_round_the_members() {
        let mut b = JoinBurst::default();
        let m = [1, 2, 3, 4, 5];
        assert_eq!(b.targets(3, &m), vec![1, 2, 3]);
        assert_eq!(b.targets(3, &m), vec![4, 5, 1]);
        assert_eq!(b.targets(9, &m), vec![2, 3, 4, 5, 1], "each member once at most");
        assert!(b.targets(3, &[] as &[i32]).is_empty());
    }

    #[test]
    fn a_restart_wins_over_its_old_self() {
        let (old, new) = (id("h", 1), id("h", 2));
        assert_eq!(old.addr(), new.addr(), "one live identity per address");
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
    }
}
