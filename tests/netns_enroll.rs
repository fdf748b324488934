//! Enrollment across hosts: two network namespaces on one bridge (see netns_util.rs). Host a
//! holds the mesh CA key and opens its enrollment door on its default address
//! (`<listen IP>:7422`); host b has no certificate, joins with a token over the bridge, and
//! its node starts from what `fleet join` wrote. A revocation made on a then reaches b.
//! Root required: run with `--include-ignored` as root.

#[path = "netns_util.rs"]
mod netns_util;

use netns_util::{Lab, wait_for};
use std::time::{Duration, Instant};

fn certs(lab: &Lab, h: netns_util::HostId) -> std::path::PathBuf {
    lab.hosts[h].home.join("fleet/certs")
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_host_joins_across_the_bridge_with_a_token_and_gets_revocations_from_the_ca_host() {
    let mut lab = Lab::new("acme");
    let fp = lab.footprint();
    let a = lab.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    let b = lab.add_host("b", "  - { name: rev, runtime: stub, class: reviewer }\n");
    std::fs::copy(lab.ca_dir().join("ca.key"), certs(&lab, a).join("ca.key")).unwrap();
    std::fs::remove_dir_all(certs(&lab, b)).unwrap();
    lab.start_agents(a);
    lab.start_agents(b);
    lab.start_node(a, &[]);

    let o = lab.fleet(a, &["certs", "invite", "--host", "b", "--json"]);
    assert!(o.ok(), "invite: {}", o.stderr);
    let inv: serde_json::Value = o.json();
    let door = format!("{}:7422", lab.hosts[a].ip);
    assert_eq!(inv["enroll_address"], door.as_str(), "the default door: the listen IP, port 7422");
    let token = inv["token"].as_str().unwrap();

    let o = lab.fleet(b, &["join", &door, token]);
    assert!(o.ok(), "join: {}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("as node:b@acme"), "{}", o.stdout);
    assert!(!certs(&lab, b).join("ca.key").exists());
    // Used: a second join from b is refused, whatever b says.
    let o = lab.fleet(b, &["join", &door, token, "--force"]);
    assert!(!o.ok() && o.stderr.contains("invalid or expired token"), "{}", o.stderr);

    let seed = lab.addr(a);
    lab.start_node_with(b, vec![seed], &[]);
    wait_for("a and b see each other and each other's agents", Duration::from_secs(15), || {
        [a, b].iter().all(|&h| {
            let rows = lab.ps_json(h);
            ["a", "b"]
                .iter()
                .all(|n| rows.iter().any(|r| r["record"] == "host" && r["host"] == *n && r["state"] == "ok"))
        })
    });

    // An operator reaches b; revoked on a, it is refused at b within seconds.
    let alice = lab.root().join("alice");
    let (ca, out) = (lab.ca_dir().display().to_string(), alice.display().to_string());
    assert!(
        lab.fleet_outside(&["certs", "issue", "operator", "--name", "alice", "--dir", &ca, "--out", &out], &[]).ok()
    );
    let url = format!("https://{}", lab.addr(b));
    let env = [("FLEET_NODE", url.as_str()), ("FLEET_CERTS_DIR", out.as_str())];
    let o = lab.fleet_env(a, &["peers"], &env);
    assert!(o.ok(), "alice reaches b across the bridge: {}", o.stderr);
    let cert = alice.join("client.pem").display().to_string();
    let dir_a = certs(&lab, a).display().to_string();
    let o = lab.fleet(a, &["certs", "revoke", "--cert", &cert, "--dir", &dir_a]);
    assert!(o.ok(), "revoke: {}", o.stderr);
    let start = Instant::now();
    wait_for("alice refused at b", Duration::from_secs(10), || !lab.fleet_env(a, &["peers"], &env).ok());
    eprintln!("revocation made on a refused at b after {:?}", start.elapsed());
    assert!(certs(&lab, b).join("crl.pem").exists());
    drop(lab);
    fp.assert_gone();
}
