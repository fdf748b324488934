//! The fleet's own verbs on a node: `AddAgent` and `RemoveAgent` (the
//! roster rewritten, the guards of [`fleet_core::roster_edit`] checked over
//! the whole mesh), `ResetAgent` (the runtime's reset command, delivered and
//! verified as a send) and `VerifyHost` (this host's self-check). Each is done
//! here or forwarded to the agent's host on the caller's behalf, as
//! `StartAgent` is.

use crate::service::{Caller, Node, forward, socket_in};
use fleet_core::roster::Roster;
use fleet_core::roster_edit::{self, Change, EditError, Member, NewAgent};
use fleet_proto::v1;
use fleet_tls::Verb;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// How long a roster change waits for the live view to show the new roster.
const RELOAD_WAIT: Duration = Duration::from_secs(5);
/// How long a forwarded add or remove may take (a start settles, systemctl answers).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

fn edit_status(e: EditError) -> Status {
    match e {
        EditError::Exists { .. } => Status::already_exists(e.to_string()),
        EditError::Missing { .. } => Status::not_found(e.to_string()),
        EditError::BadAgent(_) => Status::invalid_argument(e.to_string()),
        EditError::Invalid(_) | EditError::Unsafe(_) => Status::failed_precondition(e.to_string()),
    }
}

/// Why a roster change did not happen: a guard or an edit.
enum Refused {
    Guard(roster_edit::Refusal),
    Edit(EditError),
}

impl From<Refused> for Status {
    fn from(r: Refused) -> Status {
        match r {
            Refused::Guard(g) => Status::failed_precondition(g.to_string()),
            Refused::Edit(e) => edit_status(e),
        }
    }
}

impl Node {
    fn blocking_err(e: tokio::task::JoinError) -> Status {
        Status::internal(format!("roster task failed: {e}"))
    }

    /// The mesh's agents other than this host's, as far as the peers answer
    /// within the fan-out deadline (for the guards).
    async fn other_members(&self) -> Vec<Member> {
        let (rows, _) = self.peers.fan_out(&[], self.info.fanout_deadline).await;
        rows.into_iter()
            .filter(|r| r.managed && !self.is_self(&r.host))
            .map(|r| Member { name: r.name, host: r.host, class: r.class })
            .collect()
    }

    /// `agent@host` for the audit log, this host when none is given.
    fn target_of(&self, agent: &str, host: &str) -> String {
        format!("{agent}@{}", if host.is_empty() { self.info.host.as_str() } else { host })
    }

    fn audit_change(
        &self,
        caller: &Caller,
        verb: Verb,
        target: &str,
        result: &Result<v1::RosterChangeResponse, Status>,
    ) {
        match result {
            Ok(r) => {
                let what = if r.change == v1::RosterChange::Added as i32 { "added" } else { "removed" };
                let detail = format!("roster {what} ({}/{}); {}", r.runtime, r.class, r.done.join("; "));
                self.audit(caller, verb, target, what, Some(&detail));
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                self.audit(caller, verb, target, "refused", Some(s.message()))
            }
            Err(s) => self.audit(caller, verb, target, "error", Some(s.message())),
        }
    }

    pub(crate) async fn add_agent(
        &self,
        request: Request<v1::AddAgentRequest>,
    ) -> Result<Response<v1::RosterChangeResponse>, Status> {
        let target = self.target_of(&request.get_ref().agent, &request.get_ref().host);
        let caller = self.authorize(&request, Verb::Start, &target)?;
        let req = request.into_inner();
        let result = if self.is_self(&req.host) {
            self.add_local(req).await
        } else {
            let peer = self.peer_for(&req.host).await?;
            let add = |c, r| async move { v1::fleet_client::FleetClient::new(c).add_agent(r).await };
            self.after_change(&peer, forward(&peer, &caller, req, Some(FORWARD_TIMEOUT), add).await).await
        };
        self.audit_change(&caller, Verb::Start, &target, &result);
        result.map(Response::new)
    }

    async fn add_local(&self, req: v1::AddAgentRequest) -> Result<v1::RosterChangeResponse, Status> {
        for (what, v) in [("agent", &req.agent), ("runtime", &req.runtime), ("class", &req.class)] {
            if v.trim().is_empty() {
                return Err(Status::invalid_argument(format!(
                    "no {what} given: `fleet add NAME --runtime R --class C`"
                )));
            }
        }
        let others = self.other_members().await;
        let host = self.info.host.to_string();
        let change = Change::Add { name: req.agent.clone(), host: host.clone(), class: req.class.clone() };
        let path = self.info.roster.clone();
        let (me, new) = (self.clone_for_blocking(), req.clone());
        let written = tokio::task::spawn_blocking(move || {
            fleet_tmux::roster_file::edit(&path, |text| {
                let roster = Roster::parse(text).map_err(|e| Refused::Edit(EditError::Invalid(e.to_string())))?;
                me.guard(&roster, &others, &change, new.force)?;
                // A roster that places its agents by host gets this one's host too.
                let host = roster.agents.iter().any(|a| a.host.is_some()).then(|| host.clone());
                let agent = NewAgent {
                    name: new.agent.clone(),
                    runtime: new.runtime.clone(),
                    class: new.class.clone(),
                    model_hint: Some(new.model_hint.clone()).filter(|m| !m.is_empty()),
                    host,
                };
                roster_edit::add_agent(text, &agent).map_err(Refused::Edit)
            })
        })
        .await
        .map_err(Self::blocking_err)?
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        written.map_err(Status::from)?;
        tracing::info!(agent = %req.agent, runtime = %req.runtime, class = %req.class, "roster: agent added");
        self.live.reload_roster();
        let name = req.agent.clone();
        // Its row in the view (the probe after the reload), so a listing right after has it.
        let has = |v: &crate::live::HostView| {
            v.roster.as_deref().is_some_and(|r| r.agent(&name).is_some())
                && v.agents.iter().any(|a| a.managed && a.name == name)
        };
        if !self.live.view_until(RELOAD_WAIT, has).await {
            return Err(Status::internal(format!(
                "the roster {} was written, but the node's view did not show the change within {} s: see the node's log",
                self.info.roster.display(),
                RELOAD_WAIT.as_secs()
            )));
        }
        let mut done = vec![format!("added to {}", self.info.roster.display())];
        let mut warnings = vec![];
        let agent = req.agent.clone();
        let manager = fleet_tmux::roster_file::has_user_manager();
        match tokio::task::spawn_blocking(move || fleet_tmux::roster_file::enable_unit(&agent, manager))
            .await
            .map_err(Self::blocking_err)?
        {
            Ok(Some(d)) => done.push(d),
            Ok(None) => {}
            Err(w) => warnings.push(format!("{w}; the agent will not start at boot until its unit is enabled")),
        }
        let lifecycle = if req.no_start {
            None
        } else {
            let start = v1::LifecycleRequest { agent: req.agent.clone(), ..Default::default() };
            self.lifecycle_local(true, &start).await?.into_iter().next()
        };
        Ok(v1::RosterChangeResponse {
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
            agent: req.agent,
            runtime: req.runtime,
            class: req.class,
            change: v1::RosterChange::Added as i32,
            lifecycle,
            done,
            warnings,
        })
    }

    pub(crate) async fn remove_agent(
        &self,
        request: Request<v1::RemoveAgentRequest>,
    ) -> Result<Response<v1::RosterChangeResponse>, Status> {
        let target = self.target_of(&request.get_ref().agent, &request.get_ref().host);
        let caller = self.authorize(&request, Verb::Stop, &target)?;
        let req = request.into_inner();
        let result = if self.is_self(&req.host) {
            self.remove_local(req).await
        } else {
            let peer = self.peer_for(&req.host).await?;
            let remove = |c, r| async move { v1::fleet_client::FleetClient::new(c).remove_agent(r).await };
            self.after_change(&peer, forward(&peer, &caller, req, Some(FORWARD_TIMEOUT), remove).await).await
        };
        self.audit_change(&caller, Verb::Stop, &target, &result);
        result.map(Response::new)
    }

    async fn remove_local(&self, req: v1::RemoveAgentRequest) -> Result<v1::RosterChangeResponse, Status> {
        let view = self.live.current();
        let roster = view.roster.clone().ok_or_else(|| {
            Status::failed_precondition(format!(
                "host {} has no valid roster: {}",
                self.info.host,
                view.roster_problem.clone().unwrap_or_default()
            ))
        })?;
        let spec = roster.agent_on(&self.info.host, &req.agent).map_err(Status::not_found)?.clone();
        let others = self.other_members().await;
        let change = Change::Remove { name: req.agent.clone(), host: self.info.host.to_string() };
        // Checked before anything is stopped, and again under the roster's lock.
        self.clone_for_blocking().guard(&roster, &others, &change, false).map_err(Status::from)?;
        let (runtime, class) = (spec.runtime.clone(), spec.class.clone().unwrap_or_default());
        let (me, path, run_dir) = (self.clone_for_blocking(), self.info.roster.clone(), self.info.run_dir.clone());
        let mosaic_home = self.info.mosaic_home.clone();
        let keep = req.keep_files;
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
        let unit_dir = fleet_tmux::roster_file::user_unit_dir(
            &home,
            std::env::var_os("XDG_CONFIG_HOME").map(std::path::PathBuf::from),
        );
        let name = req.agent.clone();
        let (stopped, done, warnings, written) = tokio::task::spawn_blocking(move || {
            let mut done = Vec::new();
            let mut warnings = Vec::new();
            if !keep {
                let (d, w) = fleet_tmux::roster_file::disable_unit(
                    &name,
                    &unit_dir,
                    fleet_tmux::roster_file::has_user_manager(),
                );
                done.extend(d);
                warnings.extend(w);
            }
            let stopped = fleet_tmux::lifecycle::stop_and_clear(&roster, &spec, &run_dir);
            if stopped.is_err() {
                return (stopped, done, warnings, None);
            }
            let written = fleet_tmux::roster_file::edit(&path, |text| {
                let now = Roster::parse(text).map_err(|e| Refused::Edit(EditError::Invalid(e.to_string())))?;
                me.guard(&now, &others, &change, false)?;
                roster_edit::remove_agent(text, &name).map_err(Refused::Edit)
            });
            if !keep && matches!(written, Ok(Ok(_))) {
                let env = fleet_tmux::roster_file::env_file(&mosaic_home, &name);
                match fleet_tmux::roster_file::remove_if_there(&env) {
                    Ok(true) => done.push(format!("removed {}", env.display())),
                    Ok(false) => {}
                    Err(e) => warnings.push(format!("cannot remove {}: {e}", env.display())),
                }
            }
            (stopped, done, warnings, Some(written))
        })
        .await
        .map_err(Self::blocking_err)?;
        let outcome = match stopped {
            Ok(o) => o,
            Err(e) => {
                return Err(Status::failed_precondition(format!(
                    "cannot stop {}@{}: {e}; the roster is unchanged",
                    req.agent, self.info.host
                )));
            }
        };
        let written = written.expect("written after a stop");
        written.map_err(|e| Status::failed_precondition(e.to_string()))?.map_err(Status::from)?;
        tracing::info!(agent = %req.agent, keep_files = keep, "roster: agent removed");
        self.live.reload_roster();
        let name = req.agent.clone();
        let gone = |v: &crate::live::HostView| {
            v.roster.as_deref().is_some_and(|r| r.agent(&name).is_none()) && !v.agents.iter().any(|a| a.name == name)
        };
        if !self.live.view_until(RELOAD_WAIT, gone).await {
            return Err(Status::internal(format!(
                "the roster {} was written, but the node's view did not show the change within {} s: see the node's log",
                self.info.roster.display(),
                RELOAD_WAIT.as_secs()
            )));
        }
        let mut done = done;
        done.insert(0, format!("removed from {}", self.info.roster.display()));
        let outcome = match outcome {
            fleet_tmux::lifecycle::Outcome::Stopped => v1::LifecycleOutcome::Stopped,
            _ => v1::LifecycleOutcome::NotRunning,
        };
        Ok(v1::RosterChangeResponse {
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
            agent: req.agent.clone(),
            runtime,
            class,
            change: v1::RosterChange::Removed as i32,
            lifecycle: Some(v1::LifecycleResult {
                tenant_id: self.info.tenant.to_string(),
                host: self.info.host.to_string(),
                agent: req.agent,
                outcome: outcome as i32,
                detail: String::new(),
            }),
            done,
            warnings,
        })
    }

    /// What the guards need of this node, for a blocking task.
    fn clone_for_blocking(&self) -> GuardCx {
        GuardCx { host: self.info.host.clone() }
    }

    pub(crate) async fn reset_agent(
        &self,
        request: Request<v1::ResetAgentRequest>,
    ) -> Result<Response<v1::SendReceipt>, Status> {
        let target = format!("{}@{}", request.get_ref().agent, request.get_ref().host);
        let caller = self.authorize(&request, Verb::Send, &target)?;
        let req = request.into_inner();
        let result = if self.is_self(&req.host) {
            self.reset_local(req).await
        } else {
            let verify = if req.verify_timeout_ms == 0 { 6000 } else { u64::from(req.verify_timeout_ms) };
            let peer = self.peer_for(&req.host).await?;
            let reset = |c, r| async move { v1::fleet_client::FleetClient::new(c).reset_agent(r).await };
            forward(&peer, &caller, req, Some(Duration::from_millis(verify + 5000)), reset).await
        };
        match &result {
            Ok(r) => {
                let outcome = fleet_proto::convert::outcome_word_of(r.outcome);
                self.metrics.send(outcome);
                let detail = format!("reset; {}", r.detail);
                self.audit(&caller, Verb::Send, &format!("{}@{}", r.agent, r.host), outcome, Some(&detail));
            }
            Err(s) => self.audit(&caller, Verb::Send, &target, "error", Some(s.message())),
        }
        result.map(Response::new)
    }

    async fn reset_local(&self, req: v1::ResetAgentRequest) -> Result<v1::SendReceipt, Status> {
        let start = Instant::now();
        let view = self.live.current();
        let roster = view
            .roster
            .clone()
            .ok_or_else(|| Status::failed_precondition(format!("host {} has no valid roster", self.info.host)))?;
        let spec = roster.agent_on(&self.info.host, &req.agent).map_err(Status::not_found)?;
        let Some(command) = fleet_core::runtime::reset_command(&roster, &spec.runtime).map(str::to_string) else {
            return Err(Status::failed_precondition(format!(
                "no reset command is known for runtime {} of {}@{}: set runtimes.{}.reset_command in the roster of {} (e.g. /clear)",
                spec.runtime, req.agent, self.info.host, spec.runtime, self.info.host
            )));
        };
        let opts = fleet_tmux::send::SendOptions {
            verify: req.verify,
            verify_timeout: Duration::from_millis(if req.verify_timeout_ms == 0 {
                6000
            } else {
                req.verify_timeout_ms.into()
            }),
            enter_delay: Duration::from_millis(roster.enter_delay_ms(&req.agent)),
            ..Default::default()
        };
        let socket = socket_in(Some(&roster), &req.agent);
        let holder = roster.holder_session.clone();
        let (delivery, scratch, agent) = (self.delivery.clone(), self.info.run_dir.clone(), req.agent.clone());
        let text = command.clone();
        let result = tokio::task::spawn_blocking(move || {
            delivery.send(&socket, holder.as_deref(), &agent, &text, &opts, &scratch)
        })
        .await
        .map_err(Self::blocking_err)?;
        self.live.poke();
        use fleet_tmux::send::{Outcome, SendError};
        let receipt = match result {
            Ok(d) => {
                let outcome = match d.outcome {
                    Outcome::Delivered => v1::DeliveryOutcome::Delivered,
                    Outcome::Verified(fleet_core::verify::Verdict::Accepted) => v1::DeliveryOutcome::Accepted,
                    Outcome::Verified(fleet_core::verify::Verdict::Draft) => v1::DeliveryOutcome::Draft,
                    Outcome::Verified(fleet_core::verify::Verdict::Unverifiable) => v1::DeliveryOutcome::Unverifiable,
                };
                let detail = if d.detail.is_empty() { command } else { format!("{command}: {}", d.detail) };
                self.receipt(&req.agent, outcome, detail, start, "")
            }
            Err(SendError::NotFound(a)) => self.receipt(
                &req.agent,
                v1::DeliveryOutcome::NotFound,
                fleet_core::message::not_running(&a, &self.info.host),
                start,
                "",
            ),
            Err(e) => self.receipt(&req.agent, v1::DeliveryOutcome::Failed, e.to_string(), start, ""),
        };
        Ok(receipt)
    }

    pub(crate) async fn verify_host(
        &self,
        request: Request<v1::VerifyHostRequest>,
    ) -> Result<Response<v1::VerifyHostResponse>, Status> {
        let caller = self.authorize(&request, Verb::List, "")?;
        let req = request.into_inner();
        if !self.is_self(&req.host) {
            let peer = self.peer_for(&req.host).await?;
            let verify = |c, r| async move { v1::fleet_client::FleetClient::new(c).verify_host(r).await };
            return forward(&peer, &caller, req, Some(Duration::from_secs(10)), verify).await.map(Response::new);
        }
        let view = self.live.current();
        let roster = view.roster.clone();
        let holder = match roster.as_deref().map(|r| (r.socket.clone(), r.holder_session.clone())) {
            None => fleet_core::check::Holder::Present,
            Some((_, None)) => fleet_core::check::Holder::NotConfigured,
            Some((socket, Some(name))) => tokio::task::spawn_blocking(move || {
                let tmux = fleet_tmux::tmux::Tmux::new(socket);
                match tmux.run(["has-session", "-t", &format!("={name}")], None) {
                    Ok(_) => fleet_core::check::Holder::Present,
                    Err(e) if e.is_no_target() || e.is_no_server() => fleet_core::check::Holder::Missing,
                    Err(e) => fleet_core::check::Holder::Unknown(e.to_string()),
                }
            })
            .await
            .map_err(Self::blocking_err)?,
        };
        let systemd = fleet_tmux::roster_file::has_user_manager();
        let findings = fleet_core::check::findings(
            &self.info.host,
            roster.as_deref(),
            view.roster_problem.as_deref(),
            &view.agents,
            &holder,
            systemd,
        );
        let (tenant, host) = (self.info.tenant.to_string(), self.info.host.to_string());
        Ok(Response::new(v1::VerifyHostResponse {
            tenant_id: tenant.clone(),
            host: host.clone(),
            agents: roster.as_deref().map_or(0, |r| r.agents_on(&self.info.host).count()) as u32,
            systemd,
            problems: findings
                .into_iter()
                .map(|f| v1::VerifyProblem {
                    tenant_id: tenant.clone(),
                    host: host.clone(),
                    agent: f.agent,
                    problem: f.problem,
                    next_step: f.next_step,
                })
                .collect(),
        }))
    }
}

/// The guards' view of the node, movable into a blocking task.
struct GuardCx {
    host: fleet_core::names::DnsLabel,
}

impl GuardCx {
    fn guard(&self, roster: &Roster, others: &[Member], change: &Change, force: bool) -> Result<(), Refused> {
        let mut all: Vec<Member> = roster
            .agents_on(&self.host)
            .map(|a| Member { name: a.name.to_string(), host: self.host.to_string(), class: a.class.clone() })
            .collect();
        all.extend(others.iter().cloned());
        roster_edit::guard(&all, change, roster.is_minimal(), force).map_err(Refused::Guard)
    }
}

impl Node {
    /// Rewrite the comms block (see [`fleet_core::comms`]) in the context
    /// file of each of `agents` (every roster agent of this host when empty)
    /// whose file already holds one (`fleet comms --write` made it), from the
    /// mesh's agents as the peers answer now. Returns the files rewritten.
    pub async fn refresh_comms(&self, agents: &[String]) -> Vec<std::path::PathBuf> {
        let Some(roster) = self.live.current().roster.clone() else { return vec![] };
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let files: Vec<(String, std::path::PathBuf)> = roster
            .agents_on(&self.info.host)
            .filter(|a| agents.is_empty() || agents.iter().any(|n| n == a.name.as_str()))
            .map(|a| (a.name.to_string(), fleet_tmux::roster_file::context_path(&roster, a, home.as_deref())))
            .collect();
        // Only files that hold the agent's region are kept fresh: look before asking the mesh.
        let host = self.info.host.to_string();
        let files = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .filter(|(name, p)| {
                    fleet_core::file::read_to_string(p, 4 << 20)
                        .is_ok_and(|t| fleet_core::comms::has_region(&t, &host, name))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        if files.is_empty() {
            return vec![];
        }
        let (rows, _) = self.peers.fan_out(&[], self.info.fanout_deadline).await;
        let here = self.live.current().agents.clone();
        let mesh: Vec<fleet_core::comms::Peer> = here
            .iter()
            .chain(rows.iter().filter(|r| !self.is_self(&r.host)))
            .filter(|r| r.managed)
            .map(|r| fleet_core::comms::Peer { host: r.host.clone(), name: r.name.clone(), class: r.class.clone() })
            .collect();
        let host = self.info.host.to_string();
        tokio::task::spawn_blocking(move || {
            let mut written = vec![];
            for (name, path) in files {
                let block = fleet_core::comms::render(&host, &name, &mesh);
                match fleet_tmux::roster_file::refresh_comms(&path, &host, &name, &block) {
                    Ok(true) => written.push(path),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(agent = %name, file = %path.display(), error = %e, "cannot refresh the comms block"),
                }
            }
            written
        })
        .await
        .unwrap_or_default()
    }
}

/// Keep this host's agents' comms blocks fresh as the mesh's membership
/// changes: an agent appears or goes, here or on a peer, or a host comes up.
/// Changes that come together are taken as one (a joining host brings its
/// agents one event each).
pub async fn keep_comms_fresh(node: std::sync::Arc<Node>, cancel: tokio_util::sync::CancellationToken) {
    use fleet_core::event::EventKind;
    use tokio::sync::broadcast::error::RecvError;
    let mut remote = node.peers.events.subscribe();
    let mut local = node.live.events.subscribe();
    let changes = |e: Result<fleet_core::event::Event, RecvError>| match e {
        Ok(ev) => {
            Some(matches!(ev.kind, EventKind::AgentAppeared { .. } | EventKind::AgentGone | EventKind::HostUp { .. }))
        }
        Err(RecvError::Lagged(_)) => Some(true),
        Err(RecvError::Closed) => None,
    };
    loop {
        let changed = tokio::select! {
            () = cancel.cancelled() => return,
            e = remote.recv() => changes(e),
            e = local.recv() => changes(e),
        };
        match changed {
            None => return,
            Some(false) => continue,
            Some(true) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        while remote.try_recv().is_ok() {}
        while local.try_recv().is_ok() {}
        let written = node.refresh_comms(&[]).await;
        if !written.is_empty() {
            tracing::info!(files = written.len(), "comms blocks refreshed after a membership change");
        }
    }
}
