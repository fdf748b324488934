//! `ListAgentsResponse` written by hand, so that a node can answer a mesh listing with the
//! rows it keeps of its peers already encoded.
//!
//! A node keeps a copy of every peer host's agent rows (fleet-node's replicated view) and
//! answers `ListAgents(MESH)` from them. Cloning those rows, converting them and encoding
//! them again on every call was most of a node's work for a listing of 100 hosts. So a copy
//! is kept encoded ([`AgentCopy`]), and an answer carries it as bytes ([`EncodedAgents`]),
//! written straight into the response after its decoded `agents`.
//!
//! On the wire nothing changes: [`ListAgentsResponse`] is the message of
//! `proto/fleet/v1/fleet.proto`, its pre-encoded rows are `agents` fields like the others,
//! and a decoder (this one, or any client's) puts every row into `agents`. Only a response
//! built in the node may hold rows in [`ListAgentsResponse::encoded_agents`];
//! [`ListAgentsResponse::into_decoded`] moves them into `agents`.
//!
//! Two fields of a copied row grow while the copy ages (the idle time and the heartbeat's
//! age, [`AgentCopy::write`]), so a copied row is kept in two parts that leave them out, and
//! they are written after those parts: protobuf lets a message's fields come in any order.

use crate::v1;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

const AGENTS: u32 = 1;
const HOSTS: u32 = 2;
const STATE_GENERATION: u32 = 3;
const STATE_VERSION: u32 = 4;
/// `Agent.idle_seconds`, `Agent.heartbeat` and `HeartbeatState.age_seconds`.
const IDLE_SECONDS: u32 = 11;
const HEARTBEAT: u32 = 13;
const AGE_SECONDS: u32 = 2;

/// `fleet.v1.ListAgentsResponse` (see the proto for its fields).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListAgentsResponse {
    pub agents: Vec<v1::Agent>,
    pub hosts: Vec<v1::HostStatus>,
    pub state_generation: u64,
    pub state_version: u64,
    /// More agent rows, already encoded, sent after `agents`. Empty in a decoded response.
    pub encoded_agents: EncodedAgents,
}

impl ListAgentsResponse {
    /// The response with its encoded rows decoded into `agents` (after the others, as on the
    /// wire): what a client would receive.
    pub fn into_decoded(mut self) -> ListAgentsResponse {
        let encoded = std::mem::take(&mut self.encoded_agents);
        self.agents.extend(encoded.decode());
        self
    }
}

impl Message for ListAgentsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::message::encode_repeated(AGENTS, &self.agents, buf);
        buf.put_slice(&self.encoded_agents.bytes);
        encoding::message::encode_repeated(HOSTS, &self.hosts, buf);
        if self.state_generation != 0 {
            encoding::uint64::encode(STATE_GENERATION, &self.state_generation, buf);
        }
        if self.state_version != 0 {
            encoding::uint64::encode(STATE_VERSION, &self.state_version, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            AGENTS => encoding::message::merge_repeated(wire_type, &mut self.agents, buf, ctx),
            HOSTS => encoding::message::merge_repeated(wire_type, &mut self.hosts, buf, ctx),
            STATE_GENERATION => encoding::uint64::merge(wire_type, &mut self.state_generation, buf, ctx),
            STATE_VERSION => encoding::uint64::merge(wire_type, &mut self.state_version, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let scalar = |tag, v: &u64| if *v != 0 { encoding::uint64::encoded_len(tag, v) } else { 0 };
        encoding::message::encoded_len_repeated(AGENTS, &self.agents)
            + self.encoded_agents.bytes.len()
            + encoding::message::encoded_len_repeated(HOSTS, &self.hosts)
            + scalar(STATE_GENERATION, &self.state_generation)
            + scalar(STATE_VERSION, &self.state_version)
    }

    fn clear(&mut self) {
        *self = ListAgentsResponse::default();
    }
}

/// Agent rows encoded as `agents` fields of a [`ListAgentsResponse`] (key, length, `Agent`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedAgents {
    bytes: Vec<u8>,
    count: usize,
}

impl EncodedAgents {
    pub fn push(&mut self, agent: &v1::Agent) {
        encoding::message::encode(AGENTS, agent, &mut self.bytes);
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The rows, decoded.
    pub fn decode(&self) -> Vec<v1::Agent> {
        ListAgentsResponse::decode(&self.bytes[..]).expect("rows this type encoded decode").agents
    }
}

/// A peer host's agent rows as a node keeps them: encoded once, written into any number of
/// answers with their idle time and heartbeat age grown ([`AgentCopy::write`]). Measured at
/// 700-1,000 bytes a row less than the rows as records (docs/benchmarks.md, "Eleventh pass").
#[derive(Clone, Debug, Default)]
pub struct AgentCopy {
    /// Every row's two parts, one after the other.
    bytes: Vec<u8>,
    rows: Vec<CopiedRow>,
}

#[derive(Clone, Debug)]
struct CopiedRow {
    name: Box<str>,
    /// The `Agent` without `idle_seconds` and `heartbeat`: `bytes[at..at + agent]`.
    at: usize,
    agent: u32,
    /// The `HeartbeatState` without `age_seconds`, right after (`None`: the row has none).
    heartbeat: Option<u32>,
    idle_seconds: Option<u64>,
    age_seconds: Option<i64>,
}

impl AgentCopy {
    pub fn new(agents: impl IntoIterator<Item = v1::Agent>) -> AgentCopy {
        let mut copy = AgentCopy::default();
        for mut a in agents {
            let idle_seconds = a.idle_seconds.take();
            let mut heartbeat = a.heartbeat.take();
            let age_seconds = heartbeat.as_mut().and_then(|h| h.age_seconds.take());
            let at = copy.bytes.len();
            a.encode_raw(&mut copy.bytes);
            let agent = (copy.bytes.len() - at) as u32;
            let heartbeat = heartbeat.map(|h| {
                h.encode_raw(&mut copy.bytes);
                (copy.bytes.len() - at) as u32 - agent
            });
            let name = std::mem::take(&mut a.name).into_boxed_str();
            copy.rows.push(CopiedRow { name, at, agent, heartbeat, idle_seconds, age_seconds });
        }
        copy.bytes.shrink_to_fit();
        copy.rows.shrink_to_fit();
        copy
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Append every row to `out`, its idle time and heartbeat age (those it has) grown by
    /// `grown` seconds.
    pub fn write(&self, grown: u64, out: &mut EncodedAgents) {
        for r in &self.rows {
            self.write_row(r, grown, &mut out.bytes);
        }
        out.count += self.rows.len();
    }

    fn write_row(&self, r: &CopiedRow, grown: u64, buf: &mut Vec<u8>) {
        let idle = r.idle_seconds.map(|s| s.saturating_add(grown));
        let age = r.age_seconds.map(|s| s.saturating_add(grown as i64));
        let agent = &self.bytes[r.at..r.at + r.agent as usize];
        let heartbeat = r.heartbeat.map(|len| {
            let from = r.at + r.agent as usize;
            &self.bytes[from..from + len as usize]
        });
        let heartbeat_len =
            heartbeat.map(|h| h.len() + age.map_or(0, |a| encoding::int64::encoded_len(AGE_SECONDS, &a)));
        let len = agent.len()
            + idle.map_or(0, |s| encoding::uint64::encoded_len(IDLE_SECONDS, &s))
            + heartbeat_len.map_or(0, |l| encoding::key_len(HEARTBEAT) + encoding::encoded_len_varint(l as u64) + l);
        encoding::encode_key(AGENTS, WireType::LengthDelimited, buf);
        encoding::encode_varint(len as u64, buf);
        buf.put_slice(agent);
        if let Some(s) = idle {
            encoding::uint64::encode(IDLE_SECONDS, &s, buf);
        }
        if let (Some(h), Some(l)) = (heartbeat, heartbeat_len) {
            encoding::encode_key(HEARTBEAT, WireType::LengthDelimited, buf);
            encoding::encode_varint(l as u64, buf);
            buf.put_slice(h);
            if let Some(a) = age {
                encoding::int64::encode(AGE_SECONDS, &a, buf);
            }
        }
    }

    /// The row of agent `name`, decoded.
    pub fn get(&self, name: &str) -> Option<v1::Agent> {
        let r = self.rows.iter().find(|r| &*r.name == name)?;
        let mut buf = Vec::new();
        self.write_row(r, 0, &mut buf);
        ListAgentsResponse::decode(&buf[..]).expect("a row this type encoded decodes").agents.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, idle: Option<u64>, age: Option<i64>) -> v1::Agent {
        v1::Agent {
            tenant_id: "acme".into(),
            host: "dragon-lin".into(),
            name: name.into(),
            class: "worker".into(),
            runtime: "claude".into(),
            managed: true,
            systemd: Some(v1::SystemdState { available: true, ..Default::default() }),
            pane: v1::PaneState::Alive as i32,
            pane_pid: Some(4242),
            current_command: "node".into(),
            idle_seconds: idle,
            in_copy_mode: true,
            heartbeat: Some(v1::HeartbeatState {
                health: v1::Health::Stale as i32,
                age_seconds: age,
                ts: "2026-12-03T14:00:00Z".into(),
                pid: Some(7),
                status: "busy".into(),
                reason: String::new(),
                interval_seconds: 30,
            }),
            drift: true,
            boot_enable: false,
            socket: "fleet".into(),
            activity: Some(v1::Activity {
                detail: "its prompt".into(),
                since_unix_ms: 1_796_000_000_000,
                ..Default::default()
            }),
        }
    }

    /// Every row of `copy`, decoded, as it was given.
    fn decoded(copy: &AgentCopy) -> Vec<v1::Agent> {
        let mut out = EncodedAgents::default();
        copy.write(0, &mut out);
        out.decode()
    }

    fn rows() -> Vec<v1::Agent> {
        let mut no_heartbeat = agent("c", None, None);
        no_heartbeat.heartbeat = None;
        vec![agent("a", Some(12), Some(3)), agent("b", None, Some(-2)), no_heartbeat, v1::Agent::default()]
    }

    #[test]
    fn a_copy_decodes_to_the_rows_it_was_given() {
        let copy = AgentCopy::new(rows());
        assert_eq!((copy.len(), copy.is_empty()), (4, false));
        assert_eq!(decoded(&copy), rows());
        assert_eq!(copy.get("b"), Some(rows()[1].clone()));
        assert_eq!(copy.get("c"), Some(rows()[2].clone()));
        assert_eq!(copy.get("nobody"), None);
        assert!(AgentCopy::new([]).is_empty());
    }

    #[test]
    fn a_copy_written_later_grows_only_the_idle_time_and_the_heartbeat_age() {
        let copy = AgentCopy::new(rows());
        let mut out = EncodedAgents::default();
        copy.write(5, &mut out);
        let mut want = rows();
        want[0].idle_seconds = Some(17);
        want[0].heartbeat.as_mut().unwrap().age_seconds = Some(8);
        want[1].heartbeat.as_mut().unwrap().age_seconds = Some(3);
        assert_eq!(out.decode(), want, "what is absent stays absent; nothing else moves");
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_response_with_encoded_rows_decodes_as_one_with_all_rows_in_order() {
        let host = v1::HostStatus { host: "dragon-lin".into(), agent_count: 4, ..Default::default() };
        let mut resp = ListAgentsResponse {
            agents: vec![agent("local", Some(1), None)],
            hosts: vec![host],
            state_generation: 9,
            state_version: 300,
            encoded_agents: EncodedAgents::default(),
        };
        AgentCopy::new(rows()).write(0, &mut resp.encoded_agents);
        resp.encoded_agents.push(&agent("asked", None, None));
        assert_eq!((resp.encoded_agents.len(), resp.encoded_agents.is_empty()), (5, false));
        let bytes = resp.encode_to_vec();
        assert_eq!(bytes.len(), resp.encoded_len());
        let decoded = ListAgentsResponse::decode(&bytes[..]).unwrap();
        let all = resp.clone().into_decoded();
        assert_eq!(decoded, all);
        let names: Vec<&str> = all.agents.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["local", "a", "b", "c", "", "asked"]);
        assert!(all.encoded_agents.is_empty());
        assert_eq!((decoded.state_generation, decoded.state_version, decoded.hosts.len()), (9, 300, 1));
        assert_eq!(ListAgentsResponse::decode(&[][..]).unwrap(), ListAgentsResponse::default());
        resp.clear();
        assert_eq!(resp, ListAgentsResponse::default());
    }
}
