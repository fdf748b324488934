//! The gRPC `Web` service behind `fleet web pair` and `fleet web sessions`: pairing links and
//! sessions of this node's web door, for its operators (the `pair` verb) and the local door.

use super::WebDoor;
use super::sessions::{Role, Session};
use crate::service::Node;
use fleet_proto::v1::{self, web_server::Web};
use fleet_tls::Verb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// How long a pairing link lasts by default, and at most.
const LINK_TTL_MS: u32 = 10 * 60 * 1000;
const LINK_TTL_MAX_MS: u32 = 24 * 3600 * 1000;
/// How long a session lasts by default, and at most.
const SESSION_TTL_S: u32 = 12 * 3600;
const SESSION_TTL_MAX_S: u32 = 30 * 24 * 3600;

#[derive(Clone)]
pub struct WebAdmin {
    pub node: Arc<Node>,
    /// `None` when the web door is off.
    pub door: Option<Arc<WebDoor>>,
}

impl WebAdmin {
    fn door(&self) -> Result<&Arc<WebDoor>, Status> {
        self.door.as_ref().ok_or_else(|| {
            Status::failed_precondition(format!(
                "the web door of {} is off (web: false in node.yaml, FLEET_WEB, or its default address was taken: see \
                 the node's log); turn it on and restart the node",
                self.node.info.host
            ))
        })
    }

    fn row(&self, s: &Session) -> v1::WebSession {
        v1::WebSession {
            tenant_id: self.node.info.tenant.to_string(),
            host: self.node.info.host.to_string(),
            id: s.id.clone(),
            label: s.label.clone(),
            role: wire_role(s.role) as i32,
            created_unix_ms: s.created_ms,
            expires_unix_ms: s.expires_ms,
            last_used_unix_ms: s.last_used_ms,
        }
    }
}

fn wire_role(r: Role) -> v1::WebRole {
    match r {
        Role::Viewer => v1::WebRole::Viewer,
        Role::Operator => v1::WebRole::Operator,
    }
}

#[tonic::async_trait]
impl Web for WebAdmin {
    async fn pair(&self, request: Request<v1::PairRequest>) -> Result<Response<v1::PairResponse>, Status> {
        let label = request.get_ref().label.clone();
        let caller = self.node.authorize(&request, Verb::Pair, &format!("web:{label}"))?;
        let door = self.door()?;
        let req = request.into_inner();
        fleet_core::names::check_agent_chars("label", &req.label)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let role = match v1::WebRole::try_from(req.role) {
            Ok(v1::WebRole::Operator) => Role::Operator,
            Ok(v1::WebRole::Viewer | v1::WebRole::Unspecified) => Role::Viewer,
            Err(_) => return Err(Status::invalid_argument(format!("unknown role {}", req.role))),
        };
        let link_ttl = if req.link_ttl_ms == 0 { LINK_TTL_MS } else { req.link_ttl_ms };
        if link_ttl > LINK_TTL_MAX_MS {
            return Err(Status::invalid_argument("a pairing link may last at most 24 h: give a shorter --ttl"));
        }
        let session_ttl = if req.session_ttl_s == 0 { SESSION_TTL_S } else { req.session_ttl_s };
        if session_ttl > SESSION_TTL_MAX_S {
            return Err(Status::invalid_argument("a session may last at most 30 days: give a shorter --session-ttl"));
        }
        let now = crate::live::now_ms();
        let code = door.sessions.lock().expect("sessions").pair(
            role,
            &req.label,
            i64::from(link_ttl),
            i64::from(session_ttl) * 1000,
            now,
        );
        self.node.audit(&caller, Verb::Pair, &format!("web:{}", req.label), "link_issued", Some(role.as_str()));
        Ok(Response::new(v1::PairResponse {
            tenant_id: self.node.info.tenant.to_string(),
            host: self.node.info.host.to_string(),
            url: format!("{}/pair?code={code}", door.url),
            expires_unix_ms: now + i64::from(link_ttl),
            label: req.label,
            role: wire_role(role) as i32,
        }))
    }

    async fn list_web_sessions(
        &self,
        request: Request<v1::ListWebSessionsRequest>,
    ) -> Result<Response<v1::ListWebSessionsResponse>, Status> {
        // Listing shows who holds a session: the same right as issuing one.
        self.node.authorize(&request, Verb::Pair, "sessions")?;
        let door = self.door()?;
        let sessions = door.sessions.lock().expect("sessions").list(crate::live::now_ms());
        Ok(Response::new(v1::ListWebSessionsResponse { sessions: sessions.iter().map(|s| self.row(s)).collect() }))
    }

    async fn revoke_web_session(
        &self,
        request: Request<v1::RevokeWebSessionRequest>,
    ) -> Result<Response<v1::RevokeWebSessionResponse>, Status> {
        let what = request.get_ref().id_or_label.clone();
        let caller = self.node.authorize(&request, Verb::Pair, &what)?;
        let door = self.door()?;
        let gone = door.sessions.lock().expect("sessions").revoke(&what);
        if gone.is_empty() {
            let known: Vec<String> = door
                .sessions
                .lock()
                .expect("sessions")
                .list(crate::live::now_ms())
                .iter()
                .map(|s| format!("{} ({})", s.id, s.label))
                .collect();
            return Err(Status::not_found(format!(
                "no web session with id or label {what} (sessions: {})",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )));
        }
        for s in &gone {
            self.node.audit(&caller, Verb::Pair, &format!("web:{}", s.label), "revoked", Some(&s.id));
        }
        Ok(Response::new(v1::RevokeWebSessionResponse { revoked: gone.iter().map(|s| self.row(s)).collect() }))
    }
}
