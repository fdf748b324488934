//! The fleet mesh peer node.
//!
//! - [`config`]: node.yaml and `FLEET_*` overrides, validated before binding.
//! - [`live`]: the live view of this host (inotify, sweep, re-probe) and its events.
//! - [`activity`]: agents' activity: screens read by the probe, hook files, the judgement.
//! - [`membership`]: SWIM (foca) over QUIC (quinn) with the mesh certificates.
//! - [`peers`]: the peer list, mTLS channels, the MESH fan-out, per-peer heartbeat feeds.
//! - [`replica`]: the replicated view of the peer hosts that `ListAgents(MESH)` answers from.
//! - [`service`]: the `Fleet` and `Mesh` gRPC services and per-call authorization.
//! - [`sending`]: `SendMessage` here (preamble, refusals, `--when-idle`, delivery, receipt) or forwarded.
//! - [`roster_verbs`]: `AddAgent`, `RemoveAgent` (roster rewritten, guards over the mesh), `ResetAgent`, `VerifyHost`.
//! - [`idem`]: idempotency keys of sends.
//! - [`queue`]: durable delivery: messages kept on disk until the agent can take them, typed in recorded phases.
//! - [`idle`]: `--when-idle` sends: wait for an idle agent, one turn per agent.
//! - [`delivery`]: sends into this host's panes: one turn per agent, shared control-mode clients.
//! - [`pane`]: pane feeds: one control-mode client per viewed pane, its output shared by all viewers.
//! - [`terminal`]: `WatchPane` and `AttachPane`, served from the feeds or forwarded to the agent's host.
//! - [`revocation`]: following `crl.pem`: new handshakes refuse, open connections of revoked certificates are cut.
//! - [`enroll`]: `fleet join` (the enrollment door), `Certs` (invite, renew, CRL push/pull, status), renewal and CRL spreading.
//! - [`server`]: both doors (mTLS TCP, uid-checked Unix socket), health, reflection, shutdown.
//! - [`client`]: how the CLI reaches a node.
//! - [`authority`]: the local door accepts the `:authority` stock gRPC clients send for unix sockets.
//! - [`web`]: the web door: JSON API, Server-Sent Events, `/metrics`, browser pairing and sessions.
//! - [`json`]: the `--json` objects, shared by the CLI and the web door.
//! - [`metrics`]: latency histograms and counters for `/metrics`.
//! - [`memory`]: freed memory given back to the system after bursts (glibc's `malloc_trim`).

pub mod activity;
pub mod authority;
pub mod client;
pub mod config;
pub mod delivery;
pub mod enroll;
pub mod idem;
pub mod idle;
pub mod json;
pub mod live;
pub mod mdns;
pub mod membership;
pub mod memory;
pub mod metrics;
pub mod pane;
pub mod peers;
pub mod queue;
pub mod replica;
pub mod revocation;
pub mod roster_verbs;
pub mod sending;
pub mod server;
pub mod service;
pub mod terminal;
pub mod versions;
pub mod web;
