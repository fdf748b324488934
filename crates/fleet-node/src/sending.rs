//! Sending into panes, for `SendMessage`: here (the preamble, the roster's
//! refusal, `--when-idle`'s wait, the delivery and its receipt) or forwarded
//! to the agent's host on the caller's behalf.

use crate::service::{Caller, Node, forward, socket_in};
use fleet_core::message::{Source, compose, recipient_refusal};
use fleet_proto::v1;
use fleet_tmux::send::{Outcome, SendError, SendOptions};
use std::time::{Duration, Instant};
use tonic::Status;

impl Node {
    pub(crate) fn receipt(
        &self,
        agent: &str,
        outcome: v1::DeliveryOutcome,
        detail: String,
        start: Instant,
        key: &str,
    ) -> v1::SendReceipt {
        v1::SendReceipt {
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
            agent: agent.into(),
            outcome: outcome as i32,
            detail,
            elapsed_ms: start.elapsed().as_millis() as u32,
            idempotency_key: key.into(),
            duplicate: false,
            waited_ms: 0,
            queue_id: String::new(),
        }
    }

    pub(crate) async fn send_local(&self, caller: &Caller, req: v1::SendRequest) -> Result<v1::SendReceipt, Status> {
        let start = Instant::now();
        let src_host = if req.source_host.is_empty() {
            caller.node_host.clone().unwrap_or_else(|| self.info.host.to_string())
        } else {
            req.source_host.clone()
        };
        let src = if req.source_label.is_empty() { "operator".to_string() } else { req.source_label.clone() };
        let from = Source { host: &src_host, label: &src };
        let text = compose(&from, self.info.host.as_str(), &req.agent, &req.text)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = &req.idempotency_key;
        // One view for the whole decision: the roster that refuses or admits the
        // target also gives its socket, holder session and pause.
        let view = self.live.current();
        let roster = view.roster.as_deref();
        let refusal = match roster {
            Some(r) => recipient_refusal(r, &self.info.host, &req.agent, req.unmanaged),
            None if req.unmanaged => None,
            None => Some(format!(
                "host {} has no valid roster, so it has no agents; pass --unmanaged to type into a session anyway",
                self.info.host
            )),
        };
        if let Some(why) = refusal {
            return Ok(self.receipt(&req.agent, v1::DeliveryOutcome::NotFound, why, start, key));
        }
        let (mut idle_turn, mut waited) = (None, Duration::ZERO);
        if req.when_idle {
            match self.wait_idle(&req.agent, req.wait_timeout_ms).await {
                Ok((turn, w)) => (idle_turn, waited) = (Some(turn), w),
                Err((outcome, why)) => {
                    let mut r = self.receipt(&req.agent, outcome, why, start, key);
                    r.waited_ms = start.elapsed().as_millis() as u32;
                    return Ok(r);
                }
            }
        }
        let opts = SendOptions {
            verify: req.verify,
            verify_timeout: Duration::from_millis(if req.verify_timeout_ms == 0 {
                6000
            } else {
                req.verify_timeout_ms.into()
            }),
            enter_delay: Duration::from_millis(
                roster.map_or(fleet_core::roster::DEFAULT_ENTER_DELAY_MS, |r| r.enter_delay_ms(&req.agent)),
            ),
            ..SendOptions::default()
        };
        let socket = socket_in(roster, &req.agent);
        let holder = roster.and_then(|r| r.holder_session.clone());
        let delivery = self.delivery.clone();
        let scratch = self.info.run_dir.clone();
        let agent = req.agent.clone();
        let result = tokio::task::spawn_blocking(move || {
            delivery.send(&socket, holder.as_deref(), &agent, &text, &opts, &scratch)
        })
        .await
        .map_err(|e| Status::internal(format!("send task failed: {e}")))?;
        let receipt = match result {
            Ok(d) => {
                let outcome = match d.outcome {
                    Outcome::Delivered => v1::DeliveryOutcome::Delivered,
                    Outcome::Verified(fleet_core::verify::Verdict::Accepted) => v1::DeliveryOutcome::Accepted,
                    Outcome::Verified(fleet_core::verify::Verdict::Draft) => v1::DeliveryOutcome::Draft,
                    Outcome::Verified(fleet_core::verify::Verdict::Unverifiable) => v1::DeliveryOutcome::Unverifiable,
                };
                self.receipt(&req.agent, outcome, d.detail, start, key)
            }
            Err(SendError::Text(e)) => return Err(Status::invalid_argument(e.to_string())),
            Err(SendError::NotFound(a)) => {
                let detail = match roster.and_then(|r| r.agent_on(&self.info.host, &a).ok()) {
                    Some(_) => fleet_core::message::not_running(&a, &self.info.host),
                    None => {
                        // Every session the probe sees here, roster agent or not.
                        let names: Vec<String> = self.live.current().agents.iter().map(|r| r.name.clone()).collect();
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        format!(
                            "no such agent {a} on host {} ({})",
                            self.info.host,
                            fleet_core::names::known(&a, &names)
                        )
                    }
                };
                self.receipt(&req.agent, v1::DeliveryOutcome::NotFound, detail, start, key)
            }
            Err(e) => self.receipt(&req.agent, v1::DeliveryOutcome::Failed, e.to_string(), start, key),
        };
        if let Some(mut turn) = idle_turn {
            *turn = crate::live::now_ms();
        }
        self.live.poke();
        Ok(v1::SendReceipt { waited_ms: waited.as_millis() as u32, ..receipt })
    }

    /// Wait, in the agent's when-idle turn, until it is idle in a view newer
    /// than the turn before typed (see [`crate::idle`]): the turn to type
    /// under and how long it took, or the receipt's outcome and why not.
    async fn wait_idle(
        &self,
        agent: &str,
        timeout_ms: u32,
    ) -> Result<(tokio::sync::OwnedMutexGuard<i64>, Duration), (v1::DeliveryOutcome, String)> {
        use crate::idle::{Ready, fresh, ready};
        let start = Instant::now();
        let limit = Duration::from_millis(if timeout_ms == 0 { 600_000 } else { timeout_ms.into() });
        let deadline = tokio::time::Instant::now() + limit;
        let secs = limit.as_secs_f64();
        let turn = match tokio::time::timeout_at(deadline, self.idle.turn(agent).lock_owned()).await {
            Ok(t) => t,
            Err(_) => {
                return Err((
                    v1::DeliveryOutcome::Busy,
                    format!(
                        "earlier --when-idle messages to {agent} were still waiting after {secs:.0} s; nothing was typed"
                    ),
                ));
            }
        };
        let mut view = self.live.view.clone();
        loop {
            let why = {
                let v = view.borrow_and_update().clone();
                // Not running: the delivery says so.
                let Some(row) = v.agents.iter().find(|r| r.name == agent) else { return Ok((turn, start.elapsed())) };
                match ready(&row.activity, fresh(&row.activity, v.as_of_unix_ms, *turn)) {
                    Ready::Go => return Ok((turn, start.elapsed())),
                    Ready::Refuse(why) => {
                        return Err((v1::DeliveryOutcome::Failed, format!("--when-idle: {why}; nothing was typed")));
                    }
                    Ready::Wait(why) => why,
                }
            };
            if !matches!(tokio::time::timeout_at(deadline, view.changed()).await, Ok(Ok(()))) {
                return Err((
                    v1::DeliveryOutcome::Busy,
                    format!("{agent} was not idle within {secs:.0} s: {why}; nothing was typed"),
                ));
            }
        }
    }

    pub(crate) async fn forward_send(&self, caller: &Caller, req: v1::SendRequest) -> Result<v1::SendReceipt, Status> {
        // The target may verify for up to its timeout; allow that plus a margin.
        let verify = if req.verify_timeout_ms == 0 { 6000 } else { u64::from(req.verify_timeout_ms) };
        let wait = if !req.when_idle {
            0
        } else if req.wait_timeout_ms == 0 {
            600_000
        } else {
            u64::from(req.wait_timeout_ms)
        };
        let deadline = Duration::from_millis(wait + if req.verify { verify + 5000 } else { 5000 });
        let peer = self.peer_for(&req.host).await?;
        let req = v1::SendRequest {
            source_host: if req.source_host.is_empty() { self.info.host.to_string() } else { req.source_host.clone() },
            ..req
        };
        let send = |c, r| async move { v1::fleet_client::FleetClient::new(c).send_message(r).await };
        forward(&peer, caller, req, Some(deadline), send).await
    }
}
