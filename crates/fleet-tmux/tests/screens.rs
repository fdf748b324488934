//! Reading agents' screens for activity, on a real tmux server: through a
//! control client on the holder session, and, for a roster without one, by
//! one spawned tmux for all agents; both give the same screens, and the
//! spawned way leaves no client attached.

use fleet_core::activity::{ScreenRules, State};
use fleet_core::roster::Roster;
use fleet_tmux::probe::{ProbeContext, probe_report};
use fleet_tmux::screen::Screens;
use fleet_tmux::tmux::Tmux;
use std::time::Duration;

const RULES: &str = "runtimes:\n  r:\n    bottom_lines: 2\n    rules:\n      - { state: waiting, screen: [\"Allow? [y/n]\"] }\n      - { state: idle, last_line: [\">\"] }\n";

fn roster(sock: &str, holder: bool) -> Roster {
    let holder = if holder { ", holder_session: _holder" } else { "" };
    Roster::parse(&format!(
        "version: 1\ntenant_id: t\ntmux: {{ socket_path: {sock}{holder} }}\nruntimes:\n  r: {{ command: sh }}\nagents:\n  - {{ name: ask, runtime: r }}\n  - {{ name: idle, runtime: r }}\n  - {{ name: gone, runtime: r }}\n"
    ))
    .unwrap()
}

#[test]
fn both_ways_read_the_same_screens_and_the_spawned_way_leaves_no_client() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sock").display().to_string();
    let with_holder = roster(&sock, true);
    let tmux = Tmux::new(with_holder.socket.clone());
    struct Kill<'a>(&'a Tmux);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(["kill-server"], None);
        }
    }
    tmux.run(["-f", "/dev/null", "new-session", "-d", "-s", "_holder", "sleep 100"], None).unwrap();
    let _kill = Kill(&tmux);
    tmux.run(["new-session", "-d", "-s", "ask", "printf 'rm -rf /?\\nAllow? [y/n]\\n'; sleep 100"], None).unwrap();
    tmux.run(["new-session", "-d", "-s", "idle", "printf 'done\\n> '; sleep 100"], None).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cx = ProbeContext {
        tenant_id: "t".into(),
        host: fleet_core::names::DnsLabel::parse_as("host", "h").unwrap(),
        run_dir: dir.path().join("run"),
        interval_secs: 15,
        now: fleet_tmux::hbwriter::now_unix(),
        systemd: false,
        call_timeout: Duration::from_secs(5),
        helpers: None,
    };
    let rows = probe_report(&with_holder, &cx).rows;
    let rules = ScreenRules::parse(RULES).unwrap();
    let state = |seen: &std::collections::BTreeMap<String, Result<fleet_tmux::screen::ScreenSeen, String>>, a: &str| {
        seen[a].as_ref().unwrap().matched.as_ref().map(|m| m.state)
    };

    let via_control = Screens::default().read(&with_holder, &rows, &rules);
    let spawned = Screens::default().read(&roster(&sock, false), &rows, &rules);
    assert_eq!(via_control, spawned);
    assert_eq!(state(&spawned, "ask"), Some(State::Waiting));
    assert_eq!(state(&spawned, "idle"), Some(State::Idle));
    assert!(!spawned.contains_key("gone"), "no live pane, no screen: {spawned:?}");
    let clients = tmux.run(["list-clients", "-F", "#{session_name}"], None).unwrap();
    assert!(clients.lines().all(|s| s == "_holder"), "only the holder has clients: {clients:?}");

    // A session that ends between the listing and the read is an error for it alone.
    tmux.run(["kill-session", "-t", "=ask"], None).unwrap();
    let seen = Screens::default().read(&roster(&sock, false), &rows, &rules);
    assert!(seen["ask"].is_err(), "{seen:?}");
    assert_eq!(state(&seen, "idle"), Some(State::Idle), "{seen:?}");
}
