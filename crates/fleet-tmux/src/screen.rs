//! The inputs of an agent's activity ([`fleet_core::activity`]) on this
//! host: its screen, read through a control-mode client (two commands per
//! agent, about 0.1 ms each: no process is spawned per agent), and its hook
//! file; and the activity they give.

use crate::control::Control;
use crate::tmux::{Tmux, TmuxError, exact_session};
use fleet_core::activity::{self, Activity, HookState, Inputs, ScreenMatch, ScreenRules};
use fleet_core::record::{AgentRecord, PaneState};
use fleet_core::roster::{Roster, TmuxSocket};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;

/// What a probe saw of one agent's screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenSeen {
    /// The first rule that matched, if any.
    pub matched: Option<ScreenMatch>,
    /// A hash of the lines the rules look at and the title: "unchanged" is
    /// this hash staying the same.
    pub hash: u64,
}

/// The bottom of a pane's screen and its title.
fn read_one(ctl: &mut Control, session: &str) -> Result<(Vec<String>, String), TmuxError> {
    let target = exact_session(session);
    let lines = ctl.run(&["capture-pane", "-p", "-t", &target])?;
    let title = ctl.run(&["display-message", "-p", "-t", &target, "#{pane_title}"])?;
    Ok((lines, title.into_iter().next().unwrap_or_default()))
}

/// Control clients by socket, kept from one probe to the next.
#[derive(Default)]
pub struct Screens {
    clients: HashMap<TmuxSocket, Control>,
}

impl Screens {
    /// Read and judge the screen of every live roster agent in `rows` whose
    /// runtime has rules: by agent, what was seen, or why it was not.
    pub fn read(
        &mut self,
        roster: &Roster,
        rows: &[AgentRecord],
        rules: &ScreenRules,
    ) -> BTreeMap<String, Result<ScreenSeen, String>> {
        let mut out = BTreeMap::new();
        for row in rows.iter().filter(|r| r.managed && r.pane == PaneState::Alive) {
            let Some(runtime) = row.runtime.as_deref() else { continue };
            let lines_wanted = rules.bottom_lines(runtime);
            if lines_wanted == 0 {
                continue;
            }
            let seen = self.client(roster, rows, &row.name).and_then(|ctl| {
                let (lines, title) = read_one(ctl, &row.name).map_err(|e| e.to_string())?;
                let matched = rules.judge(runtime, &lines, &title);
                Ok(ScreenSeen { matched, hash: digest(&lines, lines_wanted, &title) })
            });
            if seen.is_err() {
                // A dead client is attached again next time.
                let socket = roster.agent(&row.name).map(|a| roster.socket_of(a).clone());
                if let Some(s) = socket
                    && self.clients.get_mut(&s).is_some_and(|c| !c.alive())
                {
                    self.clients.remove(&s);
                }
            }
            out.insert(row.name.clone(), seen);
        }
        out
    }

    /// The socket's client: attached to the roster's holder session, or,
    /// without one, to a live agent's own session with `ignore-size,no-output`
    /// (it neither sizes the agent's window nor receives its output; it is
    /// attached again elsewhere when that session ends).
    fn client(&mut self, roster: &Roster, rows: &[AgentRecord], agent: &str) -> Result<&mut Control, String> {
        let spec = roster.agent(agent).ok_or("not a roster agent")?;
        let socket = roster.socket_of(spec).clone();
        if !self.clients.contains_key(&socket) {
            let tmux = Tmux::new(socket.clone());
            let c = match roster.holder_session.as_deref() {
                Some(holder) => Control::attach(&tmux, holder),
                None => {
                    let host = rows.iter().filter(|r| r.managed && r.pane == PaneState::Alive);
                    let on_socket = host
                        .filter(|r| roster.agent(&r.name).is_some_and(|a| roster.socket_of(a) == &socket))
                        .map(|r| r.name.as_str())
                        .next()
                        .unwrap_or(agent);
                    Control::attach_with(&tmux, on_socket, Some("ignore-size,no-output"))
                }
            };
            self.clients.insert(socket.clone(), c.map_err(|e| e.to_string())?);
        }
        Ok(self.clients.get_mut(&socket).expect("inserted"))
    }
}

fn digest(lines: &[String], bottom: usize, title: &str) -> u64 {
    let end = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |i| i + 1);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    lines[end.saturating_sub(bottom)..end].hash(&mut h);
    title.hash(&mut h);
    h.finish()
}

/// The hook file of `agent`: the state, or why there is none to use.
pub fn read_hook(run_dir: &Path, agent: &str) -> Result<HookState, String> {
    let path = activity::state_path(run_dir, agent);
    match fleet_core::file::read_to_string(&path, fleet_core::file::HEARTBEAT_MAX) {
        Ok(text) => HookState::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("none".into()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A screen as last seen, and since when it is unchanged (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub screen: Result<ScreenSeen, String>,
    pub unchanged_since_ms: i64,
}

/// Remember `now`'s screens: an unchanged hash keeps its `unchanged_since`.
pub fn remember(memo: &mut BTreeMap<String, Seen>, screens: BTreeMap<String, Result<ScreenSeen, String>>, now_ms: i64) {
    let mut next = BTreeMap::new();
    for (agent, screen) in screens {
        let since = match (memo.get(&agent), &screen) {
            (Some(Seen { screen: Ok(old), unchanged_since_ms }), Ok(new)) if old.hash == new.hash => {
                *unchanged_since_ms
            }
            _ => now_ms,
        };
        next.insert(agent, Seen { screen, unchanged_since_ms: since });
    }
    *memo = next;
}

/// The activity of `row`, from its pane, its hook file in `run_dir` and its
/// screen as last seen; `since` carried over from `prev` while the state holds.
pub fn judge(
    row: &AgentRecord,
    run_dir: &Path,
    seen: Option<&Seen>,
    rules: &ScreenRules,
    prev: Option<&Activity>,
    now_ms: i64,
) -> Activity {
    let now_unix = now_ms.div_euclid(1000);
    let hook = if row.managed { read_hook(run_dir, &row.name) } else { Err("none".into()) };
    let has_rules = row.runtime.as_deref().is_some_and(|r| rules.bottom_lines(r) > 0);
    let screen = seen.and_then(|s| s.screen.as_ref().ok()).and_then(|s| s.matched.as_ref());
    let still = seen.filter(|s| s.screen.is_ok()).map(|s| (now_ms - s.unchanged_since_ms).max(0) / 1000);
    let inputs =
        Inputs { pane: row.pane, hook: hook.as_ref().ok(), screen, has_rules, screen_still_secs: still, now_unix };
    let mut a = activity::decide(&inputs).since(prev, now_ms);
    a.hook = match &hook {
        Ok(h) if now_unix - h.unix > activity::HOOK_TTL_SECS => format!("{} by {} (expired)", h.state, h.event),
        Ok(h) => format!(
            "{} by {} at {}",
            h.state,
            h.event,
            fleet_core::heartbeat::Timestamp::from_unix(h.unix).to_rfc3339()
        ),
        Err(e) => e.clone(),
    };
    a.screen = match (seen.map(|s| &s.screen), has_rules, row.pane) {
        (_, _, PaneState::Dead | PaneState::Missing) => "not read: no live pane".into(),
        (_, false, _) => format!("no screen rules for runtime {}", row.runtime.as_deref().unwrap_or("?")),
        (None, true, _) => "not read yet".into(),
        (Some(Err(e)), true, _) => format!("not read: {e}"),
        (Some(Ok(s)), true, _) => {
            let what =
                s.matched.as_ref().map_or("no rule matched".to_string(), |m| format!("{} ({})", m.rule, m.state));
            format!("{what}, unchanged for {} s", still.unwrap_or(0))
        }
    };
    a
}

/// The rules in force: `$MOSAIC_HOME/fleet/activity.yaml` when it exists and
/// parses, else the ones built in (framework/fleet/activity.yaml); a file that
/// does not parse is reported, and the built-in rules are used.
pub fn load_rules(mosaic_home: &Path) -> (ScreenRules, Option<String>) {
    let builtin = || ScreenRules::parse(BUILTIN_RULES).expect("the built-in screen rules parse (tested)");
    let path = mosaic_home.join("fleet/activity.yaml");
    match fleet_core::file::read_to_string(&path, fleet_core::file::CONFIG_MAX) {
        Ok(text) => match ScreenRules::parse(&text) {
            Ok(r) => (r, None),
            Err(problems) => (
                builtin(),
                Some(format!("{}: {} (the built-in rules are in use)", path.display(), problems.join("; "))),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (builtin(), None),
        Err(e) => (builtin(), Some(format!("cannot read {}: {e} (the built-in rules are in use)", path.display()))),
    }
}

/// framework/fleet/activity.yaml, built in.
pub const BUILTIN_RULES: &str = include_str!("../../../framework/fleet/activity.yaml");
