//! The dashboard in a real headless Chromium (WebDriver, tests/util/webdriver.rs) against three
//! real nodes on loopback (mutual TLS between them, real tmux, stub agents): the merged fleet,
//! a heartbeat live within 1 s, a send with its receipt, a pane in the page's terminal, the
//! pairing link's single use, a viewer without write controls, and a cross-origin POST.
//!
//! Chromium must be installed (`apt-get install -y chromium chromium-driver`; .ci/run does):
//! without it this test fails and says so. It runs as root too (`--no-sandbox`).
//! `FLEET_SCREENSHOT=path` saves the dashboard's screenshot there (docs/dashboard.png).

#[path = "mesh_util.rs"]
mod mesh_util;
#[path = "util/webdriver.rs"]
mod webdriver;

use mesh_util::{Mesh, wait_for};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use webdriver::Browser;

fn audit(m: &Mesh, i: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(m.nodes[i].home.join("fleet/audit.log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A pairing link of node `i`'s door.
fn pair(m: &Mesh, i: usize, role: &str, label: &str) -> String {
    let (code, out, err) = m.at(i, &["web", "pair", "--role", role, "--label", label, "--json"]);
    assert_eq!(code, 0, "fleet web pair: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["url"].as_str().unwrap().to_string()
}

/// A synchronous request from the page (it carries the page's cookie and Origin): the status.
const XHR: &str = "const x = new XMLHttpRequest(); x.open(arguments[0], arguments[1], false); \
                   if (arguments[2]) x.setRequestHeader('content-type', 'application/json'); \
                   x.send(arguments[2]); return x.status;";

/// The agent rows of the page, `name@host`, sorted, space-separated (a script expression).
const ROWS: &str = "[...document.querySelectorAll('tr.agent')].map(t => t.dataset.agent).sort().join(' ')";

#[test]
fn the_dashboard_in_a_real_browser() {
    if let Some(why) = webdriver::missing() {
        panic!("{why}");
    }
    let began = Instant::now();
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("b", "  - { name: coder, runtime: stub }\n");
    m.add_host("c", "  - { name: quiet, runtime: quiet }\n");
    for i in 0..3 {
        m.start_agents(i);
    }
    m.start_node(2, "127.0.0.1:0", &[]);
    m.start_node(1, "127.0.0.1:0", &[m.addr(2)]);
    let seeds = vec![m.addr(1), m.addr(2)];
    m.start_node(0, "127.0.0.1:0", &seeds);
    wait_for("a to see all three hosts", Duration::from_secs(20), || {
        let (_, out, _) = m.at(0, &["ps", "--json"]);
        ["\"orch\"", "\"coder\"", "\"quiet\""].iter().all(|n| out.contains(n))
    });
    let link = pair(&m, 0, "operator", "ops");
    let base = link.split("/pair?").next().unwrap().to_string();
    let b = Browser::start(1200, 860);

    // Unpaired: the page says how to pair, and the API answers 401.
    b.goto(&format!("{base}/"));
    let banner = b.wait_js(
        "the not-paired banner",
        Duration::from_secs(10),
        "const e = document.querySelector('#banner'); return !e.hidden && e.textContent",
    );
    assert!(banner.as_str().unwrap().contains("fleet web pair"), "{banner}");
    assert_eq!(b.js(XHR, json!(["GET", "/api/v1/agents", null])), 401);

    // The pairing link: the dashboard with every host's agents, live.
    b.goto(&link);
    let rows = b.wait_js(
        "the agents of a, b and c",
        Duration::from_secs(10),
        &format!("const r = {ROWS}; return r === 'coder@b orch@a quiet@c' && r"),
    );
    assert_eq!(rows, "coder@b orch@a quiet@c");
    b.wait_js(
        "the event stream",
        Duration::from_secs(10),
        "return document.querySelector('#live').textContent === 'live'",
    );
    assert_eq!(b.js("return document.querySelector('#who').textContent", json!([])), "ops (operator)");
    for h in ["a", "b", "c"] {
        let state = b.js(
            "return document.querySelector(`tbody[data-host=\"${arguments[0]}\"] tr.host .state`).textContent",
            json!([h]),
        );
        assert_eq!(state, "ok", "host row of {h}");
    }

    // A heartbeat written on c shows within 1 s, without a reload.
    b.js("window.__sameDocument = true", json!([]));
    let now = fleet_core::heartbeat::Timestamp::from_unix(fleet_tmux::hbwriter::now_unix());
    let hb = m.nodes[2].home.join("fleet/run/quiet.hb");
    let tmp = hb.with_extension("tmp");
    std::fs::write(&tmp, format!("ts={}\npid=1\nstatus=busy\n", now.to_iso_compact())).unwrap();
    let written = Instant::now();
    std::fs::rename(&tmp, &hb).unwrap();
    b.wait_js(
        "the heartbeat of quiet@c",
        Duration::from_secs(5),
        "return document.querySelector('tr[data-agent=\"quiet@c\"] .hb').textContent.includes('busy')",
    );
    let seen = written.elapsed();
    assert!(seen < Duration::from_secs(1), "the heartbeat took {seen:?} to show");
    assert_eq!(b.js("return window.__sameDocument === true", json!([])), true, "the page was not reloaded");
    eprintln!("heartbeat on c to the page on a's door: {seen:?}");

    // The pane of coder@b in the page's terminal, and a send typed in the page.
    b.click("tr[data-agent=\"coder@b\"]");
    b.wait_js("the pane's screen", Duration::from_secs(10), "const r = document.querySelector('#term .xterm-rows'); return r && r.textContent.includes('stub agent coder ready')");
    b.type_into("#text", "hello from chromium");
    b.click("#send button[type=submit]");
    let receipt = b.wait_js(
        "the receipt",
        Duration::from_secs(15),
        "const r = document.querySelector('#receipt'); return r.className && r.className !== '' && r.textContent",
    );
    assert!(receipt.as_str().unwrap().starts_with("accepted: coder@b"), "{receipt}");
    assert!(m.capture(1, "coder").contains("hello from chromium"), "{}", m.capture(1, "coder"));
    b.wait_js("the sent line in the pane view", Duration::from_secs(10), "return document.querySelector('#term .xterm-rows').textContent.includes('accepted: [a:ops -> b:coder] hello from chromium')");
    // Text printed in the pane by something else shows too.
    m.tmux(1, &["send-keys", "-t", "=coder:", "-l", "printed-in-the-pane"]);
    b.wait_js(
        "text printed in the pane",
        Duration::from_secs(10),
        "return document.querySelector('#term .xterm-rows').textContent.includes('printed-in-the-pane')",
    );
    b.js("window.scrollTo(0, 0)", json!([]));
    let png = b.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let shot = std::env::var("FLEET_SCREENSHOT").unwrap_or_else(|_| {
        std::env::temp_dir().join(format!("fleet-dashboard-{}.png", std::process::id())).display().to_string()
    });
    std::fs::write(&shot, &png).unwrap();
    eprintln!("dashboard screenshot: {shot}");

    // Attach: keys typed in the page's terminal reach the pane; back to watching ends it.
    b.click("#attach");
    b.wait_js("the attachment", Duration::from_secs(10), "return document.querySelector('#attach').classList.contains('on') && document.querySelector('#term .xterm-rows').textContent.includes('printed-in-the-pane')");
    b.type_into("#term .xterm-helper-textarea", " typed-in-xterm\u{E007}");
    wait_for("the keys typed in the page in the pane", Duration::from_secs(10), || {
        m.capture(1, "coder").contains("accepted: printed-in-the-pane typed-in-xterm")
    });
    b.click("#watch");
    let attach_ended = |l: &Value| l["verb"] == "attach" && l["outcome"] == "ended" && l["principal"] == "web:ops@acme";
    wait_for("the attachment's end in a's audit", Duration::from_secs(10), || audit(&m, 0).iter().any(attach_ended));
    let end = audit(&m, 0).into_iter().find(attach_ended).unwrap();
    assert!(end["detail"].as_str().unwrap().contains("the browser closed the socket"), "{end}");

    // A phone-width screen: nothing wider than the screen but the terminal's own scroller.
    b.resize(390, 844);
    b.wait_js("the phone layout", Duration::from_secs(5), "return window.innerWidth < 500");
    let wide = b.js("return document.documentElement.scrollWidth - window.innerWidth", json!([]));
    assert!(wide.as_i64().unwrap() <= 0, "the page is {wide} px wider than a phone");
    assert_eq!(b.js("return getComputedStyle(document.querySelector('thead')).display", json!([])), "none");
    b.resize(1200, 860);

    // A cross-origin POST (a page of another door on this host: same site, so the cookie goes
    // along) is refused by the Origin check, audited, and types nothing.
    let other = pair(&m, 1, "viewer", "other");
    let other_base = other.split("/pair?").next().unwrap().to_string();
    // (A page without the dashboard's Content-Security-Policy, which would not let it connect
    // elsewhere: an error page of that door.)
    b.goto(&format!("{other_base}/elsewhere"));
    b.js(
        "fetch(arguments[0], {method: 'POST', credentials: 'include', mode: 'no-cors', body: arguments[1]})",
        json!([format!("{base}/api/v1/send"), json!({"target": "coder@b", "text": "cross-site text"}).to_string()]),
    );
    wait_for("the refused cross-origin send in a's audit", Duration::from_secs(10), || {
        audit(&m, 0).iter().any(|l| {
            l["principal"] == "web:ops@acme"
                && l["verb"] == "send"
                && l["outcome"] == "denied"
                && l["detail"].as_str().is_some_and(|d| d.contains(&format!("Origin {other_base}")))
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!m.capture(1, "coder").contains("cross-site text"));

    // The used link works no more.
    b.goto(&link);
    let used = b.wait_js(
        "the refusal",
        Duration::from_secs(10),
        "return document.body.innerText.includes('already used') && document.body.innerText",
    );
    assert!(used.as_str().unwrap().contains("pairing_refused"), "{used}");

    // A viewer: no write controls, and its API call is refused (403, audited).
    b.delete_cookies();
    b.goto(&pair(&m, 0, "viewer", "looker"));
    b.wait_js("the viewer's rows", Duration::from_secs(10), &format!("return {ROWS}.length > 0"));
    assert_eq!(b.js("return document.querySelector('#who').textContent", json!([])), "looker (viewer)");
    assert_eq!(b.js("return document.querySelectorAll('#send, #text, .op').length", json!([])), 0);
    b.click("tr[data-agent=\"coder@b\"]");
    b.wait_js("the viewer's pane", Duration::from_secs(10), "const r = document.querySelector('#term .xterm-rows'); return r && r.textContent.includes('printed-in-the-pane')");
    let body = json!({"target": "coder@b", "text": "viewer text"}).to_string();
    assert_eq!(b.js(XHR, json!(["POST", "/api/v1/send", body])), 403);
    assert!(
        audit(&m, 0)
            .iter()
            .any(|l| l["principal"] == "web:looker@acme" && l["verb"] == "send" && l["outcome"] == "denied"),
        "{:?}",
        audit(&m, 0)
    );
    assert!(!m.capture(1, "coder").contains("viewer text"));
    drop(b);
    eprintln!("the browser test took {:?}", began.elapsed());
}
