//! The roster: `$MOSAIC_HOME/fleet/roster.yaml`, the source of truth for which
//! agents a host runs (format in CONTEXT.md).
//!
//! Keys are accepted in snake_case and camelCase; unknown keys are errors. The
//! parser reports *every* problem it finds, each with line, column and key
//! path, instead of stopping at the first.

use crate::names::{AgentName, DnsLabel, check_agent_chars};
use crate::yaml::{self, Node, Pos, Value};
use std::collections::BTreeMap;
use std::fmt;

/// How a tmux server is addressed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum TmuxSocket {
    /// The user's default server: no `-L`/`-S`.
    Default,
    /// `tmux -L NAME`.
    Name(String),
    /// `tmux -S PATH`.
    Path(String),
}

impl TmuxSocket {
    /// A socket given as one string: a value with '/' is a path, else a name.
    pub fn from_spec(spec: &str) -> Self {
        if spec.is_empty() {
            TmuxSocket::Default
        } else if spec.contains('/') {
            TmuxSocket::Path(spec.to_string())
        } else {
            TmuxSocket::Name(spec.to_string())
        }
    }

    /// The string form (inverse of [`TmuxSocket::from_spec`]); empty for the default server.
    pub fn spec(&self) -> &str {
        match self {
            TmuxSocket::Default => "",
            TmuxSocket::Name(s) | TmuxSocket::Path(s) => s,
        }
    }
}

impl fmt::Display for TmuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmuxSocket::Default => f.write_str("the default tmux server"),
            TmuxSocket::Name(n) => write!(f, "tmux socket -L {n}"),
            TmuxSocket::Path(p) => write!(f, "tmux socket -S {p}"),
        }
    }
}

/// Where a runtime's heartbeats come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatSource {
    /// The launcher runs a heartbeat writer beside the pane (the default).
    #[default]
    Launcher,
    /// The program writes its own heartbeat file.
    #[serde(rename = "self")]
    SelfWritten,
}

/// A runtime's settings (`runtimes:` in the roster).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeSpec {
    pub reset_command: Option<String>,
    /// The command that starts the runtime; default: the runtime's name.
    pub command: Option<String>,
    /// Process names a pane of this runtime may show (drift detection); default:
    /// the built-in table of [`crate::runtime`].
    pub process_names: Option<Vec<String>>,
    pub heartbeat: HeartbeatSource,
    /// The pause between pasting a message and pressing Enter, for programs
    /// that read a paste asynchronously; default [`DEFAULT_ENTER_DELAY_MS`].
    pub enter_delay_ms: Option<u64>,
}

/// The one profile without an enhancer.
pub const MINIMAL_PROFILE: &str = "minimal";

/// The default pause between paste and Enter.
pub const DEFAULT_ENTER_DELAY_MS: u64 = 120;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Persona {
    Flag(bool),
    Text(String),
}

/// One agent of the roster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AgentSpec {
    pub name: AgentName,
    pub runtime: String,
    pub class: Option<String>,
    pub persistent_persona: Option<Persona>,
    pub model_hint: Option<String>,
    pub working_directory: Option<String>,
    pub reset_between_tasks: Option<bool>,
    pub kickstart_template: Option<String>,
    /// The host this agent runs on; `None` = every host that reads this roster.
    pub host: Option<DnsLabel>,
    /// The legacy ssh destination of the agent's host (carried, not used).
    pub ssh: Option<String>,
    /// A socket of its own, overriding the roster's `tmux.socket_name`.
    pub socket: Option<TmuxSocket>,
    /// Where the agent was declared.
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Defaults {
    pub working_directory: Option<String>,
    pub runtime: Option<String>,
    pub model_hint: Option<String>,
    pub reset_between_tasks: Option<bool>,
}

/// A parsed, validated roster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Roster {
    pub version: u64,
    pub tenant_id: Option<DnsLabel>,
    /// The profile the fleet was made from (`general`, `coding`, `research`,
    /// `hybrid`, `minimal`, or the operator's own word); `minimal` needs no enhancer.
    pub profile: Option<String>,
    pub socket: TmuxSocket,
    pub holder_session: Option<String>,
    pub defaults: Defaults,
    pub runtimes: BTreeMap<String, RuntimeSpec>,
    pub agents: Vec<AgentSpec>,
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in a roster: where, which key, what.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub line: usize,
    pub column: usize,
    /// The key path, e.g. `agents[2].runtime`; empty for the document itself.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.key.is_empty() {
            write!(f, "{}:{}: {sev}: {}", self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}: {sev}: {}: {}", self.line, self.column, self.key, self.message)
        }
    }
}

/// Every error found in a roster (at least one), plus the warnings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the roster, first: {}", .problems.len(), .problems[0])]
pub struct RosterErrors {
    pub problems: Vec<Problem>,
}

impl Roster {
    /// Parse and validate a roster text. On success, the warnings (fleet
    /// invariants) are available from [`Roster::invariant_warnings`].
    pub fn parse(text: &str) -> Result<Roster, RosterErrors> {
        let root = match yaml::parse(text) {
            Ok(root) => root,
            Err(e) => {
                return Err(RosterErrors {
                    problems: vec![Problem {
                        severity: Severity::Error,
                        line: e.pos.line,
                        column: e.pos.col,
                        key: String::new(),
                        message: format!("YAML syntax: {}", e.message),
                    }],
                });
            }
        };
        let mut cx = Cx::default();
        let roster = read_roster(&mut cx, &root);
        cx.problems.sort_by_key(|p| (p.line, p.column));
        match roster {
            Some(r) if cx.problems.is_empty() => Ok(r),
            _ => Err(RosterErrors { problems: cx.problems }),
        }
    }

    /// The fleet invariants that are worth a warning but do not make the roster
    /// unusable: exactly one orchestrator, at least one enhancer.
    pub fn invariant_warnings(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let orchestrators: Vec<&AgentSpec> =
            self.agents.iter().filter(|a| a.class.as_deref() == Some("orchestrator")).collect();
        let warn = |pos: Pos, key: &str, message: String| Problem {
            severity: Severity::Warning,
            line: pos.line,
            column: pos.col,
            key: key.into(),
            message,
        };
        let agents_pos = self.agents.first().map(|a| a.pos).unwrap_or(Pos { line: 1, col: 1 });
        match orchestrators.len() {
            1 => {}
            0 => out.push(warn(
                agents_pos,
                "agents",
                "no agent has class orchestrator; a fleet needs exactly one, the operator's point of contact"
                    .into(),
            )),
            n => out.push(warn(
                orchestrators[1].pos,
                "agents",
                format!(
                    "{n} agents have class orchestrator ({}); a fleet has exactly one, or operators and agents cannot tell whom to address",
                    orchestrators.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
        if !self.is_minimal() && !self.agents.iter().any(|a| a.class.as_deref() == Some("enhancer")) {
            out.push(warn(
                agents_pos,
                "agents",
                "no agent has class enhancer; every profile but minimal needs one to refine prompts before work starts"
                    .into(),
            ));
        }
        out
    }

    /// Whether this is the `minimal` profile, the one that needs no enhancer.
    pub fn is_minimal(&self) -> bool {
        self.profile.as_deref() == Some(MINIMAL_PROFILE)
    }

    /// The socket an agent lives on.
    pub fn socket_of<'a>(&'a self, agent: &'a AgentSpec) -> &'a TmuxSocket {
        agent.socket.as_ref().unwrap_or(&self.socket)
    }

    /// The agents that run on `host` (those with no `host` run everywhere).
    pub fn agents_on<'a, 'h>(&'a self, host: &'h DnsLabel) -> impl Iterator<Item = &'a AgentSpec> + use<'a, 'h> {
        self.agents.iter().filter(move |a| a.host.as_ref().is_none_or(|h| h == host))
    }

    /// `name` as one of the agents that run on `host`, or why not, naming
    /// the known ones: `no such agent NAME in the roster of host HOST (known: ...)`.
    pub fn agent_on(&self, host: &DnsLabel, name: &str) -> Result<&AgentSpec, String> {
        if let Some(a) = self.agents_on(host).find(|a| a.name.as_str() == name) {
            return Ok(a);
        }
        let known: Vec<&str> = self.agents_on(host).map(|a| a.name.as_str()).collect();
        Err(format!("no such agent {name} in the roster of host {host} ({})", crate::names::known(name, &known)))
    }

    pub fn agent(&self, name: &str) -> Option<&AgentSpec> {
        self.agents.iter().find(|a| a.name.as_str() == name)
    }

    pub fn runtime(&self, name: &str) -> Option<&RuntimeSpec> {
        self.runtimes.get(name)
    }

    /// The pause between paste and Enter for a session of this roster (an
    /// unknown session gets the default).
    pub fn enter_delay_ms(&self, agent: &str) -> u64 {
        self.agent(agent)
            .and_then(|a| self.runtime(&a.runtime))
            .and_then(|r| r.enter_delay_ms)
            .unwrap_or(DEFAULT_ENTER_DELAY_MS)
    }

    /// The agent's working directory: its own, else the roster default.
    pub fn working_directory<'a>(&'a self, agent: &'a AgentSpec) -> Option<&'a str> {
        agent.working_directory.as_deref().or(self.defaults.working_directory.as_deref())
    }
}

// ---------------------------------------------------------------- reading

#[derive(Default)]
struct Cx {
    problems: Vec<Problem>,
}

impl Cx {
    fn error(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            severity: Severity::Error,
            line: pos.line,
            column: pos.col,
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// `socketName` -> `socket_name`; snake_case stays as it is.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The entries of a map node, keyed by their snake_case name, with unknown and
/// duplicate keys reported.
struct Fields<'a> {
    path: String,
    entries: Vec<(String, &'a Node, &'a Node)>,
}

impl<'a> Fields<'a> {
    fn read(cx: &mut Cx, node: &'a Node, path: &str, allowed: &[&str]) -> Option<Fields<'a>> {
        let Value::Map(map) = &node.value else {
            cx.error(node.pos, path, format!("expected a map, found {}", node.kind()));
            return None;
        };
        let mut entries: Vec<(String, &Node, &Node)> = Vec::new();
        for (k, v) in map {
            let Some(raw) = k.as_str() else {
                cx.error(k.pos, path, format!("expected a string key, found {}", k.kind()));
                continue;
            };
            let key = snake_case(raw);
            let full = join(path, raw);
            if !allowed.contains(&key.as_str()) || (raw != key && raw.contains('_')) {
                cx.error(k.pos, &full, format!("unknown key {raw:?}; expected one of: {}", allowed.join(", ")));
                continue;
            }
            if let Some((_, first, _)) = entries.iter().find(|(name, _, _)| *name == key) {
                cx.error(
                    k.pos,
                    &full,
                    format!(
                        "duplicate key (already given at line {} as {:?})",
                        first.pos.line,
                        first.as_str().unwrap_or("")
                    ),
                );
                continue;
            }
            entries.push((key, k, v));
        }
        Some(Fields { path: path.to_string(), entries })
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| *v).filter(|v| !v.is_null())
    }

    fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn string(&self, cx: &mut Cx, key: &str) -> Option<String> {
        let node = self.get(key)?;
        match &node.value {
            Value::Scalar { text, .. } => Some(text.clone()),
            _ => {
                cx.error(node.pos, &self.key_path(key), format!("expected a string, found {}", node.kind()));
                None
            }
        }
    }

    fn bool(&self, cx: &mut Cx, key: &str) -> Option<bool> {
        let node = self.get(key)?;
        let b = node.as_bool();
        if b.is_none() {
            cx.error(node.pos, &self.key_path(key), format!("expected true or false, found {}", describe(node)));
        }
        b
    }

    fn label(&self, cx: &mut Cx, key: &str, what: &'static str) -> Option<DnsLabel> {
        let node = self.get(key)?;
        let s = self.string(cx, key)?;
        DnsLabel::parse_as(what, &s).map_err(|e| cx.error(node.pos, &self.key_path(key), e.to_string())).ok()
    }

    /// A missing key is reported at the map's first key (where the reader looks).
    fn required(&self, cx: &mut Cx, key: &str, at: Pos) -> Option<&'a Node> {
        let node = self.get(key);
        if node.is_none() {
            let at = self.entries.first().map_or(at, |(_, k, _)| k.pos);
            cx.error(at, &self.key_path(key), "required key is missing");
        }
        node
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn describe(node: &Node) -> String {
    match node.as_str() {
        Some(s) => format!("{s:?}"),
        None => node.kind().to_string(),
    }
}

const TOP_KEYS: &[&str] = &["version", "transport", "tenant_id", "profile", "tmux", "defaults", "runtimes", "agents"];
const TMUX_KEYS: &[&str] = &["socket_name", "socket_path", "holder_session"];
const DEFAULT_KEYS: &[&str] = &["working_directory", "runtime", "model_hint", "reset_between_tasks"];
const RUNTIME_KEYS: &[&str] = &["reset_command", "command", "process_names", "heartbeat", "enter_delay_ms"];
const AGENT_KEYS: &[&str] = &[
    "name",
    "runtime",
    "class",
    "persistent_persona",
    "model_hint",
    "working_directory",
    "reset_between_tasks",
    "kickstart_template",
    "host",
    "ssh",
    "socket",
];

fn read_roster(cx: &mut Cx, root: &Node) -> Option<Roster> {
    if root.is_null() {
        cx.error(root.pos, "", "the roster is empty; it needs at least `version: 1` and `agents:`");
        return None;
    }
    let f = Fields::read(cx, root, "", TOP_KEYS)?;
    let version = match f.get("version") {
        None => 1,
        Some(n) => match n.as_u64() {
            Some(1) => 1,
            _ => {
                cx.error(
                    n.pos,
                    "version",
                    format!("unsupported roster version {}; this fleet reads version 1", describe(n)),
                );
                1
            }
        },
    };
    if let Some(t) = f.string(cx, "transport")
        && t != "tmux"
    {
        let pos = f.get("transport").map(|n| n.pos).unwrap_or_default();
        cx.error(pos, "transport", format!("unsupported transport {t:?}; only tmux is supported"));
    }
    let tenant_id = f.label(cx, "tenant_id", "tenant id");
    let profile = f.string(cx, "profile");

    let (mut socket, mut holder_session) = (TmuxSocket::Default, None);
    if let Some(node) = f.get("tmux")
        && let Some(t) = Fields::read(cx, node, "tmux", TMUX_KEYS)
    {
        let name = t.string(cx, "socket_name");
        let path = t.string(cx, "socket_path");
        match (name, path) {
            (Some(n), Some(_)) => {
                let pos = t.get("socket_path").map(|n| n.pos).unwrap_or_default();
                cx.error(pos, "tmux.socket_path", format!("give socket_name ({n:?}) or socket_path, not both"));
            }
            (Some(n), None) if n.is_empty() => {
                let pos = t.get("socket_name").map(|n| n.pos).unwrap_or_default();
                cx.error(
                    pos,
                    "tmux.socket_name",
                    "an empty socket name is not a tmux socket; to use the default tmux server, leave socket_name out",
                );
            }
            (None, Some(p)) if p.is_empty() => {
                let pos = t.get("socket_path").map(|n| n.pos).unwrap_or_default();
                cx.error(
                    pos,
                    "tmux.socket_path",
                    "an empty socket path is not a tmux socket; to use the default tmux server, leave socket_path out",
                );
            }
            (Some(n), None) if n.contains('/') => {
                let pos = t.get("socket_name").map(|n| n.pos).unwrap_or_default();
                cx.error(pos, "tmux.socket_name", "a socket name may not contain '/'; use socket_path for a path");
            }
            (Some(n), None) => socket = TmuxSocket::Name(n),
            (None, Some(p)) => socket = TmuxSocket::Path(p),
            (None, None) => {}
        }
        holder_session = t.string(cx, "holder_session");
        if let (Some(h), Some(node)) = (&holder_session, t.get("holder_session"))
            && let Err(e) = check_agent_chars("holder session", h)
        {
            cx.error(node.pos, "tmux.holder_session", e.to_string());
        }
    }

    let mut defaults = Defaults::default();
    if let Some(node) = f.get("defaults")
        && let Some(d) = Fields::read(cx, node, "defaults", DEFAULT_KEYS)
    {
        defaults.working_directory = d.string(cx, "working_directory");
        defaults.runtime = d.string(cx, "runtime");
        defaults.model_hint = d.string(cx, "model_hint");
        defaults.reset_between_tasks = d.bool(cx, "reset_between_tasks");
    }

    let mut runtimes = BTreeMap::new();
    if let Some(node) = f.get("runtimes") {
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let Some(name) = k.as_str() else {
                        cx.error(k.pos, "runtimes", "expected a runtime name");
                        continue;
                    };
                    let path = format!("runtimes.{name}");
                    if v.is_null() {
                        runtimes.insert(name.to_string(), RuntimeSpec::default());
                        continue;
                    }
                    if let Some(r) = Fields::read(cx, v, &path, RUNTIME_KEYS) {
                        runtimes.insert(name.to_string(), read_runtime(cx, &r));
                    }
                }
            }
            _ => cx.error(node.pos, "runtimes", format!("expected a map of runtime names, found {}", node.kind())),
        }
    }

    let mut agents: Vec<AgentSpec> = Vec::new();
    match f.required(cx, "agents", root.pos) {
        Some(Node { value: Value::Seq(items), .. }) => {
            // Names as written, also of agents with other problems, so that
            // duplicates are reported whatever else is wrong.
            let mut seen: Vec<(&str, Pos)> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("agents[{i}]");
                if let Value::Map(entries) = &item.value
                    && let Some((_, name)) = entries.iter().find(|(k, _)| k.as_str() == Some("name"))
                    && let Some(n) = name.as_str()
                {
                    match seen.iter().find(|(m, _)| *m == n) {
                        Some((_, first)) => cx.error(
                            name.pos,
                            &format!("{path}.name"),
                            format!("duplicate agent name {n:?} (first declared at line {})", first.line),
                        ),
                        None => seen.push((n, name.pos)),
                    }
                }
                if let Some(a) = read_agent(cx, item, &path, &defaults) {
                    agents.push(a);
                }
            }
        }
        Some(node) => cx.error(node.pos, "agents", format!("expected a list of agents, found {}", node.kind())),
        None => {}
    }
    Some(Roster { version, tenant_id, profile, socket, holder_session, defaults, runtimes, agents })
}

fn read_runtime(cx: &mut Cx, r: &Fields<'_>) -> RuntimeSpec {
    let process_names = r.get("process_names").and_then(|n| match &n.value {
        Value::Seq(items) => {
            let names: Vec<String> = items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect();
            if names.len() != items.len() {
                cx.error(n.pos, &r.key_path("process_names"), "expected a list of process names (strings)");
            }
            Some(names)
        }
        _ => {
            cx.error(n.pos, &r.key_path("process_names"), format!("expected a list, found {}", n.kind()));
            None
        }
    });
    let heartbeat = match r.string(cx, "heartbeat").as_deref() {
        None | Some("launcher") => HeartbeatSource::Launcher,
        Some("self") => HeartbeatSource::SelfWritten,
        Some(other) => {
            let pos = r.get("heartbeat").map(|n| n.pos).unwrap_or_default();
            cx.error(pos, &r.key_path("heartbeat"), format!("expected launcher or self, found {other:?}"));
            HeartbeatSource::Launcher
        }
    };
    let enter_delay_ms = r.get("enter_delay_ms").and_then(|n| {
        let ms = n.as_u64().filter(|ms| *ms <= 10_000);
        if ms.is_none() {
            cx.error(n.pos, &r.key_path("enter_delay_ms"), "expected milliseconds, 0 to 10000");
        }
        ms
    });
    RuntimeSpec {
        reset_command: r.string(cx, "reset_command"),
        command: r.string(cx, "command"),
        process_names,
        heartbeat,
        enter_delay_ms,
    }
}

fn read_agent(cx: &mut Cx, node: &Node, path: &str, defaults: &Defaults) -> Option<AgentSpec> {
    let f = Fields::read(cx, node, path, AGENT_KEYS)?;
    let name_node = f.required(cx, "name", node.pos);
    let name = name_node.and_then(|n| match n.as_str().map(str::parse::<AgentName>) {
        Some(Ok(name)) => Some(name),
        Some(Err(e)) => {
            cx.error(n.pos, &f.key_path("name"), e.to_string());
            None
        }
        None => {
            cx.error(n.pos, &f.key_path("name"), format!("expected a string, found {}", n.kind()));
            None
        }
    });
    let runtime = match f.get("runtime") {
        Some(_) => f.string(cx, "runtime"),
        None => match &defaults.runtime {
            Some(r) => Some(r.clone()),
            None => {
                f.required(cx, "runtime", node.pos);
                None
            }
        },
    };
    let persistent_persona = f.get("persistent_persona").and_then(|n| match (n.as_bool(), n.as_str()) {
        (Some(b), _) => Some(Persona::Flag(b)),
        (None, Some(s)) => Some(Persona::Text(s.to_string())),
        _ => {
            cx.error(
                n.pos,
                &f.key_path("persistent_persona"),
                format!("expected true, false or a text, found {}", n.kind()),
            );
            None
        }
    });
    let socket = f.string(cx, "socket").map(|s| TmuxSocket::from_spec(&s));
    let spec = AgentSpec {
        name: name?,
        runtime: runtime?,
        class: f.string(cx, "class"),
        persistent_persona,
        model_hint: f.string(cx, "model_hint").or_else(|| defaults.model_hint.clone()),
        working_directory: f.string(cx, "working_directory"),
        reset_between_tasks: f.bool(cx, "reset_between_tasks").or(defaults.reset_between_tasks),
        kickstart_template: f.string(cx, "kickstart_template"),
        host: f.label(cx, "host", "host name"),
        ssh: f.string(cx, "ssh"),
        socket,
        pos: node.pos,
    };
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT_EXAMPLE: &str = r#"version: 1
transport: tmux
tmux: { socket_name: mosaic-fleet, holder_session: _holder }
defaults: { working_directory: ~/src }
runtimes: { claude: { reset_command: /clear }, pi: { reset_command: /new } }
agents:
  - name: orchestrator
    runtime: claude
    class: orchestrator
    persistent_persona: true
    model_hint: openai-codex/gpt-5.5:high
    working_directory: ~/src/app
    reset_between_tasks: false
    kickstart_template: hello
  - name: enhancer
    runtime: pi
    class: enhancer
    persistent_persona: "a careful editor"
"#;

    fn errors(text: &str) -> Vec<Problem> {
        Roster::parse(text).unwrap_err().problems
    }

    #[test]
    fn the_context_example_parses() {
        let r = Roster::parse(CONTEXT_EXAMPLE).unwrap();
        assert_eq!(r.socket, TmuxSocket::Name("mosaic-fleet".into()));
        assert_eq!(r.holder_session.as_deref(), Some("_holder"));
        assert_eq!(r.agents.len(), 2);
        let o = &r.agents[0];
        assert_eq!(o.name.as_str(), "orchestrator");
        assert_eq!(o.persistent_persona, Some(Persona::Flag(true)));
        assert_eq!(o.reset_between_tasks, Some(false));
        assert_eq!(r.agents[1].persistent_persona, Some(Persona::Text("a careful editor".into())));
        assert_eq!(r.working_directory(&r.agents[1]), Some("~/src"));
        assert_eq!(r.runtime("pi").unwrap().reset_command.as_deref(), Some("/new"));
        assert!(r.invariant_warnings().is_empty());
    }

    #[test]
    fn camel_case_keys_are_accepted() {
        let r = Roster::parse(
            "tenantId: ops\ntmux: { socketName: s1, holderSession: h }\nagents:\n  - { name: a, runtime: claude, workingDirectory: /x, resetBetweenTasks: true, persistentPersona: false }\n",
        )
        .unwrap();
        assert_eq!(r.tenant_id.unwrap().as_str(), "ops");
        assert_eq!(r.socket, TmuxSocket::Name("s1".into()));
        assert_eq!(r.agents[0].working_directory.as_deref(), Some("/x"));
        assert_eq!(r.agents[0].reset_between_tasks, Some(true));
    }

    #[test]
    fn no_socket_name_means_the_default_server() {
        let r = Roster::parse("agents:\n  - { name: a, runtime: pi }\n").unwrap();
        assert_eq!(r.socket, TmuxSocket::Default);
        assert_eq!(r.socket.spec(), "");
    }

    #[test]
    fn per_agent_host_ssh_and_socket() {
        let r = Roster::parse(
            "agents:\n  - { name: a, runtime: pi, host: Dragon-Lin, ssh: me@dragon-lin, socket: other }\n  - { name: b, runtime: pi, socket: /tmp/s }\n",
        )
        .unwrap();
        assert_eq!(r.agents[0].host.as_ref().unwrap().as_str(), "dragon-lin");
        assert_eq!(r.agents[0].ssh.as_deref(), Some("me@dragon-lin"));
        assert_eq!(r.socket_of(&r.agents[0]), &TmuxSocket::Name("other".into()));
        assert_eq!(r.socket_of(&r.agents[1]), &TmuxSocket::Path("/tmp/s".into()));
        let here = DnsLabel::parse_as("host", "w-jarvis").unwrap();
        let names: Vec<_> = r.agents_on(&here).map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn every_problem_is_reported_with_line_column_and_key() {
        let text = "version: 1\nbogus: 1\nagents:\n  - name: ok\n    runtime: claude\n  - name: bad name\n    runtime: pi\n  - name: x\n    colour: red\n";
        let p = errors(text);
        let shown: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(p.len(), 4, "{shown:#?}");
        assert_eq!((p[0].line, p[0].column, p[0].key.as_str()), (2, 1, "bogus"));
        assert!(p[0].message.starts_with("unknown key \"bogus\""));
        assert_eq!((p[1].line, p[1].column, p[1].key.as_str()), (6, 11, "agents[1].name"));
        assert!(p[1].message.contains("contains ' '"), "{}", p[1].message);
        // agents[2]: missing runtime (at the item) and an unknown key.
        assert_eq!((p[2].line, p[2].key.as_str()), (8, "agents[2].runtime"));
        assert_eq!(p[2].message, "required key is missing");
        assert_eq!((p[3].line, p[3].column, p[3].key.as_str()), (9, 5, "agents[2].colour"));
    }

    #[test]
    fn wrong_types_are_named() {
        let p = errors("agents:\n  - { name: a, runtime: pi, reset_between_tasks: maybe }\n");
        assert_eq!(p[0].key, "agents[0].reset_between_tasks");
        assert_eq!(p[0].message, "expected true or false, found \"maybe\"");
        let p = errors("agents: {a: 1}\n");
        assert_eq!(p[0].message, "expected a list of agents, found a map");
        let p = errors("version: 2\nagents: []\n");
        assert!(p[0].message.contains("unsupported roster version"));
        let p = errors("transport: ssh\nagents: []\n");
        assert!(p[0].message.contains("only tmux"));
        let p = errors("tenant_id: a_b\nagents: []\n");
        assert_eq!(p[0].key, "tenant_id");
    }

    #[test]
    fn duplicate_names_and_keys_are_errors() {
        let p = errors("agents:\n  - { name: a, runtime: pi }\n  - { name: a, runtime: pi }\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "agents[1].name");
        assert!(p[0].message.contains("first declared at line 2"));
        let p = errors("tmux: { socket_name: a, socketName: b }\nagents: []\n");
        assert!(p[0].message.starts_with("duplicate key"), "{:?}", p[0]);
    }

    #[test]
    fn mixed_case_spellings_are_unknown() {
        let p = errors("agents:\n  - { name: a, runtime: pi, working_Directory: x }\n");
        assert_eq!(p[0].key, "agents[0].working_Directory");
    }

    #[test]
    fn syntax_errors_and_empty_files() {
        let p = errors("agents: [\n");
        assert!(p[0].message.starts_with("YAML syntax"));
        let p = errors("");
        assert!(p[0].message.contains("empty"));
        let p = errors("version: 1\n");
        assert_eq!((p[0].key.as_str(), p[0].message.as_str()), ("agents", "required key is missing"));
    }

    #[test]
    fn invariants_warn_with_reasons() {
        let r = Roster::parse("agents:\n  - { name: a, runtime: pi, class: orchestrator }\n  - { name: b, runtime: pi, class: orchestrator }\n").unwrap();
        let w = r.invariant_warnings();
        assert_eq!(w.len(), 2);
        assert!(w[0].message.contains("2 agents have class orchestrator (a, b)"));
        assert!(w[1].message.contains("no agent has class enhancer"));
        assert!(w.iter().all(|w| w.severity == Severity::Warning));
        let r = Roster::parse("agents:\n  - { name: e, runtime: pi, class: enhancer }\n").unwrap();
        assert!(r.invariant_warnings()[0].message.starts_with("no agent has class orchestrator"));
    }

    #[test]
    fn runtimes_carry_drift_names_and_heartbeat_source() {
        let r = Roster::parse(
            "runtimes:\n  stub: { command: fleet stub-agent, process_names: [fleet], heartbeat: self }\n  claude:\nagents: []\n",
        )
        .unwrap();
        let s = r.runtime("stub").unwrap();
        assert_eq!(s.process_names.as_deref(), Some(&["fleet".to_string()][..]));
        assert_eq!(s.heartbeat, HeartbeatSource::SelfWritten);
        assert_eq!(r.runtime("claude"), Some(&RuntimeSpec::default()));
        let p = errors("runtimes: { x: { heartbeat: sometimes } }\nagents: []\n");
        assert_eq!(p[0].key, "runtimes.x.heartbeat");
    }

    /// The one problem of a roster text: (key, message).
    fn only_problem(text: &str) -> (String, String) {
        let p = errors(text);
        assert_eq!(p.len(), 1, "{p:#?}");
        (p[0].key.clone(), p[0].message.clone())
    }

    #[test]
    fn tmux_section_errors() {
        let (key, msg) = only_problem("tmux: { socket_name: \"\" }\nagents: []\n");
        assert_eq!(key, "tmux.socket_name");
        assert!(msg.contains("leave socket_name out"), "{msg}");
        let (key, msg) = only_problem("tmux: { socketPath: '' }\nagents: []\n");
        assert_eq!(key, "tmux.socket_path");
        assert!(msg.contains("leave socket_path out"), "{msg}");
        let p = errors("tmux:\n  socket_name: a\n  socket_path: /tmp/s\nagents: []\n");
        assert_eq!((p[0].line, p[0].key.as_str()), (3, "tmux.socket_path"));
        assert_eq!(p[0].message, "give socket_name (\"a\") or socket_path, not both");
        let (key, msg) = only_problem("tmux: { socket_name: a/b }\nagents: []\n");
        assert_eq!(key, "tmux.socket_name");
        assert_eq!(msg, "a socket name may not contain '/'; use socket_path for a path");
        let (key, msg) = only_problem("tmux: { holder_session: \"hold er\" }\nagents: []\n");
        assert_eq!(key, "tmux.holder_session");
        assert!(msg.starts_with("holder session \"hold er\" contains ' '"), "{msg}");
        let (key, msg) = only_problem("tmux: { holder_session: a.b }\nagents: []\n");
        assert_eq!(key, "tmux.holder_session");
        assert!(msg.contains("tmux turns into '_'"), "{msg}");
        let (key, msg) = only_problem("tmux: [a]\nagents: []\n");
        assert_eq!((key.as_str(), msg.as_str()), ("tmux", "expected a map, found a list"));
    }

    #[test]
    fn wrong_types_of_persona_process_names_and_runtimes() {
        let (key, msg) = only_problem("agents:\n  - { name: a, runtime: pi, persistent_persona: [x] }\n");
        assert_eq!(key, "agents[0].persistent_persona");
        assert_eq!(msg, "expected true, false or a text, found a list");
        let (key, msg) = only_problem("agents:\n  - { name: a, runtime: pi, persistent_persona: {a: 1} }\n");
        assert_eq!(key, "agents[0].persistent_persona");
        assert_eq!(msg, "expected true, false or a text, found a map");
        let (key, msg) = only_problem("runtimes: { x: { process_names: node } }\nagents: []\n");
        assert_eq!(key, "runtimes.x.process_names");
        assert_eq!(msg, "expected a list, found a scalar");
        let (key, msg) = only_problem("runtimes: { x: { process_names: [node, [bun]] } }\nagents: []\n");
        assert_eq!(key, "runtimes.x.process_names");
        assert_eq!(msg, "expected a list of process names (strings)");
        let (key, msg) = only_problem("runtimes: [claude]\nagents: []\n");
        assert_eq!(key, "runtimes");
        assert_eq!(msg, "expected a map of runtime names, found a list");
        let (key, msg) = only_problem("runtimes: claude\nagents: []\n");
        assert_eq!((key.as_str(), msg.as_str()), ("runtimes", "expected a map of runtime names, found a scalar"));
        let (key, msg) = only_problem("runtimes: { x: [a] }\nagents: []\n");
        assert_eq!((key.as_str(), msg.as_str()), ("runtimes.x", "expected a map, found a list"));
    }

    #[test]
    fn non_string_keys_are_errors() {
        let p = errors("? [a, b]\n: 1\nagents: []\n");
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!((p[0].line, p[0].key.as_str()), (1, ""));
        assert_eq!(p[0].message, "expected a string key, found a list");
        let (key, msg) = only_problem("agents:\n  - { name: a, runtime: pi, [x]: 1 }\n");
        assert_eq!((key.as_str(), msg.as_str()), ("agents[0]", "expected a string key, found a list"));
        let (key, msg) = only_problem("runtimes: { [x]: {} }\nagents: []\n");
        assert_eq!((key.as_str(), msg.as_str()), ("runtimes", "expected a runtime name"));
    }

    #[test]
    fn enter_delay_per_runtime() {
        let r = Roster::parse("runtimes: { fast: { enter_delay_ms: 0 } }\nagents:\n  - { name: a, runtime: fast }\n  - { name: b, runtime: claude }\n").unwrap();
        assert_eq!(
            (r.enter_delay_ms("a"), r.enter_delay_ms("b"), r.enter_delay_ms("zz")),
            (0, DEFAULT_ENTER_DELAY_MS, DEFAULT_ENTER_DELAY_MS)
        );
        let p = errors("runtimes: { x: { enter_delay_ms: soon } }\nagents: []\n");
        assert_eq!(p[0].key, "runtimes.x.enter_delay_ms");
    }

    #[test]
    fn defaults_fill_runtime() {
        let r = Roster::parse("defaults: { runtime: pi }\nagents:\n  - name: a\n").unwrap();
        assert_eq!(r.agents[0].runtime, "pi");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Lines a roster is made of, right and slightly wrong, so that
        /// generated texts reach past the YAML parser into validation.
        const LINES: &[&str] = &[
            "version: 1",
            "version: 2",
            "transport: tmux",
            "tenant_id: acme",
            "tenant_id: -bad-",
            "tmux: { socket_name: mosaic-fleet, holder_session: _holder }",
            "tmux: { socketPath: /tmp/x }",
            "tmux: [",
            "defaults: { working_directory: ~/src, runtime: pi }",
            "runtimes: { claude: { reset_command: /clear }, pi: { reset_command: /new } }",
            "runtimes: { x: { enter_delay_ms: -1, heartbeat: self, process_names: [a] } }",
            "agents:",
            "agents: []",
            "  - { name: orchestrator, runtime: claude, class: orchestrator }",
            "  - { name: e, runtime: pi, class: enhancer, host: h }",
            "  - name: coder0-0",
            "    runtime: claude",
            "    persistent_persona: yes",
            "    model_hint: openai/gpt:high",
            "  - { name: bad/name, runtime: pi }",
            "  - { name: dup, runtime: pi }",
            "  - &a { name: anchored, runtime: pi }",
            "  - *a",
            "  - *missing",
            "unknown_key: 1",
            "  nested: { deeper: [1, 2, { x: y }] }",
            "- top level list",
            "\t tab",
            "'quoted': \"text\"",
            "",
            "---",
            "# comment",
        ];

        fn near_valid() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::sample::select(LINES), 0..24).prop_map(|l| l.join("\n"))
        }

        fn check(text: &str) -> Result<(), TestCaseError> {
            // YAML's line breaks: \n, \r\n and a lone \r.
            let lines = text.replace("\r\n", "\n").replace('\r', "\n").split('\n').count().max(1);
            match Roster::parse(text) {
                Ok(r) => {
                    for p in r.invariant_warnings() {
                        prop_assert!(p.line >= 1 && p.line <= lines + 1 && p.column >= 1, "{p} in {text:?}");
                    }
                }
                Err(e) => {
                    prop_assert!(!e.problems.is_empty());
                    for p in &e.problems {
                        prop_assert!(p.line >= 1 && p.line <= lines + 1, "line of {p} in {text:?}");
                        prop_assert!(p.column >= 1, "column of {p} in {text:?}");
                        prop_assert!(!p.message.is_empty());
                    }
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_text_parses_or_fails_with_positions(text in any::<String>()) {
                check(&text)?;
            }

            #[test]
            fn near_valid_rosters_parse_or_fail_with_positions(text in near_valid()) {
                check(&text)?;
            }

            #[test]
            fn any_bytes_as_lossy_text(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                check(&String::from_utf8_lossy(&bytes))?;
            }
        }
    }
}
