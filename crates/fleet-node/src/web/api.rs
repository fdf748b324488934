//! The web door's routes. Every API call checks the session cookie (401 without one), and
//! every state-changing request (any method but GET and HEAD) also the Origin (403 when it
//! is not this door); the role is checked by the node's own authorization, which the calls
//! go through in this process as the browser's principal.

// A refusal is a whole reply, made at most once per request: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use super::journal::Resume;
use super::sessions::Session;
use super::{WebCaller, WebDoor};
use crate::json;
use crate::service::NodeService;
use bytes::Bytes;
use fleet_core::address::AgentAddr;
use fleet_proto::v1::{self, fleet_server::Fleet, mesh_server::Mesh};
use fleet_tls::Verb;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt as _;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type Reply = http::Response<Body>;

/// The session cookie's name.
pub const COOKIE: &str = "fleet_session";
/// The OpenAPI document (docs/openapi.json), served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");
/// A request body's limit: a message at its limit, JSON-escaped, fits.
const MAX_BODY: usize = 8 * fleet_core::message::MAX_MESSAGE_BYTES;
/// An SSE comment this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = http::Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn ok_json(v: &Value) -> Reply {
    full(StatusCode::OK, "application/json", v.to_string())
}

/// An error: `{"error": {"code": "...", "message": "..."}}` plus `extra` keys.
pub(super) fn error(status: StatusCode, code: &str, message: &str, extra: Option<(&str, Value)>) -> Reply {
    let mut v = json!({"error": {"code": code, "message": message}});
    if let Some((k, x)) = extra {
        v[k] = x;
    }
    full(status, "application/json", v.to_string())
}

/// A node error as the CLI words it (`fleet: <message>`), with its HTTP status.
pub(super) fn status_reply(s: &tonic::Status) -> Reply {
    use tonic::Code;
    let (status, prefix) = match s.code() {
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, ""),
        Code::NotFound => (StatusCode::NOT_FOUND, ""),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission denied: "),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "not authenticated: "),
        Code::FailedPrecondition => (StatusCode::CONFLICT, ""),
        Code::Unavailable => (StatusCode::BAD_GATEWAY, ""),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, ""),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, ""),
    };
    let code = format!("{:?}", s.code());
    error(status, &snake(&code), &format!("{prefix}{}", s.message()), None)
}

/// `InvalidArgument` -> `invalid_argument`.
fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// An error and its causes, as the CLI prints them (`a: b: c`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

fn usage(message: String) -> Reply {
    error(StatusCode::BAD_REQUEST, "invalid_argument", &message, None)
}

/// The route a path counts under in `/metrics` (unknown paths are one series).
fn route_of(path: &str) -> &'static str {
    const ROUTES: &[&str] = &[
        "/",
        "/assets/app.js",
        "/assets/app.css",
        "/assets/vendor/xterm.js",
        "/assets/vendor/xterm.css",
        "/pair",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/whoami",
        "/api/v1/logout",
        "/api/v1/agents",
        "/api/v1/peers",
        "/api/v1/info",
        "/api/v1/send",
        "/api/v1/start",
        "/api/v1/stop",
        "/api/v1/restart",
        "/api/v1/tail",
        "/api/v1/events",
    ];
    match super::ws::route(path) {
        Some((_, _, false)) => "/api/v1/agents/{host}/{name}/watch",
        Some((_, _, true)) => "/api/v1/agents/{host}/{name}/attach",
        None => ROUTES.iter().find(|r| **r == path).copied().unwrap_or("other"),
    }
}

/// Serve one request.
pub async fn handle(door: Arc<WebDoor>, req: http::Request<Incoming>, peer: SocketAddr) -> Reply {
    let start = Instant::now();
    let route = route_of(req.uri().path());
    let mut reply = route_request(&door, req, peer).await;
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` on its
    // own same-origin POSTs (Fetch: "serialize a request origin"), which the Origin check must
    // refuse; the pairing form and every write of the dashboard then failed. A link's code still
    // never leaves for another origin in a Referer.
    reply.headers_mut().insert("referrer-policy", HeaderValue::from_static("same-origin"));
    reply.headers_mut().insert("x-frame-options", HeaderValue::from_static("DENY"));
    door.node.metrics.web(route, reply.status().as_u16(), start.elapsed());
    reply
}

/// `a=b&c=d` (a query or a form body), percent-decoded, `+` as a space.
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    let decode = |t: &str| {
        let b = t.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn query(req: &http::Request<Incoming>) -> Vec<(String, String)> {
    req.uri().query().map(form_decode).unwrap_or_default()
}

fn one<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn body_bytes(req: http::Request<Incoming>) -> Result<Bytes, Reply> {
    match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("the request body is over {MAX_BODY} bytes"),
            None,
        )),
        Err(e) => {
            Err(error(StatusCode::BAD_REQUEST, "bad_request", &format!("cannot read the request body: {e}"), None))
        }
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(req: http::Request<Incoming>) -> Result<T, Reply> {
    let bytes = body_bytes(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| usage(format!("the request body is not the expected JSON: {e}")))
}

impl WebDoor {
    /// The host names a browser may reach this door by: an IP literal, `localhost`, this
    /// host's name or its mesh DNS name. Any other `Host` (DNS rebinding) is refused.
    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() && !h.ends_with(':') => h,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let me = &self.node.info;
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || name.eq_ignore_ascii_case(me.host.as_str())
            || name.eq_ignore_ascii_case(&fleet_tls::principal::node_dns_name(&me.tenant, &me.host))
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// A state-changing request must come from a page of this door: `Origin` is
    /// `<scheme>://<Host>`.
    pub(super) fn check_origin(&self, req: &http::Request<Incoming>) -> Result<(), String> {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let expected = format!("{}://{host}", self.scheme());
        match req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            None => Err(format!(
                "a request that changes something must carry an Origin header (browsers send one); expected {expected}"
            )),
            Some(o) if o.eq_ignore_ascii_case(&expected) => Ok(()),
            Some(o) => Err(format!("cross-origin request refused: Origin {o} is not this web door ({expected})")),
        }
    }

    /// The session of the request's cookie.
    fn session(&self, req: &http::Request<Incoming>) -> Option<Session> {
        let token = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.to_string())?;
        self.sessions.lock().expect("sessions").check(&token, crate::live::now_ms())
    }

    pub(super) fn audit(
        &self,
        principal: &str,
        peer: &str,
        verb: Verb,
        target: &str,
        outcome: &str,
        detail: Option<&str>,
    ) {
        let ev = fleet_tls::audit::AuditEvent { principal, peer, verb, target, outcome, detail };
        if let Err(e) = self.node.audit.append(&ev) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }

    pub(super) fn principal(&self, label: &str) -> String {
        format!("web:{label}@{}", self.node.info.tenant)
    }
}

/// The verb a state-changing route is audited under.
fn verb_of(path: &str) -> Verb {
    match path {
        "/api/v1/send" => Verb::Send,
        "/api/v1/start" | "/api/v1/restart" => Verb::Start,
        "/api/v1/stop" => Verb::Stop,
        _ => Verb::Pair,
    }
}

async fn route_request(door: &Arc<WebDoor>, req: http::Request<Incoming>, peer: SocketAddr) -> Reply {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    if !door.host_allowed(&host) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "bad_host",
            &format!("Host {host:?} is not a name of this web door: open {}", door.url),
            None,
        );
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let changes = !matches!(method, Method::GET | Method::HEAD);
    // Public: the dashboard's files, the pairing exchange, the API description, the metrics.
    match (&method, path.as_str()) {
        (&Method::GET, p) if asset(p).is_some() => return asset(p).expect("matched"),
        (&Method::GET, "/pair") => return pair_page(&req),
        (&Method::POST, "/pair") => return pair_exchange(door, req, peer).await,
        (&Method::GET, "/api/v1/openapi.json") => return full(StatusCode::OK, "application/json", OPENAPI),
        (&Method::GET, "/metrics") => return metrics(door),
        _ => {}
    }
    if !path.starts_with("/api/v1/") {
        return error(StatusCode::NOT_FOUND, "no_route", &format!("no page {path} (the API is under /api/v1/)"), None);
    }
    let peer_s = peer.to_string();
    let Some(session) = door.session(&req) else {
        if changes {
            door.audit(
                "web:unauthenticated",
                &peer_s,
                verb_of(&path),
                &path,
                fleet_tls::audit::DENIED,
                Some("no session"),
            );
        }
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "not paired: this browser has no session (or it expired or was revoked); run `fleet web pair` on the \
             node's host and open the link it prints",
            None,
        );
    };
    if changes && let Err(why) = door.check_origin(&req) {
        door.audit(
            &door.principal(&session.label),
            &peer_s,
            verb_of(&path),
            &path,
            fleet_tls::audit::DENIED,
            Some(&why),
        );
        return error(StatusCode::FORBIDDEN, "bad_origin", &why, None);
    }
    let caller = WebCaller { label: session.label.clone(), role: session.role, peer: peer_s };
    match (method, path.as_str()) {
        (Method::GET, "/api/v1/whoami") => ok_json(&json!({
            "tenant_id": door.node.info.tenant.as_str(), "host": door.node.info.host.as_str(),
            "principal": door.principal(&session.label), "label": session.label, "role": session.role.as_str(),
            "session_id": session.id, "expires_unix_ms": session.expires_ms,
        })),
        (Method::POST, "/api/v1/logout") => {
            door.sessions.lock().expect("sessions").revoke(&session.id);
            door.audit(&door.principal(&session.label), &caller.peer, Verb::Pair, &session.id, "logged_out", None);
            let mut r = ok_json(
                &json!({"tenant_id": door.node.info.tenant.as_str(), "host": door.node.info.host.as_str(), "logged_out": session.id}),
            );
            r.headers_mut().insert(header::SET_COOKIE, door.cookie("", 0));
            r
        }
        (Method::GET, "/api/v1/agents") => agents(door, &caller, &query(&req)).await,
        (Method::GET, "/api/v1/peers") => {
            match Mesh::list_peers(&svc(door), call(&caller, v1::ListPeersRequest {})).await {
                Ok(r) => ok_json(&Value::Array(r.into_inner().peers.iter().map(json::peer).collect())),
                Err(s) => status_reply(&s),
            }
        }
        (Method::GET, "/api/v1/info") => {
            match Mesh::node_info(&svc(door), call(&caller, v1::NodeInfoRequest {})).await {
                Ok(r) => ok_json(&json::node_info(&r.into_inner())),
                Err(s) => status_reply(&s),
            }
        }
        (Method::GET, "/api/v1/tail") => tail(door, &caller, &query(&req)).await,
        (Method::GET, "/api/v1/events") => events(door, &caller, &req),
        (Method::GET, p) if super::ws::route(p).is_some() => {
            let (host, name, attach) = super::ws::route(p).expect("matched");
            let (host, name) = (host.to_string(), name.to_string());
            super::ws::pane(door, caller, req, &host, &name, attach).await
        }
        (Method::POST, "/api/v1/send") => match json_body(req).await {
            Ok(b) => send(door, &caller, b).await,
            Err(r) => r,
        },
        (Method::POST, p @ ("/api/v1/start" | "/api/v1/stop" | "/api/v1/restart")) => {
            let p = p.to_string();
            match json_body(req).await {
                Ok(b) => lifecycle(door, &caller, &p, b).await,
                Err(r) => r,
            }
        }
        (m, p) => {
            error(StatusCode::NOT_FOUND, "no_route", &format!("no route {m} {p} (see /api/v1/openapi.json)"), None)
        }
    }
}

pub(super) fn svc(door: &WebDoor) -> NodeService {
    NodeService(door.node.clone())
}

/// A request into the node's own services, as the browser's principal.
pub(super) fn call<T>(caller: &WebCaller, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.extensions_mut().insert(caller.clone());
    r
}

impl WebDoor {
    /// The session cookie (`max_age` 0 clears it).
    fn cookie(&self, token: &str, max_age_s: i64) -> HeaderValue {
        let secure = if self.tls { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            max_age_s.max(0)
        ))
        .expect("a cookie of hex digits")
    }
}

/// The dashboard's files, built into the binary (nothing is fetched at run time): the page,
/// its script and style, and the vendored terminal emulator (assets/vendor/VERSIONS).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("assets/index.html")),
    ("/assets/app.js", "text/javascript; charset=utf-8", include_bytes!("assets/app.js")),
    ("/assets/app.css", "text/css; charset=utf-8", include_bytes!("assets/app.css")),
    ("/assets/vendor/xterm.js", "text/javascript; charset=utf-8", include_bytes!("assets/vendor/xterm.js")),
    ("/assets/vendor/xterm.css", "text/css; charset=utf-8", include_bytes!("assets/vendor/xterm.css")),
];

/// The page's own scripts and styles only; xterm.js sets styles of its own elements.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(path: &str) -> Option<Reply> {
    let (_, kind, body) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    let mut r = full(StatusCode::OK, kind, Bytes::from_static(body));
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    Some(r)
}

/// The pairing link: a page whose form posts the code (a script submits it at once), so a
/// link preview that fetches the URL does not use the code up.
fn pair_page(req: &http::Request<Incoming>) -> Reply {
    let q = query(req);
    let code: String = one(&q, "code").unwrap_or("").chars().filter(char::is_ascii_hexdigit).collect();
    full(
        StatusCode::OK,
        "text/html; charset=utf-8",
        format!(
            "<!doctype html><meta charset=utf-8><title>fleet: pair this browser</title>\
             <form method=post action=/pair><input type=hidden name=code value=\"{code}\">\
             <button type=submit>Pair this browser</button></form>\
             <script>document.forms[0].submit()</script>"
        ),
    )
}

async fn pair_exchange(door: &Arc<WebDoor>, req: http::Request<Incoming>, peer: SocketAddr) -> Reply {
    let peer = peer.to_string();
    if let Err(why) = door.check_origin(&req) {
        door.audit("web:unpaired", &peer, Verb::Pair, "/pair", fleet_tls::audit::DENIED, Some(&why));
        return error(StatusCode::FORBIDDEN, "bad_origin", &why, None);
    }
    let body = match body_bytes(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let form = form_decode(&String::from_utf8_lossy(&body));
    let code = one(&form, "code").unwrap_or("");
    let now = crate::live::now_ms();
    let redeemed = door.sessions.lock().expect("sessions").redeem(code, now);
    match redeemed {
        Ok((token, s)) => {
            door.audit(&door.principal(&s.label), &peer, Verb::Pair, &s.id, "paired", Some(s.role.as_str()));
            let mut r = full(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "paired\n");
            r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
            r.headers_mut().insert(header::SET_COOKIE, door.cookie(&token, (s.expires_ms - now) / 1000));
            r
        }
        Err(e) => {
            door.audit("web:unpaired", &peer, Verb::Pair, "/pair", fleet_tls::audit::DENIED, Some(&e.to_string()));
            error(StatusCode::FORBIDDEN, "pairing_refused", &e.to_string(), None)
        }
    }
}

fn metrics(door: &WebDoor) -> Reply {
    use crate::metrics::{counter, gauge};
    use fleet_tls::net::Refusal;
    let node = &door.node;
    let mut out = String::new();
    let members = node.members.counts();
    gauge(
        &mut out,
        "fleet_peers",
        "Members this node knows (not itself), by state.",
        &[
            ("state=\"alive\"".into(), f64::from(members.alive)),
            ("state=\"suspect\"".into(), f64::from(members.suspect)),
            ("state=\"down\"".into(), f64::from(members.total - members.alive - members.suspect)),
        ],
    );
    let view = node.live.current();
    let lag = view.agents.iter().filter_map(|a| a.heartbeat.age_seconds).max().map(|s| s.max(0) as f64);
    gauge(
        &mut out,
        "fleet_heartbeat_lag_seconds",
        "The oldest last heartbeat among this host's agents that have one, seconds.",
        &lag.map(|l| vec![(String::new(), l)]).unwrap_or_default(),
    );
    let mut by_health = std::collections::BTreeMap::<&str, f64>::new();
    for a in &view.agents {
        *by_health.entry(a.heartbeat.health.as_str()).or_default() += 1.0;
    }
    let health: Vec<(String, f64)> = by_health.into_iter().map(|(h, n)| (format!("health=\"{h}\""), n)).collect();
    gauge(&mut out, "fleet_agents", "This host's agents, by heartbeat health.", &health);
    let refused: Vec<(String, f64)> = [
        ("failed", Refusal::Failed),
        ("timed_out", Refusal::TimedOut),
        ("shed", Refusal::Shed),
        ("no_client_cert", Refusal::NoClientCert),
        ("bad_client_cert", Refusal::BadClientCert),
    ]
    .into_iter()
    .map(|(n, r)| (format!("reason=\"{n}\""), node.tls_refusals.count(r) as f64))
    .collect();
    counter(&mut out, "fleet_tls_handshakes_refused_total", "TLS handshakes refused on the network door.", &refused);
    counter(
        &mut out,
        "fleet_audit_write_failures_total",
        "Audit log lines that could not be written.",
        &[(String::new(), node.audit.failures() as f64)],
    );
    counter(
        &mut out,
        "fleet_membership_refused_claims_total",
        "SWIM identities refused: a datagram's false sender claim, a gossiped or synced member that is not believable.",
        &[(String::new(), node.members.refused_claims() as f64)],
    );
    let sync = node.members.sync_stats();
    counter(
        &mut out,
        "fleet_membership_syncs_total",
        "Full membership syncs: began (and succeeded), failed, answered (for a peer).",
        &[
            ("outcome=\"began\"".to_string(), sync.began as f64),
            ("outcome=\"failed\"".to_string(), sync.failed as f64),
            ("outcome=\"answered\"".to_string(), sync.answered as f64),
        ],
    );
    counter(
        &mut out,
        "fleet_membership_sync_bytes_total",
        "Full membership sync stream bytes, received and sent.",
        &[
            ("direction=\"in\"".to_string(), sync.bytes_in as f64),
            ("direction=\"out\"".to_string(), sync.bytes_out as f64),
        ],
    );
    let sessions = door.sessions.lock().expect("sessions").list(crate::live::now_ms()).len();
    gauge(&mut out, "fleet_web_sessions", "Live browser sessions.", &[(String::new(), sessions as f64)]);
    node.metrics.render(&mut out);
    full(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", out)
}

async fn agents(door: &WebDoor, caller: &WebCaller, q: &[(String, String)]) -> Reply {
    let scope = match one(q, "scope").unwrap_or("mesh") {
        "mesh" => v1::Scope::Mesh,
        "local" => v1::Scope::Local,
        other => return usage(format!("scope {other:?}: expected mesh or local")),
    };
    let deadline_ms = match one(q, "deadline_ms").map(str::parse::<u32>).transpose() {
        Ok(d) => d.unwrap_or(0),
        Err(_) => return usage("deadline_ms: expected a whole number of milliseconds".into()),
    };
    let hosts = q.iter().filter(|(k, _)| k == "host").map(|(_, v)| v.clone()).collect();
    let req = v1::ListAgentsRequest { scope: scope as i32, hosts, deadline_ms, fresh: false };
    match Fleet::list_agents(&svc(door), call(caller, req)).await {
        Ok(r) => {
            let r = r.into_inner().into_decoded();
            let agents: Vec<_> = r.agents.into_iter().map(fleet_core::record::AgentRecord::from).collect();
            let hosts: Vec<_> = r.hosts.into_iter().map(fleet_core::record::HostStatus::from).collect();
            ok_json(&Value::Array(json::rows(&agents, &hosts)))
        }
        Err(s) => status_reply(&s),
    }
}

fn target(s: &str) -> Result<AgentAddr, Reply> {
    s.parse::<AgentAddr>().map_err(|e| usage(chain(&e)))
}

async fn tail(door: &WebDoor, caller: &WebCaller, q: &[(String, String)]) -> Reply {
    let Some(t) = one(q, "target") else { return usage("target: required (AGENT or AGENT@HOST)".into()) };
    let addr = match target(t) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let max = fleet_tmux::tail::MAX_LINES;
    let lines = match one(q, "lines").map(str::parse::<u32>).transpose() {
        Ok(None) => fleet_tmux::tail::DEFAULT_LINES,
        Ok(Some(n)) if (1..=max).contains(&n) => n,
        _ => return usage(format!("lines: expected a whole number in 1..={max}")),
    };
    let req = v1::TailRequest {
        tenant_id: String::new(),
        host: addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.agent.to_string(),
        lines,
        ansi: matches!(one(q, "ansi"), Some("1" | "true")),
    };
    match Fleet::tail_pane(&svc(door), call(caller, req)).await {
        Ok(r) => ok_json(&json::tail(&r.into_inner())),
        Err(s) => status_reply(&s),
    }
}

/// `POST /api/v1/send`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    target: String,
    text: String,
    #[serde(default)]
    verify: bool,
    verify_timeout_ms: Option<u32>,
    from: Option<String>,
    #[serde(default)]
    unmanaged: bool,
    #[serde(default)]
    when_idle: bool,
    wait_timeout_s: Option<u32>,
    idempotency_key: Option<String>,
}

async fn send(door: &WebDoor, caller: &WebCaller, b: SendBody) -> Reply {
    // The CLI's checks, in its order, with its words.
    let addr = match target(&b.target) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let from = b.from.unwrap_or_else(|| caller.label.clone());
    if let Err(e) = fleet_core::names::check_agent_chars("source label", &from) {
        return usage(format!("from: {e}"));
    }
    if let Err(e) = fleet_core::message::prepare_text(&b.text) {
        return usage(chain(&e));
    }
    let key = b.idempotency_key.unwrap_or_else(|| {
        let mut r = [0u8; 12];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r);
        r.iter().map(|b| format!("{b:02x}")).collect()
    });
    let req = v1::SendRequest {
        tenant_id: String::new(),
        host: addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.agent.to_string(),
        text: b.text,
        source_host: String::new(),
        source_label: from,
        unmanaged: b.unmanaged,
        verify: b.verify,
        verify_timeout_ms: b.verify_timeout_ms.unwrap_or(6000),
        idempotency_key: key,
        when_idle: b.when_idle,
        wait_timeout_ms: b.wait_timeout_s.unwrap_or(600).saturating_mul(1000).max(1),
    };
    let receipt = match Fleet::send_message(&svc(door), call(caller, req)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return status_reply(&s),
    };
    let outcome = v1::DeliveryOutcome::try_from(receipt.outcome).unwrap_or(v1::DeliveryOutcome::Unspecified);
    let body = json::receipt(&receipt);
    match outcome {
        v1::DeliveryOutcome::Delivered | v1::DeliveryOutcome::Accepted => ok_json(&body),
        v1::DeliveryOutcome::NotFound => {
            error(StatusCode::NOT_FOUND, "not_found", &receipt.detail, Some(("receipt", body)))
        }
        _ => {
            let word = fleet_proto::convert::outcome_word(outcome);
            let message =
                format!("{word}: {}@{} ({}, {} ms)", receipt.agent, receipt.host, receipt.detail, receipt.elapsed_ms);
            error(StatusCode::UNPROCESSABLE_ENTITY, word, &message, Some(("receipt", body)))
        }
    }
}

/// `POST /api/v1/start|stop|restart`: one agent (`target`) or every agent of a host (`all`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleBody {
    target: Option<String>,
    host: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn lifecycle(door: &WebDoor, caller: &WebCaller, path: &str, b: LifecycleBody) -> Reply {
    let (host, agent) = match (&b.target, b.all) {
        (Some(t), false) => match target(t) {
            Ok(a) => (a.host.map(|h| h.to_string()).unwrap_or_default(), a.agent.to_string()),
            Err(r) => return r,
        },
        (None, true) => (b.host.clone().unwrap_or_default(), String::new()),
        _ => return usage("give either target (AGENT or AGENT@HOST) or all: true (with host)".into()),
    };
    let req = v1::LifecycleRequest { tenant_id: String::new(), host, agent, all: b.all };
    let s = svc(door);
    let mut results = Vec::new();
    if path != "/api/v1/start" {
        match Fleet::stop_agent(&s, call(caller, req.clone())).await {
            Ok(r) => results = r.into_inner().results,
            Err(st) => return status_reply(&st),
        }
    }
    if path != "/api/v1/stop" {
        match Fleet::start_agent(&s, call(caller, req)).await {
            Ok(r) => {
                // For restart, the start's outcome, or the stop's failure (as the CLI shows).
                results.retain(|r| r.outcome == v1::LifecycleOutcome::Failed as i32);
                results.extend(r.into_inner().results);
            }
            Err(st) => return status_reply(&st),
        }
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.outcome == v1::LifecycleOutcome::Failed as i32)
        .map(|r| format!("{}@{}: failed: {}", r.agent, r.host, r.detail))
        .collect();
    let body = Value::Array(results.iter().map(json::lifecycle).collect());
    if failed.is_empty() {
        ok_json(&body)
    } else {
        error(StatusCode::UNPROCESSABLE_ENTITY, "failed", &failed.join("; "), Some(("results", body)))
    }
}

/// One SSE message.
fn sse(id: Option<&str>, name: &str, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 48);
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    s.push_str("event: ");
    s.push_str(name);
    s.push_str("\ndata: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// `GET /api/v1/events`: the event stream as Server-Sent Events.
fn events(door: &Arc<WebDoor>, caller: &WebCaller, req: &http::Request<Incoming>) -> Reply {
    // Watching is a read; the node's own check decides (and audits a denial).
    if let Err(s) = door.node.authorize(&call(caller, ()), Verb::Watch, "") {
        return status_reply(&s);
    }
    let q = query(req);
    let hosts: Vec<String> = q.iter().filter(|(k, _)| k == "host").map(|(_, v)| v.clone()).collect();
    let last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| one(&q, "last_event_id").map(str::to_string));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let door = door.clone();
    // While this stream lasts, every peer's events come from its feed (milliseconds).
    let watching = door.node.peers.watch_mesh();
    tokio::spawn(async move {
        let _watching = watching;
        let want = |h: &str| hosts.is_empty() || hosts.iter().any(|x| x.eq_ignore_ascii_case(h));
        let j = &door.journal;
        let (tenant, host) = (door.node.info.tenant.to_string(), door.node.info.host.to_string());
        // Subscribed before anything is read, so nothing falls between the catch-up and the live events.
        j.arm();
        let mut live = j.tx.subscribe();
        let snapshot = |last: u64| {
            let mut out: Vec<Bytes> = door
                .node
                .snapshot_events(true)
                .iter()
                .filter(|e| want(&e.host))
                .map(|e| sse(None, e.short(), &serde_json::to_string(e).expect("events serialize")))
                .collect();
            let end = json!({"tenant_id": tenant, "host": host, "event": "snapshot_end"});
            out.push(sse(Some(&j.id(last)), "snapshot_end", &end.to_string()));
            out
        };
        let lagged = |dropped: Option<u64>, reason: &str| {
            let e = crate::live::host_event(
                &tenant,
                &host,
                fleet_core::event::EventKind::Lagged { dropped: dropped.unwrap_or(0) },
            );
            let mut v = serde_json::to_value(&e).expect("events serialize");
            v["dropped_known"] = json!(dropped.is_some());
            v["reason"] = json!(format!("{reason}; a fresh snapshot follows"));
            sse(None, "lagged", &v.to_string())
        };
        let mut sent = j.last();
        let first: Vec<Bytes> = match j.resume(last_id.as_deref()) {
            Resume::Fresh => snapshot(sent),
            Resume::Replay(entries) => {
                let out = entries
                    .iter()
                    .filter(|e| want(&e.host))
                    .map(|e| sse(Some(&j.id(e.seq)), e.name, &e.json))
                    .collect();
                sent = entries.last().map_or(sent, |e| e.seq.max(sent));
                out
            }
            Resume::Gone { dropped, reason } => {
                let mut out = vec![lagged(dropped, &reason)];
                out.extend(snapshot(sent));
                out
            }
        };
        for b in first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let cancel = door.node.cancel.clone();
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return,
                () = tx.closed() => return,
                () = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() { return }
                    continue;
                }
                e = live.recv() => e,
            };
            let out = match next {
                Ok(e) if e.seq > sent => {
                    sent = e.seq;
                    if !want(&e.host) {
                        continue;
                    }
                    vec![sse(Some(&j.id(e.seq)), e.name, &e.json)]
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    sent = j.last();
                    let mut out = vec![lagged(Some(n), "this stream fell behind the node's events")];
                    out.extend(snapshot(sent));
                    out
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for b in out {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut r = http::Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_decode("code=ab%2Fc&x=a+b&y"),
            [("code".to_string(), "ab/c".to_string()), ("x".into(), "a b".into()), ("y".into(), String::new())]
        );
        assert_eq!(form_decode("a=%zz&b=%4"), [("a".to_string(), "%zz".to_string()), ("b".into(), "%4".into())]);
        assert_eq!(form_decode("a=%41"), [("a".to_string(), "A".to_string())]);
    }

    #[test]
    fn codes_are_snake_case() {
        assert_eq!(snake("InvalidArgument"), "invalid_argument");
        assert_eq!(snake("NotFound"), "not_found");
    }
}
