//! `fleet demo`: a self-contained local mesh, no setup, no root.
//!
//! Three hosts on loopback (`w-jarvis`, `dragon-lin`, `lab-3`), each a real
//! `fleet node` process with its own `MOSAIC_HOME`, tmux socket, port and
//! node certificate from one mesh CA made for the demo, and a few stub agents.
//! The tour: the merged `fleet ps`, heartbeat events from several hosts, a
//! cross-host send with its verified receipt and the text in the target pane,
//! a draft caught by verify, a host killed and shown unreachable, then back.
//! w-jarvis's node opens its web door on a free loopback port (the others keep theirs
//! off) and the tour prints an operator pairing link of it: the dashboard of the whole mesh.
//! Everything it started (node processes by pid, tmux servers by their own
//! sockets, the temp dir) is removed at the end, on a failure halfway, and on
//! Ctrl-C or SIGTERM. `--keep` leaves the mesh up and says how to use it.

use crate::exit::{self, CliResult};
use crate::ps;
use anyhow::{Context as _, anyhow};
use fleet_core::event::{Event, EventKind};
use fleet_core::record::{AgentRecord, HostStatus};
use fleet_core::roster::{Roster, TmuxSocket};
use fleet_node::client::{self, Target};
use fleet_proto::v1;
use fleet_tmux::lifecycle::{self, StartEnv};
use fleet_tmux::tmux::Tmux;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Leave the demo mesh running and print how to use it.
    #[arg(long)]
    pub keep: bool,
    /// Show the nodes' logs (they are in the demo dir otherwise).
    #[arg(short, long)]
    pub verbose: bool,
}

const TENANT: &str = "demo";

struct Host {
    name: &'static str,
    agents: &'static str,
}

const HOSTS: &[Host] = &[
    Host {
        name: "w-jarvis",
        agents: "  - { name: orchestrator, runtime: stub, class: orchestrator }\n  - { name: enhancer, runtime: stub, class: enhancer }\n",
    },
    Host {
        name: "dragon-lin",
        agents: "  - { name: coder0-0, runtime: stub, class: implementer }\n  - { name: reviewer, runtime: stub-draft, class: reviewer }\n",
    },
    Host { name: "lab-3", agents: "  - { name: researcher, runtime: stub, class: researcher }\n" },
];

/// What must be undone: node pids, tmux sockets, the dir.
#[derive(Default)]
struct Owned {
    pids: Vec<u32>,
    sockets: Vec<String>,
    dir: Option<PathBuf>,
}

impl Owned {
    fn clean(&mut self) {
        for pid in self.pids.drain(..) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for s in self.sockets.drain(..) {
            let _ = Tmux::new(TmuxSocket::Name(s.clone())).run(["kill-server"], None);
            // tmux leaves its socket file behind.
            let _ = std::fs::remove_file(fleet_tmux::tmux::socket_path_of_name(&s));
        }
        if let Some(d) = self.dir.take() {
            // Give the nodes a moment to remove their sockets before the dir goes.
            std::thread::sleep(Duration::from_millis(200));
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

struct Demo {
    dir: PathBuf,
    exe: PathBuf,
    owned: Arc<Mutex<Owned>>,
    children: Vec<Option<Child>>,
    addrs: Vec<String>,
    verbose: bool,
    rt: tokio::runtime::Runtime,
    /// The step the tour is at, for the error of a step that fails.
    at: (u32, &'static str),
}

fn step(n: u32, title: &str) {
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m{n}. {title}\x1b[0m");
    } else {
        println!("\n{n}. {title}");
    }
}

pub fn run(args: DemoArgs) -> CliResult {
    let dir = tempfile::Builder::new().prefix("fleet-demo-").tempdir().map_err(exit::failed)?.keep();
    let owned = Arc::new(Mutex::new(Owned { dir: Some(dir.clone()), ..Owned::default() }));
    {
        // Ctrl-C or SIGTERM: undo everything, exit 130.
        let owned = owned.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
            rt.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            eprintln!("\ninterrupted: removing the demo mesh");
            owned.lock().expect("owned").clean();
            std::process::exit(130);
        });
    }
    let mut demo = Demo {
        dir: dir.clone(),
        exe: std::env::current_exe().map_err(exit::failed)?,
        owned: owned.clone(),
        children: Vec::new(),
        addrs: Vec::new(),
        verbose: args.verbose,
        rt: crate::node::runtime()?,
        at: (0, "starting"),
    };
    let result = demo.tour(args.keep);
    if result.is_err() || !args.keep {
        if result.is_ok() {
            step(11, "Removing everything the demo started");
        }
        for c in demo.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        owned.lock().expect("owned").clean();
        if result.is_ok() {
            println!("  3 nodes stopped, 3 tmux servers and {} removed", dir.display());
        }
    }
    result.map_err(|e| {
        let (n, title) = demo.at;
        let logs = if args.verbose { String::new() } else { " (run with --verbose to see the nodes' logs)".into() };
        exit::failed(e.context(format!("the demo failed at step {n} ({title}){logs}")))
    })
}

impl Demo {
    /// Say which step begins, and remember it for the error if it fails.
    fn step(&mut self, n: u32, title: &'static str) {
        self.at = (n, title);
        step(n, title);
    }

    fn home(&self, i: usize) -> PathBuf {
        self.dir.join(HOSTS[i].name)
    }

    fn socket(&self, i: usize) -> String {
        format!("fleet-demo-{}-{}", std::process::id(), HOSTS[i].name)
    }

    fn target(&self, i: usize) -> Target {
        Target::Socket(self.home(i).join("fleet/node.sock"))
    }

    fn setup_host(&self, i: usize) -> anyhow::Result<Roster> {
        let home = self.home(i);
        let certs = home.join("fleet/certs");
        fleet_tls::issue::issue(&self.dir.join("ca"), fleet_tls::Kind::Node, HOSTS[i].name, 30, Some(&certs), false)
            .map_err(|e| anyhow!("issuing the node certificate of {}: {e}", HOSTS[i].name))?;
        let exe = self.exe.display();
        let text = format!(
            "version: 1
tenant_id: {TENANT}
tmux: {{ socket_name: {socket} }}
runtimes:
  stub: {{ command: \"{exe} stub-agent\", heartbeat: self }}
  stub-draft: {{ command: \"{exe} stub-agent --draft\", process_names: [fleet], heartbeat: self }}
agents:
{agents}",
            socket = self.socket(i),
            agents = HOSTS[i].agents
        );
        std::fs::write(home.join("fleet/roster.yaml"), &text)?;
        let roster = Roster::parse(&text).map_err(|e| anyhow!("{e}"))?;
        self.owned.lock().expect("owned").sockets.push(self.socket(i));
        let env = StartEnv {
            fleet_exe: self.exe.clone(),
            mosaic_home: home.clone(),
            run_dir: home.join("fleet/run"),
            interval_secs: 1,
            home: Some(self.dir.clone()),
            tenant_id: TENANT.into(),
            host: HOSTS[i].name.into(),
        };
        let agents: Vec<_> = roster.agents.iter().collect();
        for (agent, r) in lifecycle::start_many(&roster, &agents, &env) {
            r.with_context(|| format!("starting {}@{}", agent.name, HOSTS[i].name))?;
        }
        Ok(roster)
    }

    /// Start node `i` on `listen` with static `peers`; wait until it answers; its address.
    fn start_node(&mut self, i: usize, listen: &str, peers: &[String]) -> anyhow::Result<String> {
        let home = self.home(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", HOSTS[i].name)))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node")
            .env("MOSAIC_HOME", &home)
            .env("MOSAIC_HEARTBEAT_INTERVAL", "1")
            .env("FLEET_LISTEN", listen)
            .env("FLEET_PEERS", peers.join(","))
            .env("FLEET_MDNS", "false")
            // One web door (w-jarvis's, on a free port) shows the whole mesh; three on the
            // default port would contend for it.
            .env("FLEET_WEB", if i == 0 { "true" } else { "false" })
            .env("FLEET_WEB_LISTEN", "127.0.0.1:0")
            .env("FLEET_FANOUT_DEADLINE_MS", "1000")
            .env("FLEET_PROBE_INTERVAL_MS", "1000")
            .env_remove("FLEET_NODE")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if self.verbose {
            cmd.stderr(Stdio::inherit());
        } else {
            cmd.stderr(log);
        }
        let child = cmd.spawn().context("starting fleet node")?;
        self.owned.lock().expect("owned").pids.push(child.id());
        if self.children.len() <= i {
            self.children.resize_with(i + 1, || None);
        }
        self.children[i] = Some(child);
        let target = self.target(i);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let info = self.rt.block_on(async {
                let mut c = client::mesh(&target).await.ok()?;
                c.node_info(v1::NodeInfoRequest {}).await.ok().map(|r| r.into_inner())
            });
            if let Some(info) = info {
                return Ok(info.grpc_address);
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "node {} did not start; its log: {}",
                    HOSTS[i].name,
                    self.dir.join(format!("{}.log", HOSTS[i].name)).display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A one-time operator pairing link of w-jarvis's web door, valid `ttl_ms`.
    fn pair_link(&self, ttl_ms: u32) -> anyhow::Result<String> {
        self.rt.block_on(async {
            let channel = client::connect(&self.target(0)).await?;
            let req = v1::PairRequest {
                role: v1::WebRole::Operator as i32,
                label: "demo".into(),
                link_ttl_ms: ttl_ms,
                session_ttl_s: 0,
            };
            let r = v1::web_client::WebClient::new(channel).pair(req).await.context("pairing link of w-jarvis")?;
            Ok(r.into_inner().url)
        })
    }

    fn list(&self) -> anyhow::Result<(Vec<AgentRecord>, Vec<HostStatus>)> {
        self.rt.block_on(async {
            let mut c = client::fleet(&self.target(0)).await?;
            let req =
                v1::ListAgentsRequest { scope: v1::Scope::Mesh as i32, hosts: vec![], deadline_ms: 1000, fresh: false };
            let r = c.list_agents(req).await?.into_inner();
            Ok((
                r.agents.into_iter().map(AgentRecord::from).collect(),
                r.hosts.into_iter().map(HostStatus::from).collect(),
            ))
        })
    }

    /// `fleet tail AGENT@HOST -n N`, from w-jarvis.
    fn tail(&self, host: &str, agent: &str, lines: u32) -> anyhow::Result<v1::TailResponse> {
        self.rt.block_on(async {
            let mut c = client::fleet(&self.target(0)).await?;
            let req = v1::TailRequest { host: host.into(), agent: agent.into(), lines, ..Default::default() };
            Ok(c.tail_pane(req).await?.into_inner())
        })
    }

    /// A short `fleet watch AGENT@HOST` from w-jarvis, drawn into a screen of
    /// the pane's size while `text` is sent to the agent: the view once it
    /// shows the text echoed and accepted (or after 5 s), the frames and
    /// output bytes seen.
    fn watch_while_sending(&self, host: &str, agent: &str, text: &str) -> anyhow::Result<(String, usize, usize)> {
        self.rt.block_on(async {
            let mut c = client::fleet(&self.target(0)).await?;
            let req = v1::WatchPaneRequest { host: host.into(), agent: agent.into(), ..Default::default() };
            let mut frames = c.watch_pane(req).await?.into_inner();
            let mut view = crate::term::Renderer::new((80, 24), String::new());
            let (mut count, mut bytes) = (0, 0);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while let Ok(frame) = tokio::time::timeout_at(deadline, frames.message()).await {
                let Some(frame) = frame? else { break };
                if count == 0 {
                    let (target, host, agent, text) =
                        (self.target(0), host.to_string(), agent.to_string(), text.to_string());
                    tokio::spawn(async move {
                        let Ok(mut c) = client::fleet(&target).await else { return };
                        let req = v1::SendRequest {
                            host,
                            agent,
                            text,
                            source_label: "orchestrator".into(),
                            ..Default::default()
                        };
                        let _ = c.send_message(req).await;
                    });
                }
                count += 1;
                if let Some(fleet_proto::v1::pane_frame::Body::Output(b)) = &frame.body {
                    bytes += b.len();
                }
                if let Some(why) = view.apply(&frame) {
                    return Err(anyhow!("the watch ended: {why}"));
                }
                // Echoed, then accepted (rows may wrap the text).
                if view.contents().replace('\n', "").matches(text).count() >= 2 {
                    break;
                }
            }
            Ok((view.contents(), count, bytes))
        })
    }

    fn send(&self, host: &str, agent: &str, text: &str) -> anyhow::Result<v1::SendReceipt> {
        self.rt.block_on(async {
            let mut c = client::fleet(&self.target(0)).await?;
            let req = v1::SendRequest {
                host: host.into(),
                agent: agent.into(),
                text: text.into(),
                source_label: "orchestrator".into(),
                verify: true,
                verify_timeout_ms: 3000,
                ..Default::default()
            };
            Ok(c.send_message(req).await?.into_inner())
        })
    }

    fn tour(&mut self, keep: bool) -> anyhow::Result<()> {
        println!("fleet demo: a mesh of three hosts on this machine, in {}", self.dir.display());
        self.step(1, "A mesh CA, and three hosts with their node certificates and stub agents");
        fleet_tls::install_crypto_provider();
        fleet_tls::issue::init_ca(&self.dir.join("ca"), TENANT, false)
            .map_err(|e| anyhow!("making the mesh CA: {e}"))?;
        for (i, h) in HOSTS.iter().enumerate() {
            let roster = self.setup_host(i)?;
            let names: Vec<&str> = roster.agents.iter().map(|a| a.name.as_str()).collect();
            println!("  {:<11} tmux -L {:<34} agents: {}", h.name, self.socket(i), names.join(", "));
        }

        self.step(2, "Three `fleet node` processes, mutual TLS on loopback; w-jarvis knows the other two");
        let b = self.start_node(1, "127.0.0.1:0", &[])?;
        let c = self.start_node(2, "127.0.0.1:0", &[])?;
        let a = self.start_node(0, "127.0.0.1:0", &[b.clone(), c.clone()])?;
        self.addrs = vec![a.clone(), b, c];
        for (i, h) in HOSTS.iter().enumerate() {
            println!("  {:<11} {}  (certificate fleet://{TENANT}/node/{})", h.name, self.addrs[i], h.name);
        }
        let link = self.pair_link(if keep { 3600 * 1000 } else { 10 * 60 * 1000 })?;
        println!("  the dashboard (w-jarvis's web door; the whole mesh), operator pairing link, works once:");
        println!("    {link}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let expected: usize = HOSTS.iter().map(|h| h.agents.lines().count()).sum();
        let (agents, hosts) = loop {
            let (agents, hosts) = self.list()?;
            let healthy = |r: &&AgentRecord| r.heartbeat.health == fleet_core::heartbeat::Health::Healthy;
            let ok = agents.iter().filter(healthy).count() == expected
                && hosts.iter().all(|h| h.state == fleet_core::record::HostState::Ok);
            if ok {
                break (agents, hosts);
            }
            if Instant::now() > deadline {
                print!("{}\n{}", ps::render(&agents), ps::render_hosts(&hosts));
                let sick: Vec<String> = agents
                    .iter()
                    .filter(|r| !healthy(r))
                    .map(|r| {
                        format!(
                            "{}@{} (pane {}, heartbeat {})",
                            r.name,
                            r.host,
                            r.pane.as_str(),
                            r.heartbeat.health.as_str()
                        )
                    })
                    .collect();
                return Err(anyhow!(
                    "after 10 s, {} of {expected} agents are healthy and {} of {} hosts answer; not healthy: {}",
                    agents.iter().filter(healthy).count(),
                    hosts.iter().filter(|h| h.state == fleet_core::record::HostState::Ok).count(),
                    HOSTS.len(),
                    if sick.is_empty() { "none listed".to_string() } else { sick.join(", ") }
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };

        self.step(3, "fleet ps on w-jarvis: every agent of every host, and a row per host");
        print!("{}\n{}", ps::render(&agents), ps::render_hosts(&hosts));

        self.step(4, "fleet comms coder0-0@dragon-lin: the block coder0-0 reads to reach its peers");
        let peers: Vec<fleet_core::comms::Peer> = agents
            .iter()
            .filter(|a| a.managed)
            .map(|a| fleet_core::comms::Peer { host: a.host.clone(), name: a.name.clone(), class: a.class.clone() })
            .collect();
        let block = fleet_core::comms::render("dragon-lin", "coder0-0", &peers);
        print!("{}", indent(&block));
        let rows = block.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| Agent")).count();
        if rows + 1 != peers.len() || !block.contains("(point of contact)") {
            return Err(anyhow!(
                "the comms block lists {rows} peers of {}, or no point of contact:\n{block}",
                peers.len()
            ));
        }
        println!("  (`fleet comms coder0-0@dragon-lin --write`, on dragon-lin, puts it into its AGENTS.md)");

        self.step(5, "fleet heartbeats: events stream in from every host");
        let events = self.rt.block_on(async {
            let mut c = client::fleet(&self.target(0)).await?;
            let req = v1::WatchHeartbeatsRequest {
                scope: v1::Scope::Mesh as i32,
                hosts: vec![],
                snapshot: false,
                host_tick_ms: 0,
            };
            let mut stream = c.watch_heartbeats(req).await?.into_inner();
            let mut seen: Vec<Event> = Vec::new();
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while seen.len() < 6 {
                match tokio::time::timeout_at(until, stream.message()).await {
                    Ok(Ok(Some(e))) => {
                        if let Ok(e) = Event::try_from(e)
                            && !seen.iter().any(|s| s.host == e.host && s.agent == e.agent)
                        {
                            seen.push(e);
                        }
                    }
                    _ => break,
                }
            }
            Ok::<_, anyhow::Error>(seen)
        })?;
        let hosts_heard: std::collections::BTreeSet<&str> = events.iter().map(|e| e.host.as_str()).collect();
        if hosts_heard.len() < 2 {
            return Err(anyhow!(
                "in 3 s, heartbeat events came from {} host(s) ({}), not from several",
                hosts_heard.len(),
                hosts_heard.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        for e in &events {
            let what = match &e.kind {
                EventKind::Beat { heartbeat } => {
                    format!("beat, status {}", heartbeat.status.map(|s| s.as_str()).unwrap_or("?"))
                }
                other => format!("{other:?}"),
            };
            println!("  {:<24} {what}", format!("{}@{}", e.agent, e.host));
        }

        self.step(6, "fleet send coder0-0@dragon-lin --verify, from w-jarvis");
        let r = self.send("dragon-lin", "coder0-0", "please implement the parser")?;
        let outcome = fleet_proto::convert::outcome_word_of;
        println!("  receipt: {} from {} ({}, {} ms)", outcome(r.outcome), r.host, r.detail, r.elapsed_ms);
        println!("  fleet tail coder0-0@dragon-lin -n 5, from w-jarvis:");
        let tail = self.tail("dragon-lin", "coder0-0", 5)?;
        for line in &tail.lines {
            println!("    | {line}");
        }
        let screen = tail.lines.join("\n");
        if r.outcome != v1::DeliveryOutcome::Accepted as i32 {
            return Err(anyhow!("the receipt says {} ({}), not accepted", outcome(r.outcome), r.detail));
        }
        if !screen.contains("please implement the parser") {
            return Err(anyhow!("the receipt says accepted, but coder0-0's pane does not show the text"));
        }

        self.step(7, "fleet send reviewer@dragon-lin --verify: this agent keeps its input as a draft");
        let r = self.send("dragon-lin", "reviewer", "please review PR 7")?;
        println!("  receipt: {} ({}): exit 1, never a false \"sent\"", outcome(r.outcome), r.detail);
        if r.outcome != v1::DeliveryOutcome::Draft as i32 {
            return Err(anyhow!("the receipt says {} ({}), not draft", outcome(r.outcome), r.detail));
        }

        self.step(8, "fleet watch coder0-0@dragon-lin, from w-jarvis: the pane live while a message arrives");
        let text = "and add tests for the parser";
        let (screen, frames, bytes) = self.watch_while_sending("dragon-lin", "coder0-0", text)?;
        println!("  {frames} frames ({bytes} bytes of output after the first screen); the view now:");
        for line in screen.lines().filter(|l| !l.trim().is_empty()) {
            println!("    | {line}");
        }
        if screen.replace('\n', "").matches(text).count() < 2 {
            return Err(anyhow!("5 s after the send, the watch view does not show the text accepted"));
        }

        self.step(9, "researcher@lab-3 asks for permission: fleet ps on w-jarvis shows it waiting, and why");
        // As if its task needed a person: the stub agent shows a permission prompt.
        Tmux::new(TmuxSocket::Name(self.socket(2))).run(["send-keys", "-t", "=researcher:", "/ask", "Enter"], None)?;
        let t = Instant::now();
        let deadline = t + Duration::from_secs(10);
        let row = loop {
            let (agents, _) = self.list()?;
            let row = agents.into_iter().find(|a| a.name == "researcher" && a.host == "lab-3");
            if row.as_ref().is_some_and(|r| r.activity.state == fleet_core::activity::State::Waiting)
                || Instant::now() > deadline
            {
                break row;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let Some(row) = row.filter(|r| r.activity.state == fleet_core::activity::State::Waiting) else {
            return Err(anyhow!(
                "10 s after its permission prompt, researcher@lab-3 is not waiting in w-jarvis's list"
            ));
        };
        let a = &row.activity;
        println!("  seen waiting from w-jarvis {} ms after the prompt appeared on lab-3", t.elapsed().as_millis());
        println!(
            "  ACTIVITY {}; fleet explain researcher@lab-3 says:",
            ps::activity_cell(a, fleet_node::live::now_ms())
        );
        println!("    decided by: {}\n    screen:     {}\n    hook file:  {}", a.detail, a.screen, a.hook);

        self.step(10, "lab-3's node is killed: w-jarvis answers at once, with lab-3 as unreachable; then it returns");
        if let Some(mut child) = self.children[2].take() {
            child.kill()?;
            child.wait()?;
            // Reaped: its pid may be reused, so the cleanup must not signal it.
            self.owned.lock().expect("owned").pids.retain(|p| *p != child.id());
        }
        let t = Instant::now();
        let (_, hosts) = self.list()?;
        print!("{}", indent(&ps::render_hosts(&hosts)));
        println!("  (answered in {} ms)", t.elapsed().as_millis());
        let lab3 = |hosts: &[HostStatus]| hosts.iter().find(|h| h.host == "lab-3").map(|h| h.state);
        if lab3(&hosts).is_none_or(|s| s == fleet_core::record::HostState::Ok) {
            return Err(anyhow!(
                "with its node killed, lab-3 is {:?} in w-jarvis's list, not a host that cannot be reached",
                lab3(&hosts)
            ));
        }
        let addr = self.addrs[2].clone();
        self.start_node(2, &addr, &[])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let hosts = loop {
            let (_, hosts) = self.list()?;
            let back = hosts.iter().any(|h| h.host == "lab-3" && h.state == fleet_core::record::HostState::Ok);
            if back || Instant::now() > deadline {
                break hosts;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        println!("  restarted on {addr}:");
        print!("{}", indent(&ps::render_hosts(&hosts)));
        if lab3(&hosts) != Some(fleet_core::record::HostState::Ok) {
            return Err(anyhow!("10 s after its node restarted, lab-3 is {:?}, not ok", lab3(&hosts)));
        }

        if keep {
            self.step(11, "Kept running. Use it with:");
            let tmux = std::env::var("TMUX_TMPDIR").unwrap_or_else(|_| "/tmp".into());
            println!("  the dashboard, operator, one hour to open once: {}", self.pair_link(3600 * 1000)?);
            println!("  export MOSAIC_HOME={}   # the CLI talks to w-jarvis's node", self.home(0).display());
            println!("  fleet web (where the dashboard is); fleet web pair --role operator (another link)");
            println!("  fleet ps; fleet heartbeats; fleet send coder0-0@dragon-lin --verify -m hi");
            println!("  off-host style: FLEET_NODE=https://{} with an operator certificate:", self.addrs[0]);
            println!(
                "    fleet certs issue operator --name me --dir {}/ca --out DIR; FLEET_CERTS_DIR=DIR",
                self.dir.display()
            );
            println!(
                "  look at a pane: fleet watch coder0-0@dragon-lin; type into it: fleet attach coder0-0@dragon-lin"
            );
            println!("  or with tmux itself: TMUX_TMPDIR={tmux} tmux -L {} attach -r -t =coder0-0", self.socket(1));
            let pids = self.owned.lock().expect("owned").pids.clone();
            let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
            println!(
                "  remove it: kill {}; for s in {}; do tmux -L $s kill-server; done; rm -rf {}",
                pids.join(" "),
                (0..HOSTS.len()).map(|i| self.socket(i)).collect::<Vec<_>>().join(" "),
                self.dir.display()
            );
            // Detach the children: they outlive this process.
            self.children.clear();
        }
        Ok(())
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
