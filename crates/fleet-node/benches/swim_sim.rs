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
//! other as active; then a 10 s idle window: SWIM payload bytes and all
//! datagrams (handshakes and keep-alives counted) per node per second, open
//! connections per node; then one node stops answering and the time until
//! every other lists it down.
//!
//! Run: `cargo bench -p fleet-node --bench swim_sim` (`FLEET_SIM_SIZES=100,1000`,
//! `FLEET_SIM_LOSS=0.01`).

use bytes::Bytes;
use fleet_node::membership::{IDLE_CLOSE, JoinBurst, MemberId, SwimTimings, foca_config};
use foca::{Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
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
    Deliver { to: usize, data: Bytes },
    Timer(usize, Timer<MemberId>),
    Burst(usize),
    Reseed(usize),
}

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
}

const HANDSHAKE_DATAGRAMS: u64 = 4;
const KEEPALIVE: Us = 5_000_000;

impl Sim {
    fn new(n: usize, loss: f64, transport: Transport, use_burst: bool) -> Sim {
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
            nodes.push(Foca::new(id.clone(), foca_config(&timings), rng, PostcardCodec));
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
                i
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

fn secs(t: Us) -> f64 {
    t as f64 / 1e6
}

fn one(n: usize, loss: f64, transport: Transport, use_burst: bool) {
    let mut sim = Sim::new(n, loss, transport, use_burst);
    sim.at(0, Ev::Start(0));
    for i in 1..n {
        let t = sim.dice.range(100_000, 1_100_000);
        sim.at(t, Ev::Start(i));
    }
    let limit = 120_000_000;
    let conv = sim.run(limit, |s| s.started.iter().all(|x| *x) && s.active.iter().all(|a| *a == n - 1));
    let conv_s = conv.map_or(format!(">{:.0} s", secs(limit)), |t| format!("{:.2} s", secs(t) - 1.1));
    // Idle window.
    let settle = sim.now + 5_000_000;
    sim.run(settle, |_| false);
    let (b0, d0, h0, t0) = (sim.swim_bytes.clone(), sim.datagrams.clone(), sim.handshakes, sim.now);
    sim.run(t0 + 10_000_000, |_| false);
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
    // Detection: node n-1 stops answering.
    let victim = n - 1;
    sim.dead[victim] = true;
    let t_kill = sim.now;
    let det = sim.run(t_kill + 60_000_000, |s| (0..n - 1).all(|i| s.active[i] == n - 2));
    println!(
        "{n:>5}  {:>4}  {:>5}  {:>5.1}%  {conv_s:>9}  {bytes:>8.0}  {dg:>7.1}  {hs:>6.2}  {mean_conns:>6.1} ({:>4})  {:>8}",
        if transport == Transport::Old { "old" } else { "new" },
        if use_burst { "yes" } else { "no" },
        loss * 100.0,
        conns.iter().max().copied().unwrap_or(0),
        det.map_or("never".to_string(), |t| format!("{:.2} s", secs(t - t_kill))),
    );
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
        "{:>5}  {:>4}  {:>5}  {:>6}  {:>9}  {:>8}  {:>7}  {:>6}  {:>13}  {:>8}",
        "nodes", "QUIC", "burst", "loss", "converge", "SWIM B/s", "dg/s", "hs/s", "conns (max)", "detect"
    );
    for n in sizes {
        let variants: &[(Transport, bool)] = if n <= 200 {
            &[(Transport::Old, false), (Transport::Old, true), (Transport::New, false), (Transport::New, true)]
        } else {
            &[(Transport::Old, false), (Transport::New, true)]
        };
        for &(transport, burst) in variants {
            let t = std::time::Instant::now();
            one(n, loss, transport, burst);
            eprintln!("  ({:.1} s of real time)", t.elapsed().as_secs_f64());
        }
    }
    println!("(converge: from the last start until every node lists all others active; SWIM B/s: SWIM payload");
    println!(" sent per node per second in a 10 s idle window; dg/s: datagrams sent per node per second, QUIC");
    println!(" handshakes (4 each way) and keep-alives (old: every 5 s per connection) included; hs/s: handshakes");
    println!(" per node per second; conns: open QUIC connections per node, mean (max); detect: one node stops");
    println!(" answering until every other lists it down)");
}
