//! Enrollment, renewal and the spreading of revocation lists, with real nodes on loopback:
//! a host joins with a token (`fleet certs invite` / `fleet join`) and appears in the mesh;
//! a token works once, until its expiry, only at its own mesh's nodes; a node renews its
//! certificate without a restart; a revocation list made on the CA host reaches the other
//! nodes within seconds. (tests/netns.rs joins a host across network namespaces.)

mod mesh_util;

use mesh_util::{Mesh, wait_for};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const INVALID: &str = "invalid or expired token";

fn certs(m: &Mesh, i: usize) -> PathBuf {
    m.nodes[i].home.join("fleet/certs")
}

/// Host `host` as the CA host: its certs dir also holds the mesh CA key.
fn ca_host(m: &mut Mesh, host: &str) -> usize {
    let i = m.add_host(host, "");
    std::fs::copy(m.ca_dir().join("ca.key"), certs(m, i).join("ca.key")).unwrap();
    i
}

/// A host with no certificates at all (it will join).
fn bare_host(m: &mut Mesh, host: &str) -> usize {
    let i = m.add_host(host, "");
    std::fs::remove_dir_all(certs(m, i)).unwrap();
    i
}

/// `fleet certs invite --json` at node `i`: (token, enroll address).
fn invite(m: &Mesh, i: usize, extra: &[&str]) -> (String, String) {
    let mut args = vec!["certs", "invite", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = m.at(i, &args);
    assert_eq!(code, 0, "invite: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["command"].as_str().unwrap().starts_with("fleet join "), "{v}");
    (v["token"].as_str().unwrap().to_string(), v["enroll_address"].as_str().unwrap().to_string())
}

/// `fleet join ADDR TOKEN --host HOST` as host `i`.
fn join(m: &Mesh, i: usize, addr: &str, token: &str, host: &str) -> (i32, String, String) {
    m.at(i, &["join", addr, token, "--host", host])
}

fn peers(m: &Mesh, i: usize) -> Vec<serde_json::Value> {
    let (code, out, err) = m.at(i, &["peers", "--json"]);
    assert_eq!(code, 0, "peers: {err}");
    serde_json::from_str(&out).unwrap()
}

fn alive(m: &Mesh, i: usize, host: &str) -> bool {
    peers(m, i).iter().any(|p| p["host"] == host && p["state"] == "alive")
}

fn audit(m: &Mesh, i: usize) -> String {
    std::fs::read_to_string(m.nodes[i].home.join("fleet/audit.log")).unwrap_or_default()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

const ENROLL: (&str, &str) = ("FLEET_ENROLL_LISTEN", "127.0.0.1:0");

#[test]
fn a_new_host_joins_with_a_token_that_works_once_even_across_a_restart() {
    let mut m = Mesh::new("acme");
    let ca = ca_host(&mut m, "h1");
    let h2 = bare_host(&mut m, "h2");
    let h3 = bare_host(&mut m, "h3");
    m.start_node_with(ca, "127.0.0.1:0", &[], &[ENROLL]);
    let (token, addr) = invite(&m, ca, &[]);
    // Issued before the restart below, used after it.
    let (later, _) = invite(&m, ca, &["--host", "h3"]);

    let (code, out, err) = join(&m, h2, &addr, &token, "h2");
    assert_eq!(code, 0, "join: {out}{err}");
    assert!(out.contains("joined mesh acme as node:h2@acme"), "{out}");
    let dir = certs(&m, h2);
    assert_eq!(mode(&dir.join("node.key")), 0o600);
    assert!(dir.join("node.pem").exists() && dir.join("ca.pem").exists());
    assert!(!dir.join("ca.key").exists(), "the CA key never leaves its host");
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), std::fs::read(m.ca_dir().join("ca.pem")).unwrap());

    // The new node starts from what join wrote and appears in the mesh, both ways.
    let seed = m.addr(ca);
    m.start_node(h2, "127.0.0.1:0", std::slice::from_ref(&seed));
    wait_for("h2 alive at h1", Duration::from_secs(15), || alive(&m, ca, "h2"));
    wait_for("h1 alive at h2", Duration::from_secs(15), || alive(&m, h2, "h1"));

    // The same token again, from another host: refused, and nothing is written.
    let (code, _, err) = join(&m, h3, &addr, &token, "h3");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(INVALID), "{err}");
    assert!(!certs(&m, h3).exists(), "nothing written on a refusal");

    // Single use survives a restart of the CA host's node; a token issued before it still works.
    m.kill_node(ca);
    m.start_node_with(ca, "127.0.0.1:0", &[], &[ENROLL]);
    let (_, addr) = invite(&m, ca, &[]);
    let (code, _, err) = join(&m, h3, &addr, &token, "h3");
    assert_eq!(code, 1, "a replay after the restart: {err}");
    assert!(err.contains(INVALID), "{err}");
    let (code, out, err) = join(&m, h3, &addr, &later, "h3");
    assert_eq!(code, 0, "the token issued before the restart: {out}{err}");

    let log = audit(&m, ca);
    assert!(log.contains("\"token_issued\""), "{log}");
    assert!(log.contains("\"principal\":\"join:h2\"") && log.contains("\"joined\""), "{log}");
    assert!(log.contains("token already used"), "the replay is audited as one: {log}");
    // The store holds hashes only, 0600.
    let store = certs(&m, ca).join("join-tokens.json");
    assert_eq!(mode(&store), 0o600);
    let secret = token.rsplit('.').next().unwrap();
    assert!(!std::fs::read_to_string(&store).unwrap().contains(secret));
}

#[test]
fn expired_bound_foreign_and_tampered_tokens_are_refused() {
    let mut m = Mesh::new("acme");
    let ca = ca_host(&mut m, "h1");
    let h2 = bare_host(&mut m, "h2");
    m.start_node_with(ca, "127.0.0.1:0", &[], &[ENROLL]);

    // Expired.
    let (short, addr) = invite(&m, ca, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _, err) = join(&m, h2, &addr, &short, "h2");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(INVALID), "{err}");

    // Bound to another host: the same answer, and the token stays good for its host.
    let (bound, _) = invite(&m, ca, &["--host", "h9"]);
    let (code, _, err) = join(&m, h2, &addr, &bound, "h2");
    assert!(code == 1 && err.contains(INVALID), "{err}");
    // A made-up secret in a well-formed token: the same answer.
    let (good, _) = invite(&m, ca, &[]);
    let guessed = format!("{}.{}", good.rsplit_once('.').unwrap().0, "ab".repeat(32));
    let (code, _, err) = join(&m, h2, &addr, &guessed, "h2");
    assert!(code == 1 && err.contains(INVALID), "{err}");
    assert!(!err.contains("unknown token") && !err.contains("for host"), "the caller learns nothing more: {err}");

    // A tampered CA fingerprint: the joiner refuses the node before sending anything ...
    let parts: Vec<&str> = good.split('.').collect();
    let mut fp = parts[2].to_string();
    let flipped = if fp.starts_with('0') { "1" } else { "0" };
    fp.replace_range(0..1, flipped);
    let tampered = format!("{}.{}.{}.{}", parts[0], parts[1], fp, parts[3]);
    let (code, _, err) = join(&m, h2, &addr, &tampered, "h2");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not the mesh the token is for") && err.contains("secret was not sent"), "{err}");
    // ... so the secret was never used up.

    // A node of another mesh CA (same tenant name): the joiner refuses it too.
    let mut other = Mesh::new("acme");
    let oca = ca_host(&mut other, "o1");
    other.start_node_with(oca, "127.0.0.1:0", &[], &[ENROLL]);
    let (_, other_addr) = invite(&other, oca, &[]);
    let (code, _, err) = join(&m, h2, &other_addr, &good, "h2");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not the mesh the token is for"), "{err}");
    assert!(!certs(&m, h2).exists(), "nothing written by any refusal");

    // The untouched token still works at its own node.
    let (code, out, err) = join(&m, h2, &addr, &good, "h2");
    assert_eq!(code, 0, "{out}{err}");
    // A token's secret is never written to the audit log; the refusals are, with why.
    let log = audit(&m, ca);
    assert!(log.contains("token expired") && log.contains("is for host h9") && log.contains("unknown token"), "{log}");
    assert!(!log.contains(good.rsplit('.').next().unwrap()));
}

/// The CA host signs joins with a 20 s lifetime; the new node renews at two thirds of it,
/// over and over, in the same process, and stays in the mesh past its first certificate's
/// expiry. Then the CA host goes away: the node says, in `fleet peers` and `fleet doctor`,
/// that its renewal fails, before the certificate expires.
#[test]
fn a_node_renews_its_certificate_without_a_restart_and_says_when_it_cannot() {
    let mut m = Mesh::new("acme");
    let ca = ca_host(&mut m, "h1");
    let h2 = bare_host(&mut m, "h2");
    m.start_node_with(ca, "127.0.0.1:0", &[], &[ENROLL, ("FLEET_CERT_LIFETIME_S", "20")]);
    let (token, addr) = invite(&m, ca, &[]);
    let (code, out, err) = join(&m, h2, &addr, &token, "h2");
    assert_eq!(code, 0, "{out}{err}");
    let node_pem = certs(&m, h2).join("node.pem");
    let first = std::fs::read(&node_pem).unwrap();
    let joined = Instant::now();
    let seed = m.addr(ca);
    m.start_node(h2, "127.0.0.1:0", std::slice::from_ref(&seed));
    let pid = m.nodes[h2].pid.unwrap();
    wait_for("h2 alive at h1", Duration::from_secs(15), || alive(&m, ca, "h2"));

    // Renewed at about 2/3 of 25 s (20 s plus 5 s backdated) from issue: ~12 s after the join.
    wait_for("a renewed node.pem", Duration::from_secs(25), || std::fs::read(&node_pem).unwrap() != first);
    let renewed_after = joined.elapsed();
    assert!(renewed_after > Duration::from_secs(8), "not before its time: {renewed_after:?}");
    // Past the first certificate's expiry (20 s after the join), h2 is still in the mesh, its
    // node the same process, and the CA host reaches it (a call that needs its server cert).
    while joined.elapsed() < Duration::from_secs(24) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(m.nodes[h2].pid, Some(pid));
    wait_for("h2 alive at h1 after the first expiry", Duration::from_secs(10), || alive(&m, ca, "h2"));
    let (code, out, err) = m.at(ca, &["ps", "--json", "--host", "h2"]);
    assert_eq!(code, 0, "{out}{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let status = rows.iter().find(|r| r["record"] == "host" && r["host"] == "h2").cloned().unwrap_or_default();
    assert_eq!(status["state"], "ok", "{out}");
    let row = peers(&m, ca).into_iter().find(|p| p["host"] == "h2").unwrap();
    assert_eq!(row["certificate"]["state"], "ok", "{row}");
    assert_eq!(row["certificate"]["renew_error"], "", "{row}");
    let audit_ca = audit(&m, ca);
    assert!(audit_ca.contains("\"verb\":\"renew\"") && audit_ca.contains("\"renewed\""), "{audit_ca}");

    // No signer: h2 keeps trying, and says so well before its certificate expires.
    m.kill_node(ca);
    wait_for("h2 to report a failing renewal", Duration::from_secs(30), || {
        let (_, out, _) = m.at(h2, &["peers", "--json"]);
        out.contains("no reachable peer holds the mesh CA key") || out.contains("no signer renewed it")
    });
    let (code, out, err) = m.at(h2, &["peers"]);
    assert_eq!(code, 0);
    assert!(out.contains("renewal failing"), "{out}");
    assert!(err.contains("warning: h2's certificate expires in") && err.contains("renewal fails"), "{err}");
    let (_, out, _) = m.at(h2, &["doctor", "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let renewal = checks.iter().find(|c| c["check"] == "certificate renewal").expect("a renewal check");
    assert_ne!(renewal["status"], "ok", "{renewal}");
    let log = std::fs::read_to_string(m.root().join("h2.log")).unwrap();
    assert!(log.contains("certificate renewal failed") || log.contains("cannot be renewed"), "{log}");
}

/// `fleet certs renew`: an operator renews its certificate through the CA host's node with
/// the current one; the new one works, the dir keeps its layout and modes.
#[test]
fn an_operator_renews_its_certificate_with_the_current_one() {
    let mut m = Mesh::new("acme");
    let ca = ca_host(&mut m, "h1");
    m.start_node_with(ca, "127.0.0.1:0", &[], &[ENROLL]);
    let alice = m.client_certs("operator", "alice");
    let url = format!("https://{}", m.addr(ca));
    let env = [("FLEET_NODE", url.as_str()), ("FLEET_CERTS_DIR", alice.to_str().unwrap())];
    let before = std::fs::read(alice.join("client.pem")).unwrap();
    let key_before = std::fs::read(alice.join("client.key")).unwrap();
    let (code, out, err) = m.run(&["certs", "renew"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("renewed operator:alice@acme"), "{out}");
    assert_ne!(std::fs::read(alice.join("client.pem")).unwrap(), before);
    assert_ne!(std::fs::read(alice.join("client.key")).unwrap(), key_before, "a new key, made here");
    assert_eq!(mode(&alice.join("client.key")), 0o600);
    let (code, _, err) = m.run(&["peers"], &env);
    assert_eq!(code, 0, "the new certificate works: {err}");
    // Without a remote node there is nothing to renew at.
    let (code, _, err) = m.run(&["certs", "renew", "--dir", alice.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("FLEET_NODE"), "{err}");
}

/// A revocation made on the CA host reaches another node within seconds, with nobody
/// copying files: its revoked operator is refused there.
#[test]
fn a_revocation_list_made_on_the_ca_host_reaches_another_node_within_seconds() {
    let mut m = Mesh::new("acme");
    let ca = ca_host(&mut m, "h1");
    let h2 = m.add_host("h2", "");
    m.start_node(ca, "127.0.0.1:0", &[]);
    let seed = m.addr(ca);
    m.start_node(h2, "127.0.0.1:0", std::slice::from_ref(&seed));
    wait_for("h2 alive at h1", Duration::from_secs(15), || alive(&m, ca, "h2"));
    wait_for("h1 alive at h2", Duration::from_secs(15), || alive(&m, h2, "h1"));
    let alice = m.client_certs("operator", "alice");
    let at_h2 = format!("https://{}", m.addr(h2));
    let env = [("FLEET_NODE", at_h2.as_str()), ("FLEET_CERTS_DIR", alice.to_str().unwrap())];
    let (code, _, err) = m.run(&["peers"], &env);
    assert_eq!(code, 0, "alice reaches h2 before: {err}");

    let ca_certs = certs(&m, ca);
    let (code, out, err) = m.run(
        &["certs", "revoke", "--cert", alice.join("client.pem").to_str().unwrap(), "--dir", ca_certs.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let start = Instant::now();
    let crl = certs(&m, h2).join("crl.pem");
    wait_for("the list at h2", Duration::from_secs(10), || crl.exists());
    let arrived = start.elapsed();
    assert_eq!(std::fs::read(&crl).unwrap(), std::fs::read(ca_certs.join("crl.pem")).unwrap());
    wait_for("alice refused at h2", Duration::from_secs(10), || m.run(&["peers"], &env).0 != 0);
    let refused = start.elapsed();
    eprintln!("crl.pem reached h2 after {arrived:?}; alice refused there after {refused:?}");
    assert!(refused < Duration::from_secs(8), "{refused:?}");
    let (code, _, err) = m.run(&["peers"], &env);
    assert_eq!(code, 3, "{err}");
}

/// A list pushed by a peer must be signed by the mesh CA: one made by another CA is refused
/// and the node keeps the list in force.
#[test]
fn a_pushed_list_not_signed_by_the_mesh_ca_is_refused() {
    let mut m = Mesh::new("acme");
    let h1 = m.add_host("h1", "");
    m.start_node(h1, "127.0.0.1:0", &[]);
    // Another CA's list, revoking h1's own certificate by serial.
    let other = m.root().join("other-ca");
    let (code, _, err) = m.run(&["certs", "init", "--tenant", "acme", "--dir", other.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let node_pem = certs(&m, h1).join("node.pem");
    let (_, out, _) = m.run(&["certs", "show", node_pem.to_str().unwrap(), "--json"], &[]);
    let serial = serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["serial"].as_str().unwrap().to_string();
    let (code, _, err) = m.run(&["certs", "revoke", "--serial", &serial, "--dir", other.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let pem = std::fs::read_to_string(other.join("crl.pem")).unwrap();
    let operator = m.client_certs("operator", "olga");
    let url = format!("https://{}", m.addr(h1));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        let target = fleet_node::client::Target::Remote { url, certs_dir: operator };
        let channel = fleet_node::client::connect(&target).await.unwrap();
        let mut c = fleet_proto::v1::certs_client::CertsClient::new(channel);
        c.push_crl(fleet_proto::v1::PushCrlRequest { crl_pem: pem }).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("not signed by this mesh's CA"), "{status:?}");
    assert!(!certs(&m, h1).join("crl.pem").exists());
    let (code, _, _) = m.at(h1, &["peers"]);
    assert_eq!(code, 0, "h1 still serves");
}

/// The enrollment door serves `Enroll.Join` and nothing else: every other service there is
/// UNIMPLEMENTED, even to a client that verified the door as the joiner does; the network door
/// still refuses a client without a certificate.
#[test]
fn the_enrollment_door_serves_join_only_and_the_network_door_stays_mutual() {
    use fleet_proto::v1;
    let mut m = Mesh::new("acme");
    let ca = ca_host(&mut m, "h1");
    m.start_node_with(ca, "127.0.0.1:0", &[], &[ENROLL]);
    let (token, door) = invite(&m, ca, &[]);
    let token: fleet_tls::enroll::JoinToken = token.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let net = m.addr(ca);
    rt.block_on(async {
        fleet_tls::install_crypto_provider();
        let dial = |addr: String| {
            let tls = fleet_tls::enroll::pinned_client_config(token.ca_fingerprint).unwrap();
            let name = fleet_tls::config::any_node_server_name(&token.tenant);
            async move { fleet_node::client::tls_channel(&addr, &addr, name, tls).await }
        };
        let channel = dial(door.clone()).await.expect("the door verifies as the token says");
        let code = v1::fleet_client::FleetClient::new(channel.clone())
            .list_agents(v1::ListAgentsRequest::default())
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, tonic::Code::Unimplemented);
        let code = v1::certs_client::CertsClient::new(channel.clone())
            .invite(v1::InviteRequest::default())
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, tonic::Code::Unimplemented);
        let code = v1::mesh_client::MeshClient::new(channel.clone())
            .node_info(v1::NodeInfoRequest {})
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, tonic::Code::Unimplemented);
        // Join itself answers there (here: a malformed secret, refused as any bad token).
        let s = v1::enroll_client::EnrollClient::new(channel)
            .join(v1::JoinRequest { secret: "x".into(), host: "h9".into(), csr_der: vec![] })
            .await
            .unwrap_err();
        assert_eq!((s.code(), s.message()), (tonic::Code::PermissionDenied, INVALID));
        // The network door: the same client (no certificate) gets no call through.
        let refused = match dial(net).await {
            Err(_) => true,
            Ok(ch) => v1::mesh_client::MeshClient::new(ch).node_info(v1::NodeInfoRequest {}).await.is_err(),
        };
        assert!(refused, "the network door answered a client without a certificate");
    });
}
