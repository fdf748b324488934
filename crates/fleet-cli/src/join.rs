//! `fleet join ADDR TOKEN`, `fleet certs invite` and `fleet certs renew`: a host enters the
//! mesh with a single-use token instead of copied keys, and off-host clients renew their
//! certificates (docs/security.md "Enrollment").

use std::path::PathBuf;

use anyhow::anyhow;
use fleet_node::client::{self, Target};
use fleet_proto::v1;
use fleet_proto::v1::certs_client::CertsClient;
use fleet_proto::v1::enroll_client::EnrollClient;
use fleet_tls::enroll::{self as en, JoinToken};
use fleet_tls::{CertsDir, DnsLabel, Kind, Principal};

use crate::context::Paths;
use crate::exit::{self, CliError, CliResult, Code};
use crate::node;

#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The enrollment door of the inviting node, HOST:PORT (as `fleet certs invite` prints it)
    pub addr: String,
    /// The join token from `fleet certs invite`
    pub token: String,
    /// The host name this node will run as [default: node.yaml/FLEET_HOST, else the short hostname]
    #[arg(long)]
    pub host: Option<String>,
    /// Certs dir to write [default: $MOSAIC_HOME/fleet/certs]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Replace an identity already in the certs dir
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct InviteArgs {
    /// Bind the token to this host name (the joining node's name); without it the joiner names itself
    #[arg(long)]
    pub host: Option<String>,
    /// How long the token may be used (once): 90s, 15m, 1h
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::web::parse_duration)]
    pub ttl: u64,
    /// JSON output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The certs dir whose client.pem/client.key are renewed [default: FLEET_CERTS_DIR, the
    /// context's, else $MOSAIC_HOME/fleet/certs]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn certs_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.or_else(|| std::env::var_os("FLEET_CERTS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| Paths::from_env().certs_dir())
}

/// `fleet certs invite`: ask this host's node (the CA host's) for a join token.
pub fn invite(a: InviteArgs) -> CliResult {
    let host = match &a.host {
        Some(h) => {
            DnsLabel::parse_as("host name", h).map_err(|e| exit::usage(anyhow!("{e}; nothing was issued")))?.to_string()
        }
        None => String::new(),
    };
    let rt = node::runtime()?;
    let target = node::target();
    let r = rt.block_on(async {
        let mut c = CertsClient::new(client::connect(&target).await.map_err(node::unreachable)?);
        c.invite(v1::InviteRequest { host: host.clone(), ttl_seconds: a.ttl }).await.map_err(node::status)
    })?;
    let r = r.into_inner();
    let command = format!("fleet join {} {}", r.enroll_address, r.token);
    if a.json {
        let v = serde_json::json!({
            "tenant_id": r.tenant_id, "host": r.host, "token": r.token, "token_id": r.token_id,
            "enroll_address": r.enroll_address, "expires_unix_ms": r.expires_unix_ms,
            "for_host": if host.is_empty() { None } else { Some(&host) }, "command": command,
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(exit::failed)?);
        return Ok(());
    }
    let until = fleet_tls::show::OffsetDateTime::from_unix_timestamp(r.expires_unix_ms / 1000)
        .map(fleet_tls::show::rfc3339)
        .unwrap_or_default();
    let whom = if host.is_empty() { "any new host".to_string() } else { format!("host {host}") };
    println!("join token {} for {whom} of mesh {} (single use, until {until}):", r.token_id, r.tenant_id);
    println!("{}", r.token);
    println!("on the new host, run:");
    println!("  {command}");
    Ok(())
}

/// `fleet join ADDR TOKEN`.
pub fn join(a: JoinArgs) -> CliResult {
    let token: JoinToken = a.token.parse().map_err(exit::usage)?;
    let dir = certs_dir(a.dir.clone());
    let certs = CertsDir::new(&dir);
    if !a.force
        && let Some(p) = [certs.node_cert(), certs.node_key(), certs.ca_key()].into_iter().find(|p| p.exists())
    {
        return Err(exit::usage(anyhow!(
            "{} already exists: this host already has a mesh identity; pass --force to replace it, or --dir \
             for another certs dir; nothing was sent",
            p.display()
        )));
    }
    let host = match a.host.clone().or_else(|| std::env::var("FLEET_HOST").ok().filter(|h| !h.is_empty())) {
        Some(h) => DnsLabel::parse_as("host name", &h).map_err(|e| exit::usage(anyhow!("{e}; nothing was sent")))?,
        None => DnsLabel::sanitize("host name", &fleet_node::server::short_hostname())
            .map_err(|e| exit::usage(anyhow!("{e}; pass --host NAME")))?,
    };
    let addr = a.addr.trim_start_matches("https://").trim_end_matches('/').to_string();
    let (key, csr) = en::new_key_and_csr(&format!("node:{host}@{}", token.tenant)).map_err(exit::failed)?;
    let tls = en::pinned_client_config(token.ca_fingerprint).map_err(exit::failed)?;
    let name = fleet_tls::config::any_node_server_name(&token.tenant);
    let rt = node::runtime()?;
    let reply = rt.block_on(async {
        fleet_tls::install_crypto_provider();
        let channel = client::tls_channel(&addr, &addr, name, tls).await.map_err(|e| refused_to_talk(&addr, e))?;
        let mut c = EnrollClient::new(channel);
        let req = v1::JoinRequest { secret: token_secret(&token), host: host.to_string(), csr_der: csr };
        c.join(req).await.map_err(|s| {
            let code = match s.code() {
                tonic::Code::InvalidArgument => Code::Usage,
                tonic::Code::Unavailable => Code::Unreachable,
                _ => Code::Failed,
            };
            CliError::new(code, anyhow!("the node at {addr} refused to enroll this host: {}", s.message()))
        })
    })?;
    let r = reply.into_inner();
    // The CA it sends must be the one the token names, and the certificate ours.
    let bad = |what: String| exit::failed(anyhow!("the node at {addr} answered with {what}; nothing was written"));
    let ca_der = en::pem_cert(&r.ca_cert_pem).ok_or_else(|| bad("no readable CA certificate".into()))?;
    if !en::ct_eq(&en::ca_fingerprint(&ca_der), &token.ca_fingerprint) {
        return Err(bad("a CA certificate that is not the one the token names".into()));
    }
    let want = Principal { tenant: token.tenant.clone(), kind: Kind::Node, name: host.to_string() };
    let got = en::pem_cert(&r.node_cert_pem).and_then(|d| Principal::from_der(d.as_ref()).ok());
    if got.as_ref() != Some(&want) {
        return Err(bad(format!(
            "a certificate for {} instead of {want}",
            got.map_or("nothing".into(), |p| p.to_string())
        )));
    }
    en::write_identity(&dir, Kind::Node, &key.serialize_pem(), &r.node_cert_pem, Some(&r.ca_cert_pem))
        .map_err(|e| bad(format!("a certificate that does not fit: {e}")))?;
    if !r.crl_pem.is_empty() {
        en::install_crl(&dir, r.crl_pem.as_bytes(), &ca_der).map_err(|e| bad(format!("a bad revocation list: {e}")))?;
    }
    println!("joined mesh {} as {want}", r.tenant_id);
    println!("wrote {} (private key, 0600: made here, never sent)", certs.node_key().display());
    println!("wrote {} (certificate, signed by {})", certs.node_cert().display(), r.host);
    println!("wrote {} (mesh CA certificate)", certs.ca_cert().display());
    if !r.crl_pem.is_empty() {
        println!("wrote {} (revocation list)", certs.crl().display());
    }
    println!(
        "next: start the node (`fleet node`, or its systemd unit); it finds the mesh by mDNS on this LAN, \
         else put `peers: [{}]` in node.yaml",
        r.grpc_address
    );
    Ok(())
}

fn token_secret(t: &JoinToken) -> String {
    t.secret.iter().map(|b| format!("{b:02x}")).collect()
}

/// The dial to the enrollment door failed: when the server's CA is not the token's, say so
/// (the secret was not sent).
fn refused_to_talk(addr: &str, e: client::ClientError) -> CliError {
    let text = e.to_string();
    let detail = match &e {
        client::ClientError::Remote(f) => f.detail.clone(),
        _ => text.clone(),
    };
    if detail.contains("not the mesh the token is for") || detail.contains("sent no CA certificate") {
        // From our verifier's own words on (rustls wraps them in "TLS handshake: unexpected error: ").
        let at = detail.find("the server").unwrap_or(0);
        let why = &detail[at..];
        return CliError::new(
            Code::Failed,
            anyhow!(
                "refused to enroll at {addr}: {why}. The token's secret was not sent. Check the address, or ask \
                 for a new token on the CA host (`fleet certs invite`)"
            ),
        );
    }
    CliError::new(Code::Unreachable, anyhow!("cannot reach the enrollment door at {addr}: {detail}"))
}

/// `fleet certs renew`: a new key and certificate for an operator's or viewer's certs dir,
/// signed through the node of `FLEET_NODE` (or the current context) with the current one.
pub fn renew(a: RenewArgs) -> CliResult {
    let target = match node::target() {
        Target::Remote { url, certs_dir } => Target::Remote { url, certs_dir: a.dir.clone().unwrap_or(certs_dir) },
        Target::Socket(_) => {
            return Err(exit::usage(anyhow!(
                "`fleet certs renew` renews an operator or viewer certificate at a node of the mesh: set \
                 FLEET_NODE=https://HOST:PORT (the CA host's node signs) or use a context; a node renews its \
                 own certificate by itself"
            )));
        }
    };
    let Target::Remote { certs_dir: dir, .. } = &target else { unreachable!() };
    let dir = dir.clone();
    let current = fleet_tls::config::Identity::client(&dir).map_err(|e| exit::usage(anyhow!("{e}")))?;
    let (key, csr) = en::new_key_and_csr(&current.principal.to_string()).map_err(exit::failed)?;
    let rt = node::runtime()?;
    let r = rt.block_on(async {
        let mut c = CertsClient::new(client::connect(&target).await.map_err(node::unreachable)?);
        c.renew(v1::RenewRequest { csr_der: csr }).await.map_err(node::status)
    })?;
    let r = r.into_inner();
    let got = en::pem_cert(&r.cert_pem).and_then(|d| Principal::from_der(d.as_ref()).ok());
    if got.as_ref() != Some(&current.principal) {
        return Err(exit::failed(anyhow!(
            "the node returned a certificate for another principal; nothing was written"
        )));
    }
    en::write_identity(&dir, current.principal.kind, &key.serialize_pem(), &r.cert_pem, None)
        .map_err(|e| exit::failed(anyhow!("{e}; nothing was written")))?;
    let until = fleet_tls::show::OffsetDateTime::from_unix_timestamp(r.not_after_unix_ms / 1000)
        .map(fleet_tls::show::rfc3339)
        .unwrap_or_default();
    println!("renewed {} (valid until {until}, signed by {})", current.principal, r.host);
    let (cert, keyp) = CertsDir::new(&dir).identity(current.principal.kind);
    println!("wrote {} (new private key, 0600)", keyp.display());
    println!("wrote {} (certificate)", cert.display());
    Ok(())
}
