//! Interop: the certificates `fleet certs` makes are ordinary X.509 that OpenSSL verifies
//! and reads (the `openssl` command must be installed).

use std::path::Path;
use std::process::Command;

use fleet_tls::Kind;
use fleet_tls::issue;
use fleet_tls::show;

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is needed for this test (apt-get install openssl)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn text(cert: &Path) -> String {
    let (ok, text) = openssl(&["x509", "-text", "-noout", "-in", cert.to_str().unwrap()]);
    assert!(ok, "{text}");
    text
}

#[test]
fn openssl_verifies_leaves_and_shows_the_sans() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    issue::init_ca(&dir, "acme", false).unwrap();
    let ca = dir.join("ca.pem");
    let node = issue::issue(&dir, Kind::Node, "dragon-lin", 90, None, false).unwrap();
    let op = issue::issue(&dir, Kind::Operator, "alice", 30, None, false).unwrap();
    let viewer = issue::issue(&dir, Kind::Viewer, "web_ui", 7, None, false).unwrap();

    for (leaf, purpose) in
        [(&node.cert, "sslserver"), (&node.cert, "sslclient"), (&op.cert, "sslclient"), (&viewer.cert, "sslclient")]
    {
        let (ok, out) =
            openssl(&["verify", "-CAfile", ca.to_str().unwrap(), "-purpose", purpose, leaf.to_str().unwrap()]);
        assert!(ok && out.contains(": OK"), "openssl verify {} ({purpose}): {out}", leaf.display());
    }

    // Another CA's openssl verify fails: the check above means something.
    let other = tmp.path().join("other");
    issue::init_ca(&other, "acme", false).unwrap();
    let (ok, out) =
        openssl(&["verify", "-CAfile", other.join("ca.pem").to_str().unwrap(), node.cert.to_str().unwrap()]);
    assert!(!ok, "{out}");

    let n = text(&node.cert);
    for want in [
        "URI:fleet://acme/node/dragon-lin",
        "DNS:dragon-lin.acme.fleet.internal",
        "DNS:node.acme.fleet.internal",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "CA:FALSE",
        "Digital Signature",
        "ASN1 OID: prime256v1",
        "Subject: CN = node:dragon-lin@acme",
    ] {
        assert!(n.contains(want), "node certificate lacks {want:?}:\n{n}");
    }
    let o = text(&op.cert);
    assert!(o.contains("URI:fleet://acme/operator/alice"), "{o}");
    assert!(!o.contains("DNS:"), "operator certificates carry no DNS SAN:\n{o}");
    assert!(text(&viewer.cert).contains("URI:fleet://acme/viewer/web_ui"));

    let c = text(&ca);
    for want in [
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "URI:fleet://acme/ca",
        "Subject: CN = fleet mesh CA acme, O = fleet mesh",
        "ASN1 OID: prime256v1",
    ] {
        assert!(c.contains(want), "CA certificate lacks {want:?}:\n{c}");
    }

    // `fleet certs show` prints the fingerprint openssl prints.
    let (ok, out) = openssl(&["x509", "-noout", "-fingerprint", "-sha256", "-in", node.cert.to_str().unwrap()]);
    assert!(ok, "{out}");
    let info = show::show(&node.cert, None).unwrap();
    assert!(out.trim().ends_with(&format!("={}", info.sha256)), "openssl: {out} ours: {}", info.sha256);
}

#[test]
fn openssl_reads_the_crl_and_refuses_what_it_revokes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    issue::init_ca(&dir, "acme", false).unwrap();
    let (ca, crl) = (dir.join("ca.pem"), dir.join("crl.pem"));
    let gone = issue::issue(&dir, Kind::Operator, "mallory", 30, None, false).unwrap();
    let kept = issue::issue(&dir, Kind::Operator, "alice", 30, None, false).unwrap();
    let done = fleet_tls::revoke::revoke(&dir, fleet_tls::revoke::Target::Cert(&gone.cert)).unwrap();

    let (ok, out) = openssl(&["crl", "-noout", "-text", "-in", crl.to_str().unwrap(), "-CAfile", ca.to_str().unwrap()]);
    assert!(ok && out.contains("verify OK") && out.contains("CRL Number"), "{out}");
    assert!(out.contains(&done.serial.replace(':', "").to_uppercase()), "{} not in:\n{out}", done.serial);
    let verify = |leaf: &Path| {
        openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            ca.to_str().unwrap(),
            "-CRLfile",
            crl.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ])
    };
    let (ok, out) = verify(&gone.cert);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify(&kept.cert);
    assert!(ok, "{out}");
}
