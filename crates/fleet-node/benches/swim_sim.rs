//! Membership of 100 to 1,000 nodes in one process (issue 17): the node's own
//! foca configuration ([`fleet_node::membership::foca_config`]) and join
//! policy ([`fleet_node::membership::JoinBurst`]) over a simulated lossy
//! datagram network with simulated time (foca is sans-I/O), as chitchat's
//! tests simulate a cluster.
//!
//! The network: each datagram is lost with probability `loss` and otherwise
//! arrives after 0.2-1.0 ms. The QUIC connection under the datagrams is
//! modelled per pair of nodes: a datagram to a node with no open connection
//! starts a handshake (4 datagrams each way, ~1 RTT; the datagram goes after
//! it); a connection that carries nothing for `idle` closes. `old` is the
//! transport before issue 17 (connections kept by a 5 s keep-alive, so never
//! closed; datagrams sent while a dial is in progress are dropped), `new` the
//! one after (no keep-alive, idle close; datagrams queued behind a dial).
//!
//! Reported per size and variant: mass start (node 0 first, the others within
//! the next second, each announcing to node 0) until every node lists every
//! other as active; then, once the connections the mass start opened and nothing
//! uses have closed (`idle` + 5 s), a 10 s idle window: SWIM payload bytes and all
//! datagrams (handshakes and keep-alives counted) per node per second, open
//! connections per node; then one node stops answering and the time until
//! every other lists it down.
//!
//! `sync` adds the full membership sync ([`fleet_node::membership::SyncPolicy`]: on
//! join with the seed, again while the view grows, then every
//! [`fleet_node::membership::sync_period`]): the initiator's snapshot, encoded as the
//! node encodes it ([`fleet_node::membership::encode_sync`]), travels over the pair's
//! connection (a handshake first if none is open) in one latency plus its bytes at
//! [`SYNC_BANDWIDTH`] through the sender's uplink (one queue per node, so a seed that
//! answers hundreds of joiners at once is modelled as saturated); the responder applies it
//! and answers with its own, which the initiator applies (`apply_many`, no broadcast, as
//! the node does). A responder answering [`SYNC_SERVE`] syncs refuses more. Sync bytes
//! are reported apart (`sync B/s`) and counted as QUIC packets of 1200 bytes (plus one
//! ack per two) in `dg/s`; for the sync rows the idle window is twice the periodic sync's
//! period, so its steady cost shows.
//!
//! Run: `cargo bench -p fleet-node --bench swim_sim` (`FLEET_SIM_SIZES=100,1000`,
//! `FLEET_SIM_LOSS=0.01`).

use bytes::Bytes;
use fleet_node::membership::{
    IDLE_CLOSE, JoinBurst, MemberId, SYNC_SERVE, SYNC_TIMEOUT, SwimTimings, SyncPolicy, encode_sync, foca_config,
    refit, retransmissions, sync_period, sync_target,
};
use foca::{Foca, Member, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

type Node = Foca<MemberId, PostcardCodec, rand::rngs::SmallRng, NoCustomBroadcast>;

/// Simulated time in microseconds.
type Us = u64;

fn us(d: Duration) -> Us {
    d.as_micros() as Us
}

enum Ev {
    Start(usize),
    Deliver {
        to: usize,
        data: Bytes,
    },
    Timer(usize, Timer<MemberId>),
    Burst(usize),
    Reseed(usize),
    SyncCheck(usize),
    /// A sync frame from `from` reaches `to`, which answers.
    SyncAsk {
        from: usize,
        to: usize,
        members: Vec<Member<MemberId>>,
    },
    /// The answer (or the failure) reaches the initiator `to`.
    SyncReply {
        to: usize,
        members: Option<Vec<Member<MemberId>>>,
    },
    /// `at` has sent its answer: one sync fewer in progress there.
    SyncServed(usize),
}

/// Bytes per microsecond of a node's uplink for sync streams (100 Mbit/s).
const SYNC_BANDWIDTH: f64 = 12.5;

struct At(Us, u64, Ev);
impl PartialEq for At {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for At {}
impl PartialOrd for At {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for At {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.0, o.1).cmp(&(self.0, self.1))
    }
}

/// xorshift64*: the network's dice (foca has its own rng per node).
struct Dice(u64);
impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: Us, hi: Us) -> Us {
        lo + self.next() % (hi - lo).max(1)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Old,
    New,
}

#[derive(Default)]
struct Conn {
    /// Open until this time (idle close), or dialing until `ready`.
    last_used: Us,
    ready: Us,
    open: bool,
}

struct Sim {
    now: Us,
    seq: u64,
    queue: BinaryHeap<At>,
    nodes: Vec<Node>,
    ids: Vec<MemberId>,
    by_addr: HashMap<SocketAddr, usize>,
    active: Vec<usize>,
    started: Vec<bool>,
    dead: Vec<bool>,
    burst: Vec<JoinBurst>,
    conns: HashMap<(usize, usize), Conn>,
    dice: Dice,
    loss: f64,
    transport: Transport,
    use_burst: bool,
    idle: Us,
    swim_bytes: Vec<u64>,
    datagrams: Vec<u64>,
    handshakes: u64,
    use_sync: bool,
    sync: Vec<SyncPolicy>,
    /// Syncs being answered per node, and when each node's uplink is free again.
    serving: Vec<usize>,
    uplink: Vec<Us>,
    /// Each node's gossip retransmissions (refit as its view grows).
    retransmit: Vec<std::num::NonZeroU8>,
    sync_bytes: Vec<u64>,
    syncs: u64,
}

const HANDSHAKE_DATAGRAMS: u64 = 4;
const KEEPALIVE: Us = 5_000_000;

impl Sim {
    fn new(n: usize, loss: f64, transport: Transport, use_burst: bool, use_sync: bool) -> Sim {
        let timings = SwimTimings::default();
        let mut ids = vec![];
        let mut nodes = vec![];
        let mut by_addr = HashMap::new();
        for i in 0..n {
            let a: SocketAddr = format!("10.{}.{}.{}:7420", i >> 16, (i >> 8) & 255, i & 255).parse().unwrap();
            let id = MemberId {
                tenant: "acme".into(),
                host: format!("host-{i:04}"),
                grpc: a,
                quic: a,
                generation: 1_700_000_000_000 + i as u64,
                bump: 0,
            };
            use rand::SeedableRng;
            let rng = rand::rngs::SmallRng::seed_from_u64(i as u64 * 7919 + 1);
            nodes.push(Foca::new(id.clone(), foca_config(&timings, 1), rng, PostcardCodec));
            by_addr.insert(a, i);
            ids.push(id);
        }
        Sim {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            ids,
            by_addr,
            active: vec![0; n],
            started: vec![false; n],
            dead: vec![false; n],
            burst: vec![JoinBurst::default(); n],
            retransmit: vec![retransmissions(1); n],
            conns: HashMap::new(),
            dice: Dice(0x9E37_79B9_7F4A_7C15 ^ n as u64),
            loss,
            transport,
            use_burst,
            idle: std::env::var("FLEET_SIM_IDLE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(us(IDLE_CLOSE), |ms: u64| ms * 1000),
            swim_bytes: vec![0; n],
            datagrams: vec![0; n],
            handshakes: 0,
            use_sync,
            sync: vec![SyncPolicy::default(); n],
            serving: vec![0; n],
            uplink: vec![0; n],
            sync_bytes: vec![0; n],
            syncs: 0,
        }
    }

    fn at(&mut self, t: Us, ev: Ev) {
        self.seq += 1;
        self.queue.push(At(t, self.seq, ev));
    }

    fn placeholder(&self, to: usize) -> MemberId {
        let a = self.ids[to].quic;
        MemberId { tenant: "acme".into(), host: format!("seed:{a}"), grpc: a, quic: a, generation: 0, bump: 0 }
    }

    /// The datagram `data` from `from` to the node at `to_addr`, through the modelled connection.
    fn send(&mut self, from: usize, to_addr: SocketAddr, data: Bytes) {
        let Some(&to) = self.by_addr.get(&to_addr) else { return };
        self.swim_bytes[from] += data.len() as u64;
        let key = (from.min(to), from.max(to));
        let now = self.now;
        let lat = self.dice.range(200, 1000);
        let c = self.conns.entry(key).or_default();
        let idle_closed = self.transport == Transport::New && c.open && now > c.last_used + self.idle;
        let mut when = now + lat;
        if !c.open || idle_closed {
            // A handshake: the datagram leaves once it completes (about one round trip).
            c.open = true;
            c.ready = now + 2 * lat + 500;
            when = c.ready + lat;
            self.handshakes += 1;
            self.datagrams[from] += HANDSHAKE_DATAGRAMS;
            self.datagrams[to] += HANDSHAKE_DATAGRAMS;
        } else if now < c.ready {
            match self.transport {
                Transport::Old => return, // dropped while dialing
                Transport::New => when = c.ready + lat,
            }
        }
        c.last_used = now;
        self.datagrams[from] += 1;
        if self.dice.unit() < self.loss || self.dead[to] || self.dead[from] {
            return;
        }
        self.at(when, Ev::Deliver { to, data });
    }

    /// The pair's connection ready for a stream from `from` to `to`: when it can carry
    /// data (after a handshake if none is open), as [`Sim::send`] models it.
    fn stream_ready(&mut self, from: usize, to: usize) -> Us {
        let key = (from.min(to), from.max(to));
        let now = self.now;
        let lat = self.dice.range(200, 1000);
        let c = self.conns.entry(key).or_default();
        let idle_closed = self.transport == Transport::New && c.open && now > c.last_used + self.idle;
        if !c.open || idle_closed {
            c.open = true;
            c.ready = now + 2 * lat + 500;
            self.handshakes += 1;
            self.datagrams[from] += HANDSHAKE_DATAGRAMS;
            self.datagrams[to] += HANDSHAKE_DATAGRAMS;
        }
        c.last_used = now;
        c.ready.max(now)
    }

    /// `bytes` of a sync stream from `from`, leaving once `ready`: when they have all
    /// arrived (its uplink's queue, the bytes at [`SYNC_BANDWIDTH`], one latency).
    fn stream(&mut self, from: usize, to: usize, bytes: usize, ready: Us) -> Us {
        let start = ready.max(self.uplink[from]);
        let done = start + (bytes as f64 / SYNC_BANDWIDTH) as Us;
        self.uplink[from] = done;
        self.sync_bytes[from] += bytes as u64;
        let packets = bytes.div_ceil(1200) as u64;
        self.datagrams[from] += packets;
        self.datagrams[to] += packets.div_ceil(2);
        done + self.dice.range(200, 1000)
    }

    /// Node `i`'s sync frame: itself and its whole membership state.
    fn snapshot(&self, i: usize) -> (Vec<Member<MemberId>>, usize) {
        let mut members = vec![Member::alive(self.ids[i].clone())];
        members.extend(self.nodes[i].iter_membership_state().cloned());
        let bytes = encode_sync(members.iter()).len();
        (members, bytes)
    }

    fn drain(&mut self, i: usize, rt: &mut foca::AccumulatingRuntime<MemberId>) {
        while let Some((to, data)) = rt.to_send() {
            self.send(i, to.quic, data);
        }
        while let Some((after, timer)) = rt.to_schedule() {
            let t = self.now + us(after);
            self.at(t, Ev::Timer(i, timer));
        }
        while let Some(n) = rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(_) => self.active[i] += 1,
                OwnedNotification::MemberDown(_) => self.active[i] = self.active[i].saturating_sub(1),
                _ => {}
            }
        }
        // As the node does: gossip retransmissions fit to the members known
        // (`FLEET_SIM_RETRANSMIT=fixed`: 6, the configuration before, for comparison).
        let members = if fixed_retransmissions() { 31 } else { self.nodes[i].iter_members().count() + 1 };
        if let Some(mut c) = refit(&SwimTimings::default(), members, &mut self.retransmit[i]) {
            if fixed_retransmissions() {
                c.max_transmissions = std::num::NonZeroU8::new(6).expect("nonzero");
            }
            self.nodes[i].set_config(c).expect("refit");
        }
    }

    fn step(&mut self, ev: Ev) {
        let mut rt = foca::AccumulatingRuntime::new();
        let i = match ev {
            Ev::Start(i) => {
                self.started[i] = true;
                if i != 0 {
                    let seed = self.placeholder(0);
                    let _ = self.nodes[i].announce(seed, &mut rt);
                    let t = self.now + 3_000_000;
                    self.at(t, Ev::Reseed(i));
                }
                if self.use_burst {
                    let t = self.now + us(JoinBurst::PERIOD);
                    self.at(t, Ev::Burst(i));
                }
                if self.use_sync {
                    let t = self.now + us(SyncPolicy::CHECK);
                    self.at(t, Ev::SyncCheck(i));
                }
                i
            }
            Ev::SyncCheck(i) => {
                if self.dead[i] {
                    return;
                }
                let t = self.now + us(SyncPolicy::CHECK);
                self.at(t, Ev::SyncCheck(i));
                let active: Vec<SocketAddr> = self.nodes[i].iter_members().map(|m| m.id().quic).collect();
                let jitter = self.dice.unit();
                if !self.sync[i].due(Duration::from_micros(self.now), active.len(), jitter) {
                    return;
                }
                let seed = self.ids[0].quic;
                let dice = self.dice.next();
                let Some(to) = sync_target(self.sync[i].first(), &active, |a| *a == seed, dice) else {
                    self.sync[i].finished(false);
                    return;
                };
                let to = self.by_addr[&to];
                self.syncs += 1;
                let (members, bytes) = self.snapshot(i);
                let ready = self.stream_ready(i, to);
                let when = self.stream(i, to, bytes, ready);
                if self.dead[to] {
                    // No answer: the initiator gives up at the timeout. (A stream is
                    // reliable: QUIC resends its lost packets; that delay is not modelled.)
                    let t = self.now + us(SYNC_TIMEOUT);
                    self.at(t, Ev::SyncReply { to: i, members: None });
                } else {
                    self.at(when, Ev::SyncAsk { from: i, to, members });
                }
                return;
            }
            Ev::SyncAsk { from, to, members } => {
                if self.dead[to] || !self.started[to] || self.serving[to] >= SYNC_SERVE {
                    // Refused (stream reset) or nobody there: the initiator hears of it.
                    let t = self.now + self.dice.range(200, 1000);
                    self.at(t, Ev::SyncReply { to: from, members: None });
                    return;
                }
                self.serving[to] += 1;
                let (ours, bytes) = self.snapshot(to);
                let _ = self.nodes[to].apply_many(members.into_iter(), false, &mut rt);
                let now = self.now;
                let when = self.stream(to, from, bytes, now);
                let served = self.uplink[to];
                self.at(served, Ev::SyncServed(to));
                self.at(when, Ev::SyncReply { to: from, members: Some(ours) });
                to
            }
            Ev::SyncServed(i) => {
                self.serving[i] = self.serving[i].saturating_sub(1);
                return;
            }
            Ev::SyncReply { to, members } => {
                if self.dead[to] {
                    return;
                }
                self.sync[to].finished(members.is_some());
                if let Some(m) = members {
                    let _ = self.nodes[to].apply_many(m.into_iter(), false, &mut rt);
                }
                to
            }
            Ev::Deliver { to, data } => {
                if !self.started[to] || self.dead[to] {
                    return;
                }
                let _ = self.nodes[to].handle_data(&data, &mut rt);
                to
            }
            Ev::Timer(i, timer) => {
                if self.dead[i] {
                    return;
                }
                let _ = self.nodes[i].handle_timer(timer, &mut rt);
                i
            }
            Ev::Reseed(i) => {
                if self.dead[i] {
                    return;
                }
                if self.active[i] == 0 {
                    let seed = self.placeholder(0);
                    let _ = self.nodes[i].announce(seed, &mut rt);
                }
                let t = self.now + 3_000_000;
                self.at(t, Ev::Reseed(i));
                i
            }
            Ev::Burst(i) => {
                if self.dead[i] {
                    return;
                }
                let k = self.burst[i].tick(self.nodes[i].iter_members().count());
                let members: Vec<MemberId> =
                    if k > 0 { self.nodes[i].iter_members().map(|m| m.id().clone()).collect() } else { vec![] };
                for id in self.burst[i].targets(k, &members) {
                    let _ = self.nodes[i].announce(id, &mut rt);
                }
                let t = self.now + us(JoinBurst::PERIOD);
                self.at(t, Ev::Burst(i));
                i
            }
        };
        self.drain(i, &mut rt);
    }

    /// Run until `until` (simulated) or `done` holds (checked every 50 ms); the time it held.
    fn run(&mut self, until: Us, mut done: impl FnMut(&Sim) -> bool) -> Option<Us> {
        let mut next_check = self.now;
        while let Some(At(t, _, _)) = self.queue.peek() {
            let t = *t;
            if t > until {
                break;
            }
            if t >= next_check {
                self.now = next_check;
                if done(self) {
                    return Some(self.now);
                }
                next_check += 50_000;
                continue;
            }
            let At(t, _, ev) = self.queue.pop().expect("peeked");
            self.now = t;
            self.step(ev);
        }
        self.now = until;
        None
    }

    fn open_conns(&self, i: usize) -> usize {
        self.conns
            .iter()
            .filter(|((a, b), c)| {
                (*a == i || *b == i)
                    && c.open
                    && !self.dead[*a]
                    && !self.dead[*b]
                    && (self.transport == Transport::Old || self.now <= c.last_used + self.idle)
            })
            .count()
    }
}

fn fixed_retransmissions() -> bool {
    std::env::var("FLEET_SIM_RETRANSMIT").is_ok_and(|v| v == "fixed")
}

fn secs(t: Us) -> f64 {
    t as f64 / 1e6
}

fn one(n: usize, loss: f64, transport: Transport, use_burst: bool, use_sync: bool) {
    let mut sim = Sim::new(n, loss, transport, use_burst, use_sync);
    sim.at(0, Ev::Start(0));
    for i in 1..n {
        let t = sim.dice.range(100_000, 1_100_000);
        sim.at(t, Ev::Start(i));
    }
    let limit = 120_000_000;
    let conv = sim.run(limit, |s| s.started.iter().all(|x| *x) && s.active.iter().all(|a| *a == n - 1));
    let conv_s = conv.map_or(format!(">{:.0} s", secs(limit)), |t| format!("{:.2} s", secs(t) - 1.1));
    // Idle window, once the connections of the mass start that nothing uses closed.
    let settle = sim.now + 5_000_000 + if transport == Transport::New { sim.idle } else { 0 };
    sim.run(settle, |_| false);
    let (b0, d0, h0, t0) = (sim.swim_bytes.clone(), sim.datagrams.clone(), sim.handshakes, sim.now);
    let (s0, syncs0) = (sim.sync_bytes.clone(), sim.syncs);
    let window = std::env::var("FLEET_SIM_WINDOW_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| s * 1_000_000)
        .unwrap_or(if use_sync { 2 * us(sync_period(n)) } else { 10_000_000 });
    sim.run(t0 + window, |_| false);
    let w = secs(sim.now - t0);
    let bytes: f64 = sim.swim_bytes.iter().zip(&b0).map(|(a, b)| (a - b) as f64).sum::<f64>() / n as f64 / w;
    let conns: Vec<usize> = (0..n).map(|i| sim.open_conns(i)).collect();
    let mean_conns = conns.iter().sum::<usize>() as f64 / n as f64;
    let mut dg: f64 = sim.datagrams.iter().zip(&d0).map(|(a, b)| (a - b) as f64).sum::<f64>() / n as f64 / w;
    if transport == Transport::Old {
        // Keep-alive: one ping and its ack per connection every 5 s.
        dg += mean_conns * 2.0 / secs(KEEPALIVE);
    }
    let hs = (sim.handshakes - h0) as f64 / n as f64 / w;
    let sync_bps: f64 = sim.sync_bytes.iter().zip(&s0).map(|(a, b)| (a - b) as f64).sum::<f64>() / n as f64 / w;
    let syncs_idle = sim.syncs - syncs0;
    let syncs_start = syncs0;
    // Detection: node n-1 stops answering.
    let victim = n - 1;
    sim.dead[victim] = true;
    let t_kill = sim.now;
    let listed_down = |s: &Sim| (0..n - 1).filter(|&i| s.active[i] == n - 2).count();
    let det99 = sim.run(t_kill + 60_000_000, |s| listed_down(s) * 100 >= (n - 1) * 99);
    let det = sim.run(t_kill + 60_000_000, |s| listed_down(s) == n - 1);
    if det.is_none() {
        let mut views: HashMap<usize, usize> = HashMap::new();
        for i in 0..n - 1 {
            *views.entry(sim.active[i]).or_default() += 1;
        }
        eprintln!("  detection: active members per node (count of nodes): {views:?}");
    }
    let sync_col = if use_sync { format!("{sync_bps:>8.0}") } else { format!("{:>8}", "-") };
    println!(
        "{n:>5}  {:>4}  {:>5}  {:>4}  {:>5.1}%  {conv_s:>9}  {bytes:>8.0}  {sync_col}  {dg:>7.1}  {hs:>6.2}  {mean_conns:>6.1} ({:>4})  {:>8}",
        if transport == Transport::Old { "old" } else { "new" },
        if use_burst { "yes" } else { "no" },
        if use_sync { "yes" } else { "no" },
        loss * 100.0,
        conns.iter().max().copied().unwrap_or(0),
        det.map_or("never".to_string(), |t| format!("{:.2} s", secs(t - t_kill))),
    );
    eprintln!(
        "  detect: 99 % of the others list it down after {}",
        det99.map_or("never".to_string(), |t| format!("{:.2} s", secs(t - t_kill)))
    );
    if use_sync {
        eprintln!(
            "  syncs: {syncs_start} from the start to the idle window ({:.1} per node), {syncs_idle} in the {:.0} s idle window",
            syncs_start as f64 / n as f64,
            w
        );
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("FLEET_SIM_SIZES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let loss: f64 = std::env::var("FLEET_SIM_LOSS").ok().and_then(|l| l.parse().ok()).unwrap_or(0.01);
    println!("SWIM simulation: foca with the node's config, simulated lossy network; mass start within 1 s");
    println!(
        "{:>5}  {:>4}  {:>5}  {:>4}  {:>6}  {:>9}  {:>8}  {:>8}  {:>7}  {:>6}  {:>13}  {:>8}",
        "nodes",
        "QUIC",
        "burst",
        "sync",
        "loss",
        "converge",
        "SWIM B/s",
        "sync B/s",
        "dg/s",
        "hs/s",
        "conns (max)",
        "detect"
    );
    for n in sizes {
        let only_sync = std::env::var("FLEET_SIM_ONLY_SYNC").is_ok();
        let variants: &[(Transport, bool, bool)] = if only_sync {
            &[(Transport::New, true, true)]
        } else if n <= 200 {
            &[
                (Transport::Old, false, false),
                (Transport::Old, true, false),
                (Transport::New, false, false),
                (Transport::New, true, false),
                (Transport::New, true, true),
            ]
        } else {
            &[(Transport::Old, false, false), (Transport::New, true, false), (Transport::New, true, true)]
        };
        for &(transport, burst, sync) in variants {
            let t = std::time::Instant::now();
            one(n, loss, transport, burst, sync);
            eprintln!("  ({:.1} s of real time)", t.elapsed().as_secs_f64());
        }
    }
    println!("(converge: from the last start until every node lists all others active; SWIM B/s: SWIM payload");
    println!(
        " sent per node per second in a 10 s idle window (new: from idle + 5 s after converging); dg/s: datagrams"
    );
    println!(" sent per node per second, QUIC handshakes (4 each way) and keep-alives (old: every 5 s per connection)");
    println!(" included; hs/s: handshakes per node per second; conns: open QUIC connections per node, mean (max);");
    println!(
        " sync B/s: full-sync stream bytes sent per node per second over an idle window of twice the periodic sync's"
    );
    println!(" period; detect: one node stops answering until every other lists it down, within 60 s; on stderr:");
    println!(" until 99 % do)");
}
