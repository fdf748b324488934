//! Node configuration: `$MOSAIC_HOME/fleet/node.yaml` (every key optional),
//! then `FLEET_*` environment overrides, validated in one place before any
//! socket is bound. Errors name the file, line and key, or the variable.

use fleet_core::heartbeat::HeartbeatEnv;
use fleet_core::names::DnsLabel;
use fleet_core::yaml::{self, Node, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Timings, all settable (node.yaml `timings:` or `FLEET_*_MS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How often tmux is probed for session changes.
    pub probe_interval: Duration,
    /// How often health is re-judged as time passes (no I/O).
    pub sweep_interval: Duration,
    /// The default deadline of a MESH listing.
    pub fanout_deadline: Duration,
    /// How long in-flight calls may finish after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
    /// How long a send's idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// The failure detector's timings (SWIM).
    pub swim: crate::membership::SwimTimings,
    /// A gRPC connection to a peer that carried no call for this long is closed.
    pub idle_close: Duration,
    /// Feeds of the peers' events run this long after the last watcher of the mesh's events left.
    pub feed_linger: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            probe_interval: Duration::from_millis(2000),
            sweep_interval: Duration::from_millis(1000),
            fanout_deadline: Duration::from_millis(2000),
            shutdown_grace: Duration::from_millis(5000),
            idempotency_ttl: Duration::from_secs(300),
            swim: crate::membership::SwimTimings::default(),
            idle_close: Duration::from_secs(30),
            feed_linger: Duration::from_secs(30),
        }
    }
}

/// The validated configuration of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// `None`: the tenant in this node's certificate, else the user name.
    pub tenant_id: Option<DnsLabel>,
    /// `None`: the host in this node's certificate, else the short hostname.
    pub host: Option<DnsLabel>,
    pub listen: SocketAddr,
    pub certs_dir: PathBuf,
    /// Static peers: `host:port` or `ip:port` of other nodes' network doors.
    pub peers: Vec<String>,
    pub mdns: bool,
    /// Interfaces mDNS may use (empty: every non-loopback one) and may not.
    pub mdns_allow_interfaces: Vec<String>,
    pub mdns_deny_interfaces: Vec<String>,
    pub roster: PathBuf,
    /// The local door.
    pub socket: PathBuf,
    pub audit_log: PathBuf,
    pub run_dir: PathBuf,
    pub heartbeat_interval_secs: u64,
    pub mosaic_home: PathBuf,
    pub timings: Timings,
    /// The web door (`web`, `web_listen`, `web_tls`); `None` when `web: false`.
    pub web: Option<WebConfig>,
    /// Enrollment, renewal and revocation lists (`enroll_listen`, `cert_lifetime_s`,
    /// `cert_renew_fraction`).
    pub certs: CertsConfig,
}

/// Enrollment and renewal (docs/operations.md "Adding a host", docs/security.md "Enrollment").
#[derive(Clone, Debug, PartialEq)]
pub struct CertsConfig {
    /// The enrollment door (`fleet join`), bound only on a node that holds the CA key;
    /// `None` when `enroll_listen: off`. Default: the IP of `listen`, port
    /// [`DEFAULT_ENROLL_PORT`] (port 0 when `listen`'s port is 0).
    pub enroll_listen: Option<SocketAddr>,
    /// Whether `enroll_listen` was given (a taken default costs only the door).
    pub enroll_explicit: bool,
    /// The lifetime of the certificates this node signs (joins and renewals), when it holds
    /// the CA key. Default 90 days.
    pub lifetime: Duration,
    /// The fraction of its lifetime after which this node renews its own certificate.
    pub renew_fraction: f64,
}

/// The enrollment door's default port.
pub const DEFAULT_ENROLL_PORT: u16 = 7422;

impl Default for CertsConfig {
    fn default() -> Self {
        CertsConfig {
            enroll_listen: Some(SocketAddr::from(([0, 0, 0, 0], DEFAULT_ENROLL_PORT))),
            enroll_explicit: false,
            lifetime: Duration::from_secs(u64::from(fleet_tls::issue::DEFAULT_LEAF_DAYS) * 86400),
            renew_fraction: fleet_tls::enroll::DEFAULT_RENEW_FRACTION,
        }
    }
}

/// The web door's listener (docs/protocol.md "Web door").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// Default `127.0.0.1:7421`.
    pub listen: SocketAddr,
    /// Serve HTTPS with the node certificate (no client certificate asked). Required for
    /// an address other than loopback.
    pub tls: bool,
    /// Whether `web_listen` was given: a default address that is taken (a second node on
    /// the host) only costs the web door, a given one that is taken stops the node.
    pub explicit: bool,
    /// Where the browser sessions are kept across restarts (0600): `$MOSAIC_HOME/fleet/web-sessions.json`.
    pub sessions_file: PathBuf,
}

/// The web door's default address.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:7421";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The reason is in the message, not a `#[source]`: the CLI prints an
    /// error's chain, which would say it twice.
    #[error("cannot read the node configuration {path}: {reason}: {next}")]
    Read { path: String, reason: std::io::Error, next: String },
    #[error("{path}:{line}:{col}: {key}: {message}")]
    File { path: String, line: usize, col: usize, key: String, message: String },
    #[error("{var}={value:?}: {message}")]
    Env { var: &'static str, value: String, message: String },
    /// Several problems, all reported at once (like `fleet roster check`).
    #[error("{} problems in the node configuration:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// One problem as itself, several as [`ConfigError::Many`].
    fn all(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Many(problems)),
        }
    }
}

/// The keys of node.yaml and the variables that override them, declared once.
pub const KEYS: &[(&str, &str)] = &[
    ("tenant_id", "FLEET_TENANT_ID"),
    ("host", "FLEET_HOST"),
    ("listen", "FLEET_LISTEN"),
    ("certs_dir", "FLEET_CERTS_DIR"),
    ("peers", "FLEET_PEERS"),
    ("mdns", "FLEET_MDNS"),
    ("mdns_allow_interfaces", "FLEET_MDNS_ALLOW_INTERFACES"),
    ("mdns_deny_interfaces", "FLEET_MDNS_DENY_INTERFACES"),
    ("roster", "FLEET_ROSTER"),
    ("socket", "FLEET_SOCKET"),
    ("audit_log", "FLEET_AUDIT_LOG"),
    ("web", "FLEET_WEB"),
    ("web_listen", "FLEET_WEB_LISTEN"),
    ("web_tls", "FLEET_WEB_TLS"),
    ("enroll_listen", "FLEET_ENROLL_LISTEN"),
    ("cert_lifetime_s", "FLEET_CERT_LIFETIME_S"),
    ("cert_renew_fraction", "FLEET_CERT_RENEW_FRACTION"),
    ("timings.probe_interval_ms", "FLEET_PROBE_INTERVAL_MS"),
    ("timings.sweep_interval_ms", "FLEET_SWEEP_INTERVAL_MS"),
    ("timings.fanout_deadline_ms", "FLEET_FANOUT_DEADLINE_MS"),
    ("timings.shutdown_grace_ms", "FLEET_SHUTDOWN_GRACE_MS"),
    ("timings.idempotency_ttl_s", "FLEET_IDEMPOTENCY_TTL_S"),
    ("timings.swim_probe_period_ms", "FLEET_SWIM_PROBE_PERIOD_MS"),
    ("timings.swim_probe_rtt_ms", "FLEET_SWIM_PROBE_RTT_MS"),
    ("timings.swim_suspect_to_down_ms", "FLEET_SWIM_SUSPECT_TO_DOWN_MS"),
    ("timings.idle_close_ms", "FLEET_IDLE_CLOSE_MS"),
    ("timings.feed_linger_ms", "FLEET_FEED_LINGER_MS"),
];

/// Raw values by key (`timings.x` for nested ones), with where each came from.
struct Raw {
    values: Vec<(String, RawValue, Origin)>,
}

#[derive(Clone)]
enum RawValue {
    Text(String),
    List(Vec<String>),
}

#[derive(Clone)]
enum Origin {
    File { path: String, line: usize, col: usize },
    Env(&'static str),
}

impl Origin {
    fn error(&self, key: &str, value: &str, message: impl Into<String>) -> ConfigError {
        match self {
            Origin::File { path, line, col } => ConfigError::File {
                path: path.clone(),
                line: *line,
                col: *col,
                key: key.into(),
                message: message.into(),
            },
            Origin::Env(var) => ConfigError::Env { var, value: value.into(), message: message.into() },
        }
    }
}

fn snake(key: &str) -> String {
    key.chars().fold(String::new(), |mut s, c| {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
        s
    })
}

/// The file's values, and the problems of its keys (a syntax error is `Err`).
fn read_file(path: &Path, text: &str) -> Result<(Raw, Vec<ConfigError>), ConfigError> {
    let shown = path.display().to_string();
    let err = |line: usize, col: usize, key: &str, message: String| ConfigError::File {
        path: shown.clone(),
        line,
        col,
        key: key.into(),
        message,
    };
    let root = yaml::parse(text).map_err(|e| err(e.pos.line, e.pos.col, "", format!("YAML syntax: {}", e.message)))?;
    let mut raw = Raw { values: Vec::new() };
    if root.is_null() {
        return Ok((raw, Vec::new()));
    }
    let walk = |prefix: &str, node: &Node| -> Result<Vec<(String, Node, Node)>, ConfigError> {
        let Value::Map(entries) = &node.value else {
            return Err(err(node.pos.line, node.pos.col, prefix, format!("expected a map, found {}", node.kind())));
        };
        Ok(entries
            .iter()
            .map(|(k, v)| {
                let name = snake(k.as_str().unwrap_or(""));
                (if prefix.is_empty() { name } else { format!("{prefix}.{name}") }, k.clone(), v.clone())
            })
            .collect())
    };
    let mut entries = walk("", &root)?;
    let mut problems = Vec::new();
    if let Some(i) = entries.iter().position(|(k, _, _)| k == "timings") {
        let (_, _, v) = entries.remove(i);
        match walk("timings", &v) {
            Ok(more) => entries.extend(more),
            Err(e) => problems.push(e),
        }
    }
    for (key, k, v) in entries {
        if !KEYS.iter().any(|(name, _)| *name == key) {
            let names: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
            let guess =
                fleet_core::names::closest(&key, &names).map(|g| format!(" (did you mean {g}?)")).unwrap_or_default();
            problems.push(err(
                k.pos.line,
                k.pos.col,
                &key,
                format!("unknown key{guess}; expected one of: {}", names.join(", ")),
            ));
            continue;
        }
        let origin = Origin::File { path: shown.clone(), line: v.pos.line, col: v.pos.col };
        let value = match &v.value {
            Value::Scalar { text, .. } => RawValue::Text(text.clone()),
            Value::Seq(items) => RawValue::List(items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()),
            Value::Map(_) => {
                problems.push(err(v.pos.line, v.pos.col, &key, "expected a value, found a map".into()));
                continue;
            }
        };
        if v.is_null() {
            continue;
        }
        raw.values.push((key, value, origin));
    }
    Ok((raw, problems))
}

impl NodeConfig {
    /// Load `file` (default `$MOSAIC_HOME/fleet/node.yaml`, which may be
    /// absent), apply `FLEET_*` from `env`, validate.
    pub fn load(file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<NodeConfig, ConfigError> {
        let hb = HeartbeatEnv::from_lookup(env);
        let mosaic_home = hb.mosaic_home();
        let default_file = mosaic_home.join("fleet/node.yaml");
        let (path, required) = match file {
            Some(p) => (p.to_path_buf(), true),
            None => (default_file.clone(), false),
        };
        let (mut raw, mut problems) = match fleet_core::file::read_to_string(&path, fleet_core::file::CONFIG_MAX) {
            Ok(text) => read_file(&path, &text)?,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => (Raw { values: Vec::new() }, Vec::new()),
            Err(reason) => {
                let next = if required {
                    format!(
                        "check the --config path, or leave it out to use {} (every key is optional)",
                        default_file.display()
                    )
                } else {
                    "fix its permissions or remove it (every key is optional)".to_string()
                };
                return Err(ConfigError::Read { path: path.display().to_string(), reason, next });
            }
        };
        for (key, var) in KEYS {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                raw.values.retain(|(k, _, _)| k != key);
                let value = if *key == "peers" || key.ends_with("_interfaces") {
                    RawValue::List(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                } else {
                    RawValue::Text(v)
                };
                raw.values.push((key.to_string(), value, Origin::Env(var)));
            }
        }

        let interval = hb.interval_secs().map_err(|m| ConfigError::Env {
            var: "MOSAIC_HEARTBEAT_INTERVAL",
            value: env("MOSAIC_HEARTBEAT_INTERVAL").unwrap_or_default(),
            message: m,
        })?;
        let fleet = mosaic_home.join("fleet");
        let mut cfg = NodeConfig {
            tenant_id: None,
            host: None,
            listen: "0.0.0.0:7420".parse().expect("default listen address"),
            certs_dir: fleet.join("certs"),
            peers: Vec::new(),
            mdns: true,
            mdns_allow_interfaces: Vec::new(),
            mdns_deny_interfaces: Vec::new(),
            roster: fleet.join("roster.yaml"),
            socket: fleet.join("node.sock"),
            audit_log: fleet.join("audit.log"),
            run_dir: hb.run_dir(),
            heartbeat_interval_secs: interval,
            mosaic_home,
            timings: Timings::default(),
            web: None,
            certs: CertsConfig::default(),
        };
        let mut web = WebConfig {
            listen: DEFAULT_WEB_LISTEN.parse().expect("default web address"),
            tls: false,
            explicit: false,
            sessions_file: fleet.join("web-sessions.json"),
        };
        let (mut web_on, mut web_origin) = (true, None);
        let flag = |text: &str| match text {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        };
        // Each key's problem is kept and the next key read: all are reported at once.
        for (key, value, origin) in raw.values {
            if let Err(e) = (|| -> Result<(), ConfigError> {
                let text = match &value {
                    RawValue::Text(t) => t.clone(),
                    RawValue::List(l) => l.join(","),
                };
                let bad = |m: &str| origin.error(&key, &text, m.to_string());
                let ms = |t: &str| -> Result<Duration, ConfigError> {
                    match t.trim().parse::<u64>() {
                        Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
                        _ => Err(bad("expected a positive whole number")),
                    }
                };
                match key.as_str() {
                    "tenant_id" => {
                        cfg.tenant_id = Some(DnsLabel::parse_as("tenant id", &text).map_err(|e| bad(&e.to_string()))?)
                    }
                    "host" => cfg.host = Some(DnsLabel::parse_as("host name", &text).map_err(|e| bad(&e.to_string()))?),
                    "listen" => {
                        cfg.listen =
                            text.parse().map_err(|_| bad("expected IP:PORT, e.g. 0.0.0.0:7420 or [::]:7420"))?
                    }
                    "certs_dir" => cfg.certs_dir = PathBuf::from(text),
                    "peers" => {
                        cfg.peers = match value {
                            RawValue::List(l) => l,
                            RawValue::Text(t) => vec![t],
                        };
                        for p in &cfg.peers {
                            let ok = p
                                .rsplit_once(':')
                                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
                            if !ok {
                                return Err(origin.error(&key, p, "expected HOST:PORT or IP:PORT"));
                            }
                        }
                    }
                    "mdns" => cfg.mdns = flag(&text).ok_or_else(|| bad("expected true or false"))?,
                    "web" => web_on = flag(&text).ok_or_else(|| bad("expected true or false"))?,
                    "web_tls" => web.tls = flag(&text).ok_or_else(|| bad("expected true or false"))?,
                    "web_listen" => {
                        web.listen = text.parse().map_err(|_| bad("expected IP:PORT, e.g. 127.0.0.1:7421"))?;
                        web.explicit = true;
                        web_origin = Some((origin.clone(), text.clone()));
                    }
                    "mdns_allow_interfaces" | "mdns_deny_interfaces" => {
                        let list = match value {
                            RawValue::List(l) => l,
                            RawValue::Text(t) => vec![t],
                        };
                        if key == "mdns_allow_interfaces" {
                            cfg.mdns_allow_interfaces = list;
                        } else {
                            cfg.mdns_deny_interfaces = list;
                        }
                    }
                    "enroll_listen" => {
                        cfg.certs.enroll_explicit = true;
                        cfg.certs.enroll_listen = match text.as_str() {
                            "off" | "false" | "no" => None,
                            _ => Some(text.parse().map_err(|_| bad("expected IP:PORT (e.g. 0.0.0.0:7422) or off"))?),
                        };
                    }
                    "cert_lifetime_s" => {
                        let secs = ms(&text)?.as_millis() as u64;
                        let max = u64::from(fleet_tls::issue::MAX_LEAF_DAYS) * 86400;
                        if secs > max {
                            return Err(bad(&format!("at most {max} ({} days)", fleet_tls::issue::MAX_LEAF_DAYS)));
                        }
                        cfg.certs.lifetime = Duration::from_secs(secs);
                    }
                    "cert_renew_fraction" => {
                        cfg.certs.renew_fraction = match text.trim().parse::<f64>() {
                            Ok(f) if (0.05..=0.95).contains(&f) => f,
                            _ => return Err(bad("expected a fraction of the lifetime from 0.05 to 0.95, e.g. 0.67")),
                        }
                    }
                    "roster" => cfg.roster = PathBuf::from(text),
                    "socket" => cfg.socket = PathBuf::from(text),
                    "audit_log" => cfg.audit_log = PathBuf::from(text),
                    "timings.probe_interval_ms" => cfg.timings.probe_interval = ms(&text)?,
                    "timings.sweep_interval_ms" => cfg.timings.sweep_interval = ms(&text)?,
                    "timings.fanout_deadline_ms" => cfg.timings.fanout_deadline = ms(&text)?,
                    "timings.shutdown_grace_ms" => cfg.timings.shutdown_grace = ms(&text)?,
                    "timings.idempotency_ttl_s" => cfg.timings.idempotency_ttl = ms(&text)? * 1000,
                    "timings.swim_probe_period_ms" => cfg.timings.swim.probe_period = ms(&text)?,
                    "timings.swim_probe_rtt_ms" => cfg.timings.swim.probe_rtt = ms(&text)?,
                    "timings.swim_suspect_to_down_ms" => cfg.timings.swim.suspect_to_down = ms(&text)?,
                    "timings.idle_close_ms" => cfg.timings.idle_close = ms(&text)?,
                    "timings.feed_linger_ms" => cfg.timings.feed_linger = ms(&text)?,
                    _ => unreachable!("keys are checked against KEYS"),
                }
                Ok(())
            })() {
                problems.push(e);
            }
        }
        ConfigError::all(problems)?;
        if !cfg.certs.enroll_explicit {
            let port = if cfg.listen.port() == 0 { 0 } else { DEFAULT_ENROLL_PORT };
            cfg.certs.enroll_listen = Some(SocketAddr::new(cfg.listen.ip(), port));
        }
        if web_on {
            // Browsers' session cookies and pairing codes cross the network in the clear without TLS.
            if !web.tls && !web.listen.ip().is_loopback() {
                let message = format!(
                    "the web door on {} (not loopback) needs TLS: set web_tls: true (FLEET_WEB_TLS=1) to serve \
                     HTTPS with the node certificate, or listen on 127.0.0.1",
                    web.listen
                );
                return Err(match web_origin {
                    Some((origin, text)) => origin.error("web_listen", &text, message),
                    None => ConfigError::Env { var: "FLEET_WEB_LISTEN", value: web.listen.to_string(), message },
                });
            }
            cfg.web = Some(web);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: Option<&str>, env: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.yaml");
        if let Some(y) = yaml {
            std::fs::write(&file, y).unwrap();
        }
        let mut vars: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        vars.push(("MOSAIC_HOME".into(), dir.path().display().to_string()));
        let lookup = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        NodeConfig::load(yaml.map(|_| file.as_path()), &lookup)
    }

    #[test]
    fn defaults_without_a_file() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:7420");
        assert!(c.mdns);
        assert!(c.socket.ends_with("fleet/node.sock"));
        assert_eq!(c.timings, Timings::default());
        let web = c.web.unwrap();
        assert_eq!(web.listen.to_string(), DEFAULT_WEB_LISTEN);
        assert!(!web.tls && !web.explicit);
    }

    #[test]
    fn the_web_door_off_on_and_only_on_loopback_without_tls() {
        assert!(load(Some("web: false\n"), &[]).unwrap().web.is_none());
        assert!(load(None, &[("FLEET_WEB", "off")]).unwrap().web.is_none());
        let w = load(Some("web_listen: 127.0.0.2:0\n"), &[]).unwrap().web.unwrap();
        assert!(w.explicit && w.listen.port() == 0);
        let e = load(Some("web_listen: 0.0.0.0:7421\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("node.yaml:1:13: web_listen: the web door on 0.0.0.0:7421 (not loopback) needs TLS"), "{e}");
        let e = load(None, &[("FLEET_WEB_LISTEN", "10.1.2.3:80")]).unwrap_err().to_string();
        assert!(e.starts_with("FLEET_WEB_LISTEN=\"10.1.2.3:80\": the web door on 10.1.2.3:80"), "{e}");
        let w = load(Some("web_listen: 0.0.0.0:7421\nweb_tls: true\n"), &[]).unwrap().web.unwrap();
        assert!(w.tls);
        // Off, the address does not matter.
        assert!(load(Some("web: false\nweb_listen: 0.0.0.0:1\n"), &[]).unwrap().web.is_none());
    }

    #[test]
    fn enrollment_and_renewal_settings() {
        let c = load(None, &[]).unwrap().certs;
        assert_eq!(c.enroll_listen.unwrap().to_string(), "0.0.0.0:7422");
        assert_eq!(c.lifetime, Duration::from_secs(90 * 86400));
        assert!((c.renew_fraction - 2.0 / 3.0).abs() < 1e-9);
        let c = load(Some("listen: 127.0.0.1:0\n"), &[]).unwrap().certs;
        assert_eq!(c.enroll_listen.unwrap().to_string(), "127.0.0.1:0", "follows listen");
        let c = load(Some("enroll_listen: off\ncert_lifetime_s: 20\ncert_renew_fraction: 0.5\n"), &[]).unwrap().certs;
        assert_eq!((c.enroll_listen, c.lifetime, c.renew_fraction), (None, Duration::from_secs(20), 0.5));
        let c = load(None, &[("FLEET_ENROLL_LISTEN", "127.0.0.1:9"), ("FLEET_CERT_LIFETIME_S", "60")]).unwrap().certs;
        assert_eq!((c.enroll_listen.unwrap().port(), c.lifetime.as_secs()), (9, 60));
        let e = load(Some("cert_renew_fraction: 1.5\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("cert_renew_fraction: expected a fraction"), "{e}");
        let e = load(Some("enroll_listen: x\ncert_lifetime_s: 0\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("enroll_listen") && e.contains("cert_lifetime_s"), "{e}");
    }

    #[test]
    fn file_then_env_overrides() {
        let c = load(
            Some("tenantId: acme\nhost: w-jarvis\nlisten: 127.0.0.1:0\npeers: [a:1, 10.0.0.2:7420]\nmdns: false\ntimings: { fanoutDeadlineMs: 300 }\n"),
            &[("FLEET_HOST", "dragon-lin"), ("FLEET_PEERS", "x:2, y:3")],
        )
        .unwrap();
        assert_eq!(c.tenant_id.unwrap().as_str(), "acme");
        assert_eq!(c.host.unwrap().as_str(), "dragon-lin");
        assert_eq!(c.peers, ["x:2", "y:3"]);
        assert!(!c.mdns);
        assert_eq!(c.timings.fanout_deadline, Duration::from_millis(300));
    }

    #[test]
    fn errors_name_the_key_and_place() {
        let e = load(Some("listen: nowhere\n"), &[]).unwrap_err().to_string();
        assert!(e.ends_with("node.yaml:1:9: listen: expected IP:PORT, e.g. 0.0.0.0:7420 or [::]:7420"), "{e}");
        let e = load(Some("colour: red\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("node.yaml:1:1: colour: unknown key"), "{e}");
        let e = load(Some("timings: { probe_interval_ms: 0 }\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("timings.probe_interval_ms: expected a positive whole number"), "{e}");
        let e = load(None, &[("FLEET_TENANT_ID", "a_b")]).unwrap_err().to_string();
        assert!(e.starts_with("FLEET_TENANT_ID=\"a_b\": tenant id"), "{e}");
        let e = load(Some("peers: [nope]\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("peers: expected HOST:PORT"), "{e}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const LINES: &[&str] = &[
            "tenant_id: acme",
            "tenant_id: -x-",
            "host: box-1",
            "listen: 127.0.0.1:0",
            "listen: nowhere",
            "peers: [10.0.0.2:7420, b.local:7420]",
            "peers: 1",
            "mdns: false",
            "mdns: maybe",
            "roster: /tmp/r.yaml",
            "certsDir: /tmp/c",
            "timings:",
            "timings: { probe_interval_ms: 500, shutdownGraceMs: 0 }",
            "  probe_interval_ms: 18446744073709551616",
            "  sweep_interval_ms: -1",
            "  swim_probe_rtt_ms: 0",
            "unknown: 1",
            "[",
            "- list",
            "a: &a {x: 1}",
            "b: *a",
            "",
        ];

        fn check(text: &str) -> Result<(), TestCaseError> {
            let lines = text.replace("\r\n", "\n").replace('\r', "\n").split('\n').count().max(1);
            if let Err(ConfigError::File { line, col, .. }) = load(Some(text), &[]) {
                prop_assert!(line >= 1 && line <= lines + 1 && col >= 1, "{line}:{col} in {text:?}");
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_text_loads_or_fails_with_a_position(text in any::<String>()) {
                check(&text)?;
            }

            #[test]
            fn near_valid_configs_load_or_fail_with_a_position(lines in prop::collection::vec(prop::sample::select(LINES), 0..10)) {
                check(&lines.join("\n"))?;
            }
        }
    }

    /// Every problem of a node.yaml at once, each with its line, like `fleet roster check`.
    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "listen: nowhere\nmdsn: true\npeers: [a:1, b]\ntimings:\n  probe_interval_ms: 0\n";
        let err = load(Some(text), &[]).unwrap_err();
        let ConfigError::Many(all) = &err else { panic!("{err}") };
        assert_eq!(all.len(), 4, "{err}");
        let shown = err.to_string();
        assert!(shown.starts_with("4 problems in the node configuration:\n  "), "{shown}");
        for want in [
            ":1:9: listen: expected IP:PORT",
            ":2:1: mdsn: unknown key (did you mean mdns?)",
            ":3:8: peers: expected HOST:PORT or IP:PORT",
            ":5:22: timings.probe_interval_ms: expected a positive whole number",
        ] {
            assert!(shown.contains(want), "missing {want:?} in {shown}");
        }
        // One problem is itself, not a list of one.
        assert!(matches!(load(Some("listen: nowhere\n"), &[]), Err(ConfigError::File { line: 1, .. })));
    }
}
