//! The web door end to end: real nodes on loopback (mutual TLS between them, certificates
//! made in the test), real tmux and stub agents, and a plain HTTP/1.1 client written on a
//! TcpStream (what a browser sends: cookies, Origin, Last-Event-ID).

#[path = "mesh_util.rs"]
mod mesh_util;

use mesh_util::{Mesh, wait_for};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// a (orch) and c (coder), a seeded with c.
fn two() -> Mesh {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("c", "  - { name: coder, runtime: stub }\n");
    m.start_agents(0);
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    m
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `http://127.0.0.1:PORT` -> `127.0.0.1:PORT`.
fn hostport(base: &str) -> &str {
    base.strip_prefix("http://").expect("an http:// base")
}

/// One HTTP/1.1 request, `Connection: close`, the whole answer read.
fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(hostport(base)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", hostport(base));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().into(), v.trim().into())).collect();
    Reply { status, headers, body: body.to_string() }
}

/// A pairing link from node `i`: (base URL, code).
fn pair(m: &Mesh, i: usize, role: &str, label: &str) -> (String, String) {
    let (code, out, err) = m.at(i, &["web", "pair", "--role", role, "--label", label, "--json"]);
    assert_eq!(code, 0, "fleet web pair: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["tenant_id"].as_str(), v["role"].as_str()), (Some("acme"), Some(role)), "{v}");
    let url = v["url"].as_str().unwrap();
    let (base, code) = url.split_once("/pair?code=").expect("a pairing link");
    (base.to_string(), code.to_string())
}

/// Open a pairing link as a browser does (POST /pair from its own page): the cookie header.
fn exchange(base: &str, code: &str) -> Reply {
    http(
        base,
        "POST",
        "/pair",
        &[("Origin", base), ("Content-Type", "application/x-www-form-urlencoded")],
        &format!("code={code}"),
    )
}

fn session(base: &str, code: &str) -> String {
    let r = exchange(base, code);
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "no Secure without TLS: {cookie}");
    cookie.split(';').next().unwrap().to_string()
}

fn audit(m: &Mesh, i: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(m.nodes[i].home.join("fleet/audit.log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// What `fleet send` at node `i` prints after `fleet: `.
fn cli_words(m: &Mesh, i: usize, args: &[&str]) -> String {
    let (code, _, err) = m.at(i, args);
    assert_ne!(code, 0, "{args:?} should fail");
    err.trim().strip_prefix("fleet: ").unwrap_or_else(|| panic!("{err}")).to_string()
}

#[test]
fn pairing_roles_origin_sends_and_the_clis_words() {
    let m = two();
    wait_for("a to see coder@c", Duration::from_secs(15), || {
        let (_, out, _) = m.at(0, &["ps", "--json", "--host", "c"]);
        out.contains("\"coder\"")
    });
    let (base, viewer_code) = pair(&m, 0, "viewer", "view");

    // Unpaired: 401, for reads and writes.
    let r = http(&base, "GET", "/api/v1/agents", &[], "");
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "unauthenticated");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("fleet web pair"), "{}", r.body);
    let send = json!({"target": "coder@c", "text": "from nobody"}).to_string();
    assert_eq!(http(&base, "POST", "/api/v1/send", &[("Origin", &base)], &send).status, 401);
    let r = http(&base, "GET", "/api/v1/agents", &[("Cookie", "fleet_session=00ff")], "");
    assert_eq!(r.status, 401, "a made-up cookie: {}", r.body);

    // A link works once.
    let viewer = session(&base, &viewer_code);
    let again = exchange(&base, &viewer_code);
    assert_eq!(again.status, 403, "{}", again.body);
    assert_eq!(again.json()["error"]["code"], "pairing_refused");
    assert!(again.json()["error"]["message"].as_str().unwrap().contains("already used"), "{}", again.body);

    // A viewer lists the mesh and tails a pane on another host...
    let r = http(&base, "GET", "/api/v1/agents?host=c", &[("Cookie", &viewer)], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.json();
    let coder = rows.as_array().unwrap().iter().find(|r| r["name"] == "coder").expect("coder@c listed");
    assert_eq!((coder["tenant_id"].as_str(), coder["host"].as_str()), (Some("acme"), Some("c")), "{coder}");
    assert!(rows.as_array().unwrap().iter().any(|r| r["record"] == "host" && r["host"] == "c"), "{rows}");
    let r = http(&base, "GET", "/api/v1/tail?target=coder%40c&lines=5", &[("Cookie", &viewer)], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["host"].as_str(), r.json()["agent"].as_str()), (Some("c"), Some("coder")));
    assert!(r.json()["lines"].is_array());
    let r = http(&base, "GET", "/api/v1/peers", &[("Cookie", &viewer)], "");
    assert!(r.json().as_array().unwrap().iter().any(|p| p["host"] == "c" && p["tenant_id"] == "acme"), "{}", r.body);

    // ...but its send is 403, in the CLI's words, and audited.
    let r = http(&base, "POST", "/api/v1/send", &[("Cookie", &viewer), ("Origin", &base)], &send);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "permission_denied");
    assert_eq!(
        r.json()["error"]["message"],
        "permission denied: web:view@acme may not send: a viewer may only list, watch, peers and info"
    );
    assert!(
        audit(&m, 0)
            .iter()
            .any(|l| l["principal"] == "web:view@acme" && l["verb"] == "send" && l["outcome"] == "denied"),
        "{:?}",
        audit(&m, 0)
    );

    // An operator: a cross-origin or Origin-less POST is refused, and nothing is typed.
    let (_, op_code) = pair(&m, 0, "operator", "ops");
    let ops = session(&base, &op_code);
    let sneaky = json!({"target": "coder@c", "text": "cross origin text"}).to_string();
    for origin in [Some("http://evil.example"), Some("http://localhost:1"), None] {
        let mut h = vec![("Cookie", ops.as_str())];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        let r = http(&base, "POST", "/api/v1/send", &h, &sneaky);
        assert_eq!(r.status, 403, "{origin:?}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_origin", "{}", r.body);
    }
    assert!(
        audit(&m, 0).iter().any(|l| l["principal"] == "web:ops@acme" && l["outcome"] == "denied"),
        "the refused origin is audited"
    );

    // The operator's send reaches the stub on c, verified, with the receipt JSON.
    let good = json!({"target": "coder@c", "text": "hello from the web door", "verify": true}).to_string();
    let r = http(&base, "POST", "/api/v1/send", &[("Cookie", &ops), ("Origin", &base)], &good);
    assert_eq!(r.status, 200, "{}", r.body);
    let receipt = r.json();
    assert_eq!(
        (receipt["outcome"].as_str(), receipt["host"].as_str(), receipt["tenant_id"].as_str()),
        (Some("accepted"), Some("c"), Some("acme")),
        "{receipt}"
    );
    assert!(m.capture(1, "coder").contains("hello from the web door"), "{}", m.capture(1, "coder"));
    assert!(!m.capture(1, "coder").contains("cross origin text"));
    // Audited here as the browser, and on c as the node acting for it.
    assert!(audit(&m, 0).iter().any(|l| l["principal"] == "web:ops@acme" && l["outcome"] == "accepted"));
    assert!(
        audit(&m, 1).iter().any(|l| l["principal"] == "node:a@acme for web:ops@acme" && l["verb"] == "send"),
        "{:?}",
        audit(&m, 1)
    );

    // Bad input: the CLI's refusal words, word for word.
    let post =
        |body: Value| http(&base, "POST", "/api/v1/send", &[("Cookie", &ops), ("Origin", &base)], &body.to_string());
    let r = post(json!({"target": "nobody@c", "text": "hi"}));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["message"], cli_words(&m, 0, &["send", "nobody@c", "-m", "hi"]));
    assert_eq!(r.json()["receipt"]["outcome"], "not_found");
    let r = post(json!({"target": "coder@c", "text": "a\u{1b}[2Jb"}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["message"], cli_words(&m, 0, &["send", "coder@c", "-m", "a\u{1b}[2Jb"]));
    let big = "x".repeat(fleet_core::message::MAX_MESSAGE_BYTES + 1);
    let file = m.root().join("big.txt");
    std::fs::write(&file, &big).unwrap();
    let r = post(json!({"target": "coder@c", "text": big}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["message"], cli_words(&m, 0, &["send", "coder@c", "-f", file.to_str().unwrap()]));
    let r = post(json!({"target": "a@b@c", "text": "hi"}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["message"], cli_words(&m, 0, &["send", "a@b@c", "-m", "hi"]));
    assert!(!m.capture(1, "coder").contains("[2J"));

    // Sessions are listed, and a revoked one is refused at once.
    let (code, out, err) = m.at(0, &["web", "sessions", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let labels: Vec<&str> = list.iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["view", "ops"], "{out}");
    assert!(list.iter().all(|s| s["tenant_id"] == "acme" && s["host"] == "a"));
    let (code, _, err) = m.at(0, &["web", "sessions", "--revoke", "view"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(http(&base, "GET", "/api/v1/agents", &[("Cookie", &viewer)], "").status, 401);
    assert_eq!(http(&base, "GET", "/api/v1/info", &[("Cookie", &ops)], "").json()["host"], "a");
    let (code, _, err) = m.at(0, &["web", "sessions", "--revoke", "nobody"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no web session with id or label nobody"), "{err}");
}

/// Write coder's hook file on c as `fleet hook` does (temp file + rename).
fn hook(m: &Mesh, state: &str, event: &str) {
    let run = m.nodes[1].home.join("fleet/run");
    let ts = fleet_core::heartbeat::Timestamp::from_unix(fleet_tmux::hbwriter::now_unix()).to_rfc3339();
    let tmp = run.join(".coder.state.tmp");
    std::fs::write(&tmp, format!("ts={ts}\nstate={state}\nevent={event}\n")).unwrap();
    std::fs::rename(&tmp, run.join("coder.state")).unwrap();
}

/// An open event stream: its raw text so far (chunk sizes included, events whole).
struct Sse {
    s: TcpStream,
    text: String,
}

impl Sse {
    fn open(base: &str, cookie: &str, last_id: Option<&str>) -> Sse {
        let mut s = TcpStream::connect(hostport(base)).unwrap();
        let last = last_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let req = format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n{last}\r\n",
            hostport(base)
        );
        s.write_all(req.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Sse { s, text: String::new() }
    }

    /// Read until an event satisfies `f` (name, id, data) or `within` passes.
    fn until(
        &mut self,
        within: Duration,
        f: impl Fn(&str, Option<&str>, &Value) -> bool,
    ) -> Option<(Option<String>, Value)> {
        let deadline = Instant::now() + within;
        let mut from = 0;
        loop {
            // Whole events only: each ends with a blank line.
            while let Some(end) = self.text[from..].find("\n\n") {
                let block = &self.text[from..from + end];
                from += end + 2;
                let (mut name, mut id, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v);
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v);
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str::<Value>(v).ok();
                    }
                }
                if let (Some(n), Some(d)) = (name, data)
                    && f(n, id, &d)
                {
                    return Some((id.map(String::from), d));
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut buf = [0u8; 8192];
            match self.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
    }
}

#[test]
fn events_reach_a_browser_resume_by_id_and_metrics_parse() {
    let m = two();
    let (base, code) = pair(&m, 0, "viewer", "screen");
    let cookie = session(&base, &code);
    let mut sse = Sse::open(&base, &cookie, None);
    assert!(sse.text.is_empty());
    // The snapshot names c's agent once a knows it, and ends with an id.
    wait_for("a to follow c's rows", Duration::from_secs(15), || {
        let (_, out, _) = m.at(0, &["ps", "--json", "--host", "c"]);
        out.contains("\"coder\"")
    });
    let (end_id, _) = sse.until(Duration::from_secs(5), |n, _, _| n == "snapshot_end").expect("snapshot_end");
    assert!(sse.text.starts_with("HTTP/1.1 200"), "{}", sse.text);
    assert!(sse.text.to_ascii_lowercase().contains("content-type: text/event-stream"));
    let end_id = end_id.expect("snapshot_end has an id");

    // A hook written on c reaches the browser on a within a second, as activity_change.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    hook(&m, "waiting", "notification");
    let (id, e) = sse
        .until(Duration::from_secs(5), |n, _, d| n == "activity_change" && d["host"] == "c" && d["agent"] == "coder")
        .expect("an activity change of coder@c");
    let took = t0.elapsed();
    eprintln!("hook on c -> SSE event on a's web door: {} ms", took.as_millis());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!((e["tenant_id"].as_str(), e["activity"]["state"].as_str()), (Some("acme"), Some("waiting")), "{e}");
    let id = id.expect("live events have ids");
    drop(sse);

    // Reconnecting with the id before it replays it, under the same id.
    let mut again = Sse::open(&base, &cookie, Some(&end_id));
    let (replayed, _) = again
        .until(Duration::from_secs(3), |n, _, d| n == "activity_change" && d["host"] == "c")
        .expect("the missed change, replayed");
    assert_eq!(replayed.as_deref(), Some(id.as_str()));
    assert!(!again.text.contains("event: snapshot_end"), "a resumed stream has no snapshot: {}", again.text);
    // An id from another run of the node: told so, then a fresh snapshot.
    let mut stale = Sse::open(&base, &cookie, Some("0-5"));
    let (_, lag) = stale.until(Duration::from_secs(3), |n, _, _| n == "lagged").expect("lagged");
    assert!(lag["reason"].as_str().unwrap().contains("restarted"), "{lag}");
    assert!(stale.until(Duration::from_secs(3), |n, _, d| n == "agent_appeared" && d["host"] == "c").is_some());
    assert!(stale.until(Duration::from_secs(3), |n, _, _| n == "snapshot_end").is_some());

    // /metrics: Prometheus text, every sample line `name{labels} value`.
    let r = http(&base, "GET", "/metrics", &[], "");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let mut names = std::collections::BTreeSet::new();
    for line in r.body.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        value.parse::<f64>().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line:?}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("label {pair:?} in {line:?}"));
                assert!(!k.is_empty() && !v.contains('"') || v.ends_with('"'), "{line:?}");
            }
        }
        names.insert(name.to_string());
    }
    for want in [
        "fleet_peers",
        "fleet_tls_handshakes_refused_total",
        "fleet_audit_write_failures_total",
        "fleet_web_request_duration_seconds_bucket",
        "fleet_rpc_duration_seconds_count",
        "fleet_heartbeat_lag_seconds",
    ] {
        assert!(names.contains(want), "{want} missing from:\n{}", r.body);
    }
    assert!(r.body.contains("fleet_peers{state=\"alive\"} 1\n"), "{}", r.body);
    assert!(r.body.contains("fleet_rpc_duration_seconds_count{method=\"/fleet.v1.Mesh/ListPeers\"}"), "{}", r.body);
}

/// `fleet node` with `env`: its exit code and stderr; a node still running after 10 s
/// (it did not refuse) is killed (by the harness) and reported as -1.
fn node_exit(m: &mut Mesh, env: &[(&str, &str)]) -> (i32, String) {
    let err_file = m.root().join("node-refused.err");
    let mut cmd = m.command(&["node"], env);
    cmd.stderr(std::fs::File::create(&err_file).unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(10) {
            m.adopt(child);
            break -1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&err_file).unwrap())
}

#[test]
fn a_web_door_off_loopback_without_tls_is_refused_at_start() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    let home = m.nodes[0].home.display().to_string();
    let start = Instant::now();
    let env = [
        ("MOSAIC_HOME", home.as_str()),
        ("FLEET_LISTEN", "127.0.0.1:0"),
        ("FLEET_MDNS", "false"),
        ("FLEET_WEB_LISTEN", "0.0.0.0:0"),
    ];
    let (code, err) = node_exit(&mut m, &env);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "FLEET_WEB_LISTEN=\"0.0.0.0:0\": the web door on 0.0.0.0:0 (not loopback) needs TLS: set web_tls: true"
        ),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!m.nodes[0].home.join("fleet/node.sock").exists(), "nothing was bound");
    // The same in node.yaml names the file, line and key.
    std::fs::write(m.nodes[0].home.join("fleet/node.yaml"), "web_listen: 0.0.0.0:7421\n").unwrap();
    let (code, err) =
        node_exit(&mut m, &[("MOSAIC_HOME", &home), ("FLEET_LISTEN", "127.0.0.1:0"), ("FLEET_MDNS", "false")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("node.yaml:1:13: web_listen: the web door on 0.0.0.0:7421 (not loopback) needs TLS"), "{err}");
}

/// A WebSocket client (RFC 6455) on a TcpStream: what a browser does, written out.
struct Ws {
    s: TcpStream,
}

enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Close(u16),
}

impl Ws {
    /// Upgrade `path`; `Err(reply)` when the door answers anything but 101.
    fn open(base: &str, path: &str, cookie: &str, origin: &str) -> Result<Ws, Reply> {
        let mut s = TcpStream::connect(hostport(base)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Cookie: {cookie}\r\nOrigin: {origin}\r\n\r\n",
            hostport(base)
        );
        s.write_all(req.as_bytes()).unwrap();
        // The head, byte by byte (frames follow it at once).
        let mut head = Vec::new();
        let mut b = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "the door closed during the handshake: {head:?}");
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().into(), v.trim().into()))
            .collect();
        let mut r = Reply { status, headers, body: String::new() };
        if status != 101 {
            let len: usize = r.header("content-length").unwrap_or("0").parse().unwrap();
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).unwrap();
            r.body = String::from_utf8_lossy(&body).into_owned();
            return Err(r);
        }
        // RFC 6455's example key and its accept value.
        assert_eq!(r.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        Ok(Ws { s })
    }

    fn recv(&mut self) -> Msg {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0, "a server frame is never masked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.s.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                self.s.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        self.s.read_exact(&mut p).unwrap();
        assert_ne!(h[0] & 0x80, 0, "the server sends whole messages");
        match h[0] & 0x0f {
            1 => Msg::Text(String::from_utf8(p).unwrap()),
            2 => Msg::Binary(p),
            8 => Msg::Close(u16::from_be_bytes([p[0], p[1]])),
            9 => Msg::Ping,
            op => panic!("unexpected opcode {op}"),
        }
    }

    fn send(&mut self, op: u8, payload: &[u8]) {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut f = vec![0x80 | op];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    /// Read until `f` is true of a message, answering pings (a browser's network stack does).
    fn until(&mut self, what: &str, mut f: impl FnMut(&Msg) -> bool) -> Msg {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
            let m = self.recv();
            if matches!(m, Msg::Ping) {
                self.send(0xA, b"");
            }
            if f(&m) {
                return m;
            }
        }
    }
}

#[test]
fn pane_websockets_watch_attach_origin_and_the_end_of_an_attachment() {
    let m = two();
    wait_for("a to see coder@c", Duration::from_secs(15), || {
        let (_, out, _) = m.at(0, &["ps", "--json", "--host", "c"]);
        out.contains("\"coder\"")
    });
    let (base, v) = pair(&m, 0, "viewer", "view");
    // `fleet web`: where the door is, and how to pair.
    let (code, out, err) = m.at(0, &["web"]);
    assert_eq!((code, out.trim()), (0, format!("{base}/").as_str()), "{err}");
    assert!(err.contains("fleet web pair --role operator"), "{err}");
    let (_, out, _) = m.at(0, &["web", "--json"]);
    let door: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((door["web_url"].as_str(), door["host"].as_str()), (Some(base.as_str()), Some("a")), "{door}");
    let viewer = session(&base, &v);
    let (_, o) = pair(&m, 0, "operator", "ops");
    let ops = session(&base, &o);

    // Unpaired: 401; another page's socket: 403, audited; a viewer may not attach: 403, audited.
    let watch = "/api/v1/agents/c/coder/watch";
    let attach = "/api/v1/agents/c/coder/attach";
    let Err(r) = Ws::open(&base, watch, "fleet_session=00", &base) else { panic!("unpaired socket opened") };
    assert_eq!(r.status, 401, "{}", r.body);
    let Err(r) = Ws::open(&base, watch, &viewer, "http://evil.example") else { panic!("cross-origin socket") };
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("bad_origin"), "{}", r.body);
    let Err(r) = Ws::open(&base, attach, &viewer, &base) else { panic!("a viewer attached") };
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("web:view@acme may not attach"), "{}", r.body);
    assert!(
        audit(&m, 0)
            .iter()
            .any(|l| l["principal"] == "web:view@acme" && l["verb"] == "attach" && l["outcome"] == "denied"),
        "{:?}",
        audit(&m, 0)
    );
    let Err(r) = Ws::open(&base, "/api/v1/agents/c/nobody/watch", &viewer, &base) else { panic!() };
    assert_eq!(r.status, 404, "{}", r.body);

    // A viewer watches coder@c through a's door: the size first, then the screen, then output.
    let mut w = Ws::open(&base, watch, &viewer, &base).unwrap_or_else(|r| panic!("{}: {}", r.status, r.body));
    let Msg::Text(first) = w.recv() else { panic!("the first frame is JSON") };
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["host"].as_str(), first["agent"].as_str()),
        (Some("screen"), Some("c"), Some("coder"))
    );
    assert!(first["width"].as_u64().unwrap() > 0 && first["height"].as_u64().unwrap() > 0, "{first}");
    let Msg::Binary(screen) = w.recv() else { panic!("the screen's bytes follow") };
    assert!(
        String::from_utf8_lossy(&screen).contains("stub agent coder ready"),
        "the stub's screen: {:?}",
        String::from_utf8_lossy(&screen)
    );
    // Keys a viewer sends go nowhere.
    w.send(1, b"viewer keys\r");

    // An operator attaches through a's door and types; the watcher sees it.
    let mut a = Ws::open(&base, attach, &ops, &base).unwrap_or_else(|r| panic!("{}: {}", r.status, r.body));
    a.until("the attach screen", |m| matches!(m, Msg::Text(t) if t.contains("\"screen\"")));
    a.send(1, b"typed in a browser\r");
    w.until(
        "the typed line in the watcher",
        |m| matches!(m, Msg::Binary(b) if String::from_utf8_lossy(b).contains("accepted: typed in a browser")),
    );
    wait_for("the typed line in the pane", Duration::from_secs(5), || {
        m.capture(1, "coder").contains("accepted: typed in a browser")
    });
    assert!(!m.capture(1, "coder").contains("viewer keys"), "{}", m.capture(1, "coder"));
    assert!(
        audit(&m, 0)
            .iter()
            .any(|l| l["principal"] == "web:ops@acme" && l["verb"] == "attach" && l["outcome"] == "started"),
        "{:?}",
        audit(&m, 0)
    );
    assert!(
        audit(&m, 1).iter().any(|l| l["principal"] == "node:a@acme for web:ops@acme"
            && l["verb"] == "attach"
            && l["outcome"] == "started"),
        "{:?}",
        audit(&m, 1)
    );
    // The browser closes: the attachment ends, audited with the bytes typed.
    a.send(8, &1000u16.to_be_bytes());
    drop(a);
    let ended = |i: usize| {
        audit(&m, i).into_iter().find(|l| {
            l["verb"] == "attach"
                && l["outcome"] == "ended"
                && l["principal"].as_str().is_some_and(|p| p.ends_with("web:ops@acme"))
        })
    };
    wait_for("the attachment's end in a's audit", Duration::from_secs(10), || ended(0).is_some());
    assert!(ended(0).unwrap()["detail"].as_str().unwrap().contains("19 bytes typed"), "{:?}", ended(0));
    wait_for("the attachment's end in c's audit", Duration::from_secs(10), || ended(1).is_some());

    // A browser that goes silent (answers no ping) loses its attachment within seconds.
    let mut quiet = Ws::open(&base, attach, &ops, &base).unwrap_or_else(|r| panic!("{}: {}", r.status, r.body));
    let started = Instant::now();
    let why = loop {
        // Read without answering pings.
        match quiet.recv() {
            Msg::Text(t) if t.contains("\"ended\"") => break t,
            Msg::Close(c) => panic!("closed ({c}) without saying why"),
            _ => {}
        }
    };
    assert!(why.contains("no input or keepalive"), "{why}");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert!(matches!(quiet.recv(), Msg::Close(1000)));
    wait_for("two ended attachments audited", Duration::from_secs(5), || {
        audit(&m, 0).iter().filter(|l| l["verb"] == "attach" && l["outcome"] == "ended").count() == 2
    });
    drop(w);
}

/// A TLS client on `port` of loopback that trusts only the mesh CA and expects `name`: the
/// status line of `GET path`, or the handshake's error.
fn https_get(ca: &std::path::Path, name: &str, port: u16, path: &str) -> Result<String, String> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    fleet_tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(fleet_tls::config::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port)).unwrap());
    let req = format!("GET {path} HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    match tls.read_to_string(&mut out) {
        Ok(_) => Ok(out.lines().next().unwrap_or("").to_string()),
        // Some servers close without close_notify; what was read is enough.
        Err(_) if !out.is_empty() => Ok(out.lines().next().unwrap_or("").to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn a_tls_door_links_by_the_name_its_certificate_covers() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.start_agents(0);
    m.start_node_with(0, "127.0.0.1:0", &[], &[("FLEET_WEB_TLS", "true")]);
    let (code, out, err) = m.at(0, &["web", "pair", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let url = v["url"].as_str().unwrap();
    let rest = url.strip_prefix("https://").unwrap_or_else(|| panic!("{url}"));
    let (hostport, path) = rest.split_once('/').unwrap();
    let (name, port) = hostport.rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    // The link names the node as its certificate does, and a browser that trusts the mesh CA
    // and resolves that name to the node opens it.
    assert_eq!(name, "a.acme.fleet.internal", "{url}");
    let ca = m.nodes[0].home.join("fleet/certs/ca.pem");
    let status = https_get(&ca, name, port, &format!("/{path}")).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // By the address it is bound to, the certificate does not match (no IP SANs): what the
    // link named before.
    let by_ip = https_get(&ca, "127.0.0.1", port, "/");
    assert!(by_ip.is_err(), "{by_ip:?}");
    let (code, _, err) = m.at(0, &["web", "pair"]);
    assert_eq!(code, 0);
    assert!(err.contains("a hosts line `<node address> a.acme.fleet.internal`"), "{err}");
}
