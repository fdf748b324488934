//! The web door: dashboard load, SSE event latency, and 100 SSE clients on one node.
//!
//! Two loopback nodes (a with 20 stub agents and the door; c with 20 stub agents and `quiet`,
//! whose heartbeat file the bench writes). Measured:
//! - page load to first rows: in headless Chromium (WebDriver) when it is installed, from the
//!   navigation to the first agent row in the DOM (polled every 2 ms); and always, over plain
//!   HTTP/1.1 from this process: `GET /`, `GET /api/v1/agents`, and the first SSE event
//!   (`snapshot_end`) of `/api/v1/events`;
//! - SSE event latency: a heartbeat file on c rewritten (tmp + rename) until its `beat` event
//!   arrives on an SSE stream of a's door (and the same for a heartbeat on a itself);
//! - 100 SSE clients on a's door at once while c's heartbeat is rewritten 10 times a second:
//!   a's RSS and CPU before and with them, and that every client got every event.
//!
//! Run: `cargo bench -p fleet-cli --bench web` (docs/benchmarks.md).

#[path = "../../../tests/mesh_util.rs"]
mod mesh_util;
#[path = "../../../tests/util/webdriver.rs"]
mod webdriver;

use mesh_util::Mesh;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const AGENTS: usize = 20;
const CLIENTS: usize = 100;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

fn line(what: &str, v: &mut [Duration], target: &str) {
    let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
    println!("{what:<52} {:>5} {p50:>9.2} {p99:>9.2}   {target}", v.len());
}

/// (VmRSS kB, utime + stime ticks) of `pid`.
fn proc_stat(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..].split(' ').collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (rss, ticks)
}

fn hostport(base: &str) -> &str {
    base.strip_prefix("http://").unwrap()
}

/// One request, `Connection: close`: (status, body).
fn http(base: &str, path: &str, cookie: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(hostport(base)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n", hostport(base))
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let status = String::from_utf8_lossy(&raw[..12]).split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw)
}

/// An SSE stream of `/api/v1/events`, its head read.
fn sse(base: &str, cookie: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(hostport(base)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n", hostport(base)).unwrap();
    let mut r = BufReader::new(s);
    let mut l = String::new();
    loop {
        l.clear();
        r.read_line(&mut l).unwrap();
        if l == "\r\n" {
            return r;
        }
    }
}

/// The next SSE event: (name, data). Chunked transfer framing lines are skipped.
fn next_event(r: &mut BufReader<TcpStream>) -> (String, String) {
    try_event(r).expect("the event stream ended")
}

/// [`next_event`], or `None` when the stream ends.
fn try_event(r: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let (mut name, mut data) = (String::new(), String::new());
    let mut l = String::new();
    loop {
        l.clear();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return None;
        }
        let t = l.trim_end();
        if let Some(n) = t.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = t.strip_prefix("data: ") {
            data = d.to_string();
        } else if t.is_empty() && !name.is_empty() {
            return Some((name, data));
        }
    }
}

/// Rewrite `agent`'s heartbeat file (tmp + rename). A beat is a new `ts`: each write gets the
/// next second of a day ago (the agent is stale meanwhile; each write is still a `beat`).
fn beat(run_dir: &std::path::Path, agent: &str, pid: u64) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let day_ago = fleet_tmux::hbwriter::now_unix() - 86_400;
    let now = fleet_core::heartbeat::Timestamp::from_unix(day_ago + NEXT.fetch_add(1, Ordering::Relaxed) as i64);
    let tmp = run_dir.join(format!(".{agent}.tmp"));
    std::fs::write(&tmp, format!("ts={}\npid={pid}\nstatus=ok\n", now.to_iso_compact())).unwrap();
    std::fs::rename(&tmp, run_dir.join(format!("{agent}.hb"))).unwrap();
}

/// Wait on `r` for the beat of `agent` with `pid`.
fn wait_beat(r: &mut BufReader<TcpStream>, agent: &str, pid: u64) {
    let mut seen = Vec::new();
    loop {
        let Some((name, data)) = try_event(r) else {
            panic!(
                "no beat of {agent} with pid {pid} within 10 s; the last events: {:?}",
                &seen[seen.len().saturating_sub(4)..]
            )
        };
        seen.push(format!("{name} {data}"));
        if name == "beat" || name == "health_change" {
            let v: Value = serde_json::from_str(&data).unwrap();
            if v["agent"] == agent && v["heartbeat"]["pid"] == pid {
                return;
            }
        }
    }
}

fn main() {
    let mut m = Mesh::new("acme");
    m.interval = 15;
    let agents =
        |p: &str| (0..AGENTS).map(|i| format!("  - {{ name: {p}{i:02}, runtime: stub }}\n")).collect::<String>();
    m.add_host("a", &format!("{}  - {{ name: here, runtime: quiet }}\n", agents("a")));
    m.add_host("c", &format!("{}  - {{ name: quiet, runtime: quiet }}\n", agents("c")));
    eprintln!("starting {} stub agents on 2 hosts...", 2 * AGENTS + 2);
    m.start_agents(0);
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    mesh_util::wait_for("every agent listed on a", Duration::from_secs(30), || {
        let (_, out, _) = m.at(0, &["ps", "--json"]);
        serde_json::from_str::<Vec<Value>>(&out)
            .map(|v| v.iter().filter(|r| r["record"] == "agent").count() == 2 * AGENTS + 2)
            .unwrap_or(false)
    });
    let pair = |role: &str| {
        let (code, out, err) = m.at(0, &["web", "pair", "--role", role, "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["url"].as_str().unwrap().to_string()
    };
    let exchange = |link: &str| {
        let (base, code) = link.split_once("/pair?code=").unwrap();
        let mut s = TcpStream::connect(hostport(base)).unwrap();
        let body = format!("code={code}");
        write!(
            s,
            "POST /pair HTTP/1.1\r\nHost: {}\r\nOrigin: {base}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            hostport(base),
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let c = raw.lines().find_map(|l| l.strip_prefix("set-cookie: ")).expect("a cookie").split(';').next().unwrap();
        (base.to_string(), c.to_string())
    };
    let (base, cookie) = exchange(&pair("viewer"));
    let node_a = m.nodes[0].pid.unwrap();

    println!("web bench: 2 loopback nodes, {} agents, the door of a", 2 * AGENTS + 2);
    println!("{:<52} {:>5} {:>9} {:>9}   target", "measure", "runs", "p50 ms", "p99 ms");

    // Page load over plain HTTP: the page, the first list, the first SSE event.
    let (mut index, mut list, mut first_event) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..50 {
        let t = Instant::now();
        assert_eq!(http(&base, "/", "").0, 200);
        index.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(http(&base, "/api/v1/agents", &cookie).0, 200);
        list.push(t.elapsed());
        let t = Instant::now();
        let mut r = sse(&base, &cookie);
        while next_event(&mut r).0 != "snapshot_end" {}
        first_event.push(t.elapsed());
    }
    line("HTTP: GET / (the dashboard page)", &mut index, "");
    line("HTTP: GET /api/v1/agents (mesh, 42 agents)", &mut list, "");
    line("HTTP: /api/v1/events to snapshot_end", &mut first_event, "");

    // In Chromium, when it is there.
    match webdriver::missing() {
        Some(why) => println!("chromium: not measured ({why})"),
        None => {
            let b = webdriver::Browser::start(1200, 860);
            b.goto(&pair("viewer"));
            b.wait_js("rows", Duration::from_secs(10), "return document.querySelectorAll('tr.agent').length > 0");
            let mut loads = Vec::new();
            let mut dcl = Vec::new();
            for _ in 0..20 {
                b.goto("about:blank");
                let t = Instant::now();
                // Returns at the load event; the rows come after the page's own API calls.
                b.goto(&format!("{base}/"));
                loop {
                    let n = b.js("return document.querySelectorAll('tr.agent').length", json!([]));
                    if n.as_u64().unwrap_or(0) > 0 {
                        break;
                    }
                    assert!(t.elapsed() < Duration::from_secs(10), "no rows");
                    std::thread::sleep(Duration::from_millis(2));
                }
                loads.push(t.elapsed());
                let d = b.js(
                    "const n = performance.getEntriesByType('navigation')[0]; return n.domContentLoadedEventEnd",
                    json!([]),
                );
                dcl.push(Duration::from_secs_f64(d.as_f64().unwrap() / 1000.0));
            }
            line("chromium: navigation (WebDriver) to first agent rows", &mut loads, "");
            line("chromium: navigation to DOMContentLoaded", &mut dcl, "");
        }
    }

    // SSE latency: a heartbeat written on c (and on a), until its event on a's door.
    let mut r = sse(&base, &cookie);
    while next_event(&mut r).0 != "snapshot_end" {}
    for (run_dir, agent, what) in [
        (m.nodes[1].home.join("fleet/run"), "quiet", "SSE: heartbeat file on c -> event at a's door"),
        (m.nodes[0].home.join("fleet/run"), "here", "SSE: heartbeat file on a -> event at a's door"),
    ] {
        let mut lat = Vec::new();
        for n in 0..200u64 {
            let pid = 10_000 + n;
            let t = Instant::now();
            beat(&run_dir, agent, pid);
            wait_beat(&mut r, agent, pid);
            lat.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        line(what, &mut lat, "p99 <= 50 ms");
    }
    drop(r);

    // 100 SSE clients on a's door.
    std::thread::sleep(Duration::from_secs(2));
    let (rss0, t0) = proc_stat(node_a);
    std::thread::sleep(Duration::from_secs(10));
    let (_, t1) = proc_stat(node_a);
    let tick = 100.0; // USER_HZ
    let cpu_idle = (t1 - t0) as f64 / tick / 10.0 * 100.0;
    let got = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..CLIENTS {
        let mut r = sse(&base, &cookie);
        while next_event(&mut r).0 != "snapshot_end" {}
        let (got, stop) = (got.clone(), stop.clone());
        r.get_ref().set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        readers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some((name, data)) = try_event(&mut r) else { return };
                if name == "beat" && data.contains("\"agent\":\"quiet\"") {
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let (rss1, t2) = proc_stat(node_a);
    let run_dir = m.nodes[1].home.join("fleet/run");
    let beats = 100u64;
    let start = Instant::now();
    for n in 0..beats {
        beat(&run_dir, "quiet", 50_000 + n);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (rss2, t3) = proc_stat(node_a);
    let secs = start.elapsed().as_secs_f64();
    let cpu_busy = (t3 - t2) as f64 / tick / secs * 100.0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.load(Ordering::Relaxed) < beats * CLIENTS as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let received = got.load(Ordering::Relaxed);
    println!(
        "{CLIENTS} SSE clients on a: RSS {:.1} MB idle without them, {:.1} MB with them connected, {:.1} MB after {beats} \
         beats at 10/s; CPU {cpu_idle:.1} % idle without them, {cpu_busy:.1} % of one core while fanning out 10 \
         beats/s to them; events delivered {received} of {}",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0,
        beats * CLIENTS as u64
    );
    stop.store(true, Ordering::Relaxed);
    // The readers end when the node does (the harness drops it): do not wait for them.
    drop(m);
    for r in readers {
        let _ = r.join();
    }
}
