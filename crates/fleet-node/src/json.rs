//! The `--json` contract (docs/protocol.md): the objects the CLI prints and the web door
//! serves, built in one place so the two cannot drift. snake_case keys, `tenant_id` and
//! `host` on every object.

use fleet_core::record::{AgentRecord, HostStatus};
use fleet_proto::v1;
use serde_json::{Value, json};

/// One object of `fleet ps --json`: `"record": "agent"` or `"record": "host"`.
#[derive(serde::Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Row<'a> {
    Agent(&'a AgentRecord),
    Host(&'a HostStatus),
}

/// The agent rows, then the host rows (`fleet ps --json` writes the same [`Row`]s to its
/// stdout as they come, without a value per row).
pub fn rows(agents: &[AgentRecord], hosts: &[HostStatus]) -> Vec<Value> {
    let rows = agents.iter().map(Row::Agent).chain(hosts.iter().map(Row::Host));
    rows.map(|r| serde_json::to_value(r).expect("rows serialize")).collect()
}

/// A receipt of `fleet send --json`.
pub fn receipt(r: &v1::SendReceipt) -> Value {
    json!({
        "tenant_id": r.tenant_id, "host": r.host, "agent": r.agent,
        "outcome": fleet_proto::convert::outcome_word_of(r.outcome), "detail": r.detail, "elapsed_ms": r.elapsed_ms,
        "idempotency_key": r.idempotency_key, "duplicate": r.duplicate,
        "waited_ms": r.waited_ms, "queue_id": r.queue_id,
    })
}

/// One message of `fleet queue --json` (`"record": "message"`; host rows are `fleet ps --json`'s).
pub fn queued(m: &v1::QueuedMessage) -> Value {
    json!({
        "record": "message", "tenant_id": m.tenant_id, "host": m.host, "id": m.id, "agent": m.agent,
        "state": m.state, "seq": m.seq, "created_unix_ms": m.created_unix_ms, "expires_unix_ms": m.expires_unix_ms,
        "finished_unix_ms": m.finished_unix_ms, "source": m.source, "preview": m.preview, "bytes": m.bytes,
        "attempts": m.attempts, "detail": m.detail,
    })
}

/// `LIFECYCLE_OUTCOME_STARTED` -> `started`.
pub fn lifecycle_outcome(outcome: i32) -> String {
    v1::LifecycleOutcome::try_from(outcome)
        .map(|o| o.as_str_name().trim_start_matches("LIFECYCLE_OUTCOME_").to_ascii_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

/// One result of `fleet start|stop|restart --json`.
pub fn lifecycle(r: &v1::LifecycleResult) -> Value {
    json!({
        "tenant_id": r.tenant_id, "host": r.host, "agent": r.agent, "outcome": lifecycle_outcome(r.outcome),
        "detail": r.detail,
    })
}

/// `fleet tail --json`.
pub fn tail(t: &v1::TailResponse) -> Value {
    json!({
        "tenant_id": t.tenant_id, "host": t.host, "agent": t.agent, "lines": t.lines,
        "pane_width": t.pane_width, "pane_height": t.pane_height,
        "captured_unix_ms": t.captured_unix_ms,
    })
}

/// One row of `fleet peers --json`.
pub fn peer(p: &v1::Peer) -> Value {
    let name = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_ascii_lowercase();
    let state = v1::PeerState::try_from(p.state).map(|s| name(s.as_str_name(), "PEER_STATE_")).unwrap_or_default();
    let found = v1::Discovery::try_from(p.found_by).map(|d| name(d.as_str_name(), "DISCOVERY_")).unwrap_or_default();
    json!({
        "tenant_id": p.tenant_id, "host": p.host, "grpc_address": p.grpc_address, "quic_address": p.quic_address,
        "state": state, "incarnation": p.incarnation, "generation": p.generation, "found_by": found,
        "last_seen_unix_ms": p.last_seen_unix_ms,
    })
}

/// A node's certificate (`Certs.CertStatus`), every field under its proto name but the
/// host's names (the peer row that holds it has them).
pub fn host_cert(c: &v1::HostCert) -> Value {
    json!({
        "principal": c.principal, "state": c.state, "not_before_unix_ms": c.not_before_unix_ms,
        "not_after_unix_ms": c.not_after_unix_ms, "renew_at_unix_ms": c.renew_at_unix_ms,
        "renew_error": c.renew_error, "last_renewed_unix_ms": c.last_renewed_unix_ms, "can_sign": c.can_sign,
        "crl_number": c.crl_number, "problem": c.problem,
    })
}

/// The node's own identity and counters (`Mesh.NodeInfo`), every field under its proto name.
pub fn node_info(i: &v1::NodeInfoResponse) -> Value {
    json!({
        "tenant_id": i.tenant_id, "host": i.host, "version": i.version, "generation": i.generation,
        "grpc_address": i.grpc_address, "mesh_fingerprint": i.mesh_fingerprint,
        "started_unix_ms": i.started_unix_ms, "members": i.members, "members_alive": i.members_alive,
        "members_suspect": i.members_suspect,
        "audit_write_failures": i.audit_write_failures, "web_url": i.web_url,
    })
}
