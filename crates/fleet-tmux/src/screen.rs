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
    ///
    /// With a holder session, through a control client attached to it (kept
    /// from probe to probe). Without one, by one spawned tmux per socket for
    /// all its agents (a `;` list), so that no client is ever left attached
    /// to an agent's session.
    pub fn read(
        &mut self,
        roster: &Roster,
        rows: &[AgentRecord],
        rules: &ScreenRules,
    ) -> BTreeMap<String, Result<ScreenSeen, String>> {
        let mut wanted: BTreeMap<TmuxSocket, Vec<(&str, &str, usize)>> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.managed && r.pane == PaneState::Alive) {
            let Some(runtime) = row.runtime.as_deref() else { continue };
            let Some(spec) = roster.agent(&row.name) else { continue };
            let bottom = rules.bottom_lines(runtime);
            if bottom > 0 {
                wanted.entry(roster.socket_of(spec).clone()).or_default().push((&row.name, runtime, bottom));
            }
        }
        let mut out = BTreeMap::new();
        for (socket, agents) in wanted {
            let names: Vec<&str> = agents.iter().map(|a| a.0).collect();
            let screens = match roster.holder_session.as_deref() {
                Some(holder) => self.read_via_control(&socket, holder, &names),
                None => read_spawned(&Tmux::new(socket.clone()), &names),
            };
            for ((name, runtime, bottom), screen) in agents.into_iter().zip(screens) {
                let seen = screen.map(|(lines, title)| ScreenSeen {
                    matched: rules.judge(runtime, &lines, &title),
                    hash: digest(&lines, bottom, &title),
                });
                out.insert(name.to_string(), seen);
            }
        }
        out
    }

    /// Each session's screen through the socket's control client.
    fn read_via_control(
        &mut self,
        socket: &TmuxSocket,
        holder: &str,
        sessions: &[&str],
    ) -> Vec<Result<(Vec<String>, String), String>> {
        if !self.clients.contains_key(socket) {
            match Control::attach(&Tmux::new(socket.clone()), holder) {
                Ok(c) => {
                    self.clients.insert(socket.clone(), c);
                }
                Err(e) => return sessions.iter().map(|_| Err(e.to_string())).collect(),
            }
        }
        let ctl = self.clients.get_mut(socket).expect("attached");
        let out: Vec<_> = sessions.iter().map(|s| read_one(ctl, s).map_err(|e| e.to_string())).collect();
        if !ctl.alive() {
            // Attached again next time.
            self.clients.remove(socket);
        }
        out
    }
}

/// Each session's screen by one spawned tmux (a `;` list of commands, the
/// screens told apart by marker lines holding a per-call nonce), each call
/// within [`crate::control::COMMAND_TIMEOUT`]. A session that ended since
/// the listing stops tmux's list there: it is an error, and the sessions
/// after it are read by another call.
fn read_spawned(tmux: &Tmux, sessions: &[&str]) -> Vec<Result<(Vec<String>, String), String>> {
    let mut out = Vec::with_capacity(sessions.len());
    while out.len() < sessions.len() {
        let rest = &sessions[out.len()..];
        match read_list(tmux, rest) {
            Ok((screens, stopped)) => {
                out.extend(screens.into_iter().map(Ok));
                if out.len() < sessions.len() {
                    // The next one is the one tmux stopped at.
                    out.push(Err(stopped));
                }
            }
            // tmux could not run, or hung: no other call for the rest.
            Err(e) => out.extend(rest.iter().map(|_| Err(e.clone()))),
        }
    }
    out
}

/// A screen's lines and its pane's title.
type Screen = (Vec<String>, String);

/// The screens of `sessions` in order, as far as tmux got, and why it
/// stopped if it did not get through; `Err` when tmux did not run or hung.
fn read_list(tmux: &Tmux, sessions: &[&str]) -> Result<(Vec<Screen>, String), String> {
    let nonce = format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    let (screen_mark, title_mark) = (format!("@@fleet-screen-{nonce}@@"), format!("@@fleet-title-{nonce}@@"));
    let targets: Vec<String> = sessions.iter().map(|s| exact_session(s)).collect();
    let mut args: Vec<&str> = Vec::new();
    for t in &targets {
        if !args.is_empty() {
            args.push(";");
        }
        args.extend(["display-message", "-p", &screen_mark, ";", "capture-pane", "-p", "-t", t]);
        args.extend([
            ";",
            "display-message",
            "-p",
            &title_mark,
            ";",
            "display-message",
            "-p",
            "-t",
            t,
            "#{pane_title}",
        ]);
    }
    let out = crate::run::run(tmux.command().args(&args), crate::control::COMMAND_TIMEOUT, None)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut screens: Vec<Screen> = Vec::new();
    let mut in_title = false;
    for line in text.lines() {
        if line == screen_mark {
            screens.push((Vec::new(), String::new()));
            in_title = false;
        } else if line == title_mark {
            in_title = true;
        } else if let Some(last) = screens.last_mut() {
            if in_title {
                last.1 = line.to_string();
            } else {
                last.0.push(line.to_string());
            }
        }
    }
    // Where tmux stopped, the screen begun last is the failed one.
    if !out.status.success() {
        screens.pop();
    }
    screens.truncate(sessions.len());
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok((screens, if why.is_empty() { "tmux stopped before this screen".into() } else { why }))
}

fn digest(lines: &[String], bottom: usize, title: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    activity::bottom_lines(lines, bottom).hash(&mut h);
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
    let hook = if row.managed { read_hook(run_dir, &row.name) } else { Err("none".into()) };
    judge_with(row, &hook, seen, rules, prev, now_ms)
}

/// [`judge`] with the hook file already read (`Err`: none, or why not).
pub fn judge_with(
    row: &AgentRecord,
    hook: &Result<HookState, String>,
    seen: Option<&Seen>,
    rules: &ScreenRules,
    prev: Option<&Activity>,
    now_ms: i64,
) -> Activity {
    let now_unix = now_ms.div_euclid(1000);
    let has_rules = row.runtime.as_deref().is_some_and(|r| rules.bottom_lines(r) > 0);
    let screen = seen.and_then(|s| s.screen.as_ref().ok()).and_then(|s| s.matched.as_ref());
    let still = seen.filter(|s| s.screen.is_ok()).map(|s| (now_ms - s.unchanged_since_ms).max(0) / 1000);
    let inputs =
        Inputs { pane: row.pane, hook: hook.as_ref().ok(), screen, has_rules, screen_still_secs: still, now_unix };
    let mut a = activity::decide(&inputs).since(prev, now_ms);
    a.hook = match hook {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{DEFAULT_CALL_TIMEOUT, ProbeContext, probe};
    use crate::testutil::TestServer;
    use fleet_core::activity::{HOOK_TTL_SECS, Source, State};
    use fleet_core::heartbeat::{HealthReport, Timestamp};
    use fleet_core::names::DnsLabel;
    use fleet_core::record::SystemdState;

    const NOW_MS: i64 = 1_800_000_000_000;
    const NOW: i64 = NOW_MS / 1000;

    const RULES: &str = r#"
runtimes:
  claude:
    bottom_lines: 3
    rules:
      - { state: working, name: its work line, screen: ["working on"] }
      - { state: idle, name: its prompt, last_line: [">"] }
"#;

    fn rules() -> ScreenRules {
        ScreenRules::parse(RULES).unwrap()
    }

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| l.to_string()).collect()
    }

    fn row(runtime: Option<&str>, pane: PaneState) -> AgentRecord {
        AgentRecord {
            tenant_id: "t".into(),
            host: "h".into(),
            name: "ag".into(),
            class: None,
            runtime: runtime.map(String::from),
            managed: true,
            socket: String::new(),
            systemd: SystemdState::unavailable(),
            pane,
            pane_pid: None,
            current_command: None,
            idle_seconds: None,
            in_copy_mode: false,
            heartbeat: HealthReport::unknown("none", 15),
            drift: false,
            boot_enable: false,
            activity: Activity::unknown("not judged yet", 0),
        }
    }

    fn write_hook(run_dir: &Path, state: State, unix: i64) {
        let h = HookState { unix, state, event: "prompt_submitted".into() };
        std::fs::write(activity::state_path(run_dir, "ag"), h.render()).unwrap();
    }

    /// The prompt on the screen, unchanged since `since_ms`.
    fn idle_since(since_ms: i64) -> Seen {
        let matched = Some(ScreenMatch { state: State::Idle, rule: "its prompt".into() });
        Seen { screen: Ok(ScreenSeen { matched, hash: 7 }), unchanged_since_ms: since_ms }
    }

    #[test]
    fn the_digest_is_of_the_bottom_lines_and_the_title() {
        let d = |screen: &[&str], title: &str| digest(&lines(screen), 2, title);
        assert_eq!(d(&["a", "b"], "t"), d(&["a", "b", "", "  "], "t"), "a blank bottom is left out");
        assert_ne!(d(&["a", "b"], "t"), d(&["a", "c"], "t"), "the last line counts");
        assert_ne!(d(&["a", "b"], "t"), d(&["c", "b"], "t"), "so does the one above it");
        assert_eq!(d(&["x", "a", "b"], "t"), d(&["y", "a", "b"], "t"), "lines above the bottom 2 do not");
        assert_ne!(d(&["a", "b"], "t"), d(&["a", "b"], "u"), "the title counts");
    }

    #[test]
    fn unchanged_since_holds_while_the_hash_does() {
        let seen = |hash: u64| Ok(ScreenSeen { matched: None, hash });
        let mut memo = BTreeMap::new();
        let since = |memo: &BTreeMap<String, Seen>, a: &str| memo.get(a).map(|s| s.unchanged_since_ms);
        remember(&mut memo, BTreeMap::from([("a".into(), seen(1)), ("b".into(), Err("gone".into()))]), 1000);
        assert_eq!((since(&memo, "a"), since(&memo, "b")), (Some(1000), Some(1000)));
        remember(&mut memo, BTreeMap::from([("a".into(), seen(1)), ("b".into(), Err("gone".into()))]), 2000);
        assert_eq!((since(&memo, "a"), since(&memo, "b")), (Some(1000), Some(2000)), "an unread screen is no change");
        remember(&mut memo, BTreeMap::from([("a".into(), seen(2))]), 3000);
        assert_eq!((since(&memo, "a"), since(&memo, "b")), (Some(3000), None), "a new hash; b is forgotten");
        assert_eq!(memo["a"].screen, seen(2));
        remember(&mut memo, BTreeMap::from([("a".into(), seen(2))]), 4000);
        assert_eq!(since(&memo, "a"), Some(3000));
    }

    #[test]
    fn a_hook_file_counts_until_its_ttl_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let r = row(Some("claude"), PaneState::Alive);
        let at = |ago: i64| {
            write_hook(dir.path(), State::Working, NOW - ago);
            judge(&r, dir.path(), None, &rules(), None, NOW_MS)
        };
        for ago in [5, HOOK_TTL_SECS] {
            let a = at(ago);
            let ts = Timestamp::from_unix(NOW - ago).to_rfc3339();
            assert_eq!(a.hook, format!("working by prompt_submitted at {ts}"), "{ago} s old");
            assert_eq!((a.state, a.source), (State::Working, Source::Hook), "{ago} s old");
        }
        let a = at(HOOK_TTL_SECS + 1);
        assert_eq!(a.hook, "working by prompt_submitted (expired)");
        assert_eq!((a.state, a.source), (State::Unknown, Source::Screen));
        assert_eq!(a.screen, "not read yet");
        // An unmanaged session's file is not read.
        write_hook(dir.path(), State::Working, NOW);
        let a = judge(&AgentRecord { managed: false, ..r }, dir.path(), None, &rules(), None, NOW_MS);
        assert_eq!((a.state, a.hook.as_str()), (State::Unknown, "none"));
    }

    #[test]
    fn an_idle_prompt_unchanged_for_the_interrupt_window_overrules_a_working_hook() {
        let dir = tempfile::tempdir().unwrap();
        write_hook(dir.path(), State::Working, NOW - 5);
        let r = row(Some("claude"), PaneState::Alive);
        let at = |since_ms: i64| judge(&r, dir.path(), Some(&idle_since(since_ms)), &rules(), None, NOW_MS);
        let a = at(NOW_MS - 20_000);
        assert_eq!((a.state, a.source), (State::Idle, Source::Screen), "{a:?}");
        assert_eq!(a.screen, "its prompt (idle), unchanged for 20 s");
        let a = at(NOW_MS - 19_999);
        assert_eq!((a.state, a.source), (State::Working, Source::Hook), "{a:?}");
        assert_eq!(a.screen, "its prompt (idle), unchanged for 19 s");
        assert_eq!(at(NOW_MS + 5_000).screen, "its prompt (idle), unchanged for 0 s", "a clock that stepped back");
        // `since` is carried over while the state holds.
        let b = judge(&r, dir.path(), Some(&idle_since(NOW_MS - 10_000)), &rules(), Some(&a), NOW_MS + 1);
        assert_eq!((b.state, b.since_unix_ms), (State::Working, a.since_unix_ms));
    }

    #[test]
    fn without_screen_rules_the_process_decides() {
        let dir = tempfile::tempdir().unwrap();
        let rules = rules();
        let a = judge(&row(Some("claude"), PaneState::Alive), dir.path(), None, &rules, None, NOW_MS);
        assert_eq!((a.state, a.source, a.detail.as_str()), (State::Unknown, Source::Screen, "no screen rule matched"));
        assert_eq!(a.hook, "none");
        for (runtime, says) in [(Some("codex"), "codex"), (None, "?")] {
            let a = judge(&row(runtime, PaneState::Alive), dir.path(), None, &rules, None, NOW_MS);
            assert_eq!((a.state, a.source), (State::Unknown, Source::Process), "{runtime:?}");
            assert_eq!(a.screen, format!("no screen rules for runtime {says}"));
        }
        let a = judge(&row(Some("claude"), PaneState::Dead), dir.path(), Some(&idle_since(0)), &rules, None, NOW_MS);
        assert_eq!((a.state, a.screen.as_str()), (State::Exited, "not read: no live pane"));
        let failed = Seen { screen: Err("no client".into()), unchanged_since_ms: 0 };
        let a = judge(&row(Some("claude"), PaneState::Alive), dir.path(), Some(&failed), &rules, None, NOW_MS);
        assert_eq!((a.state, a.screen.as_str()), (State::Unknown, "not read: no client"));
    }

    /// A real pane: its prompt is read, judged and hashed the same while it
    /// sits there; the hook's `working` gives way once it has sat 20 s (by
    /// the clock the caller gives); the pane printing changes the hash.
    #[test]
    fn a_real_pane_is_read_judged_and_its_stillness_tracked() {
        let server = TestServer::new();
        let run_dir = server.dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        server.session("holder", &["sleep", "1000"]);
        server.session("ag", &["sh", "-c", "printf 'ready\\n> '; read x; echo \"working on $x\"; sleep 1000"]);
        server.wait_for("the prompt", || server.capture("ag").contains("> "));
        let roster = Roster::parse(&format!(
            "tmux: {{ socket_path: \"{}\", holder_session: holder }}\nagents:\n  - {{ name: ag, runtime: claude }}\n",
            server.socket().spec()
        ))
        .unwrap();
        let cx = ProbeContext {
            tenant_id: "t".into(),
            host: DnsLabel::parse_as("host", "h").unwrap(),
            run_dir: run_dir.clone(),
            interval_secs: 15,
            now: NOW,
            systemd: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            helpers: None,
        };
        let rows = probe(&roster, &cx).unwrap();
        let ag = rows.iter().find(|r| r.name == "ag").expect("a row for ag");
        let (rules, mut screens, mut memo) = (rules(), Screens::default(), BTreeMap::new());
        let first = screens.read(&roster, &rows, &rules);
        assert_eq!(first.keys().collect::<Vec<_>>(), ["ag"], "{first:?}");
        let seen = first["ag"].clone().unwrap();
        assert_eq!(seen.matched.as_ref().map(|m| m.state), Some(State::Idle), "{seen:?}");
        remember(&mut memo, first, NOW_MS);
        let again = screens.read(&roster, &rows, &rules);
        assert_eq!(again["ag"].as_ref().unwrap().hash, seen.hash, "an unchanged pane hashes alike");
        remember(&mut memo, again, NOW_MS + 25_000);
        write_hook(&run_dir, State::Working, NOW + 20);
        let a = judge(ag, &run_dir, memo.get("ag"), &rules, None, NOW_MS + 25_000);
        assert_eq!((a.state, a.source), (State::Idle, Source::Screen), "{a:?}");
        assert_eq!(a.screen, "its prompt (idle), unchanged for 25 s");

        server.tmux.run(["send-keys", "-t", "=ag:", "x", "Enter"], None).unwrap();
        server.wait_for("the work line", || server.capture("ag").contains("working on x"));
        let changed = screens.read(&roster, &rows, &rules);
        let now = changed["ag"].as_ref().unwrap();
        assert_ne!(now.hash, seen.hash, "the pane printed: a new hash");
        assert_eq!(now.matched.as_ref().map(|m| m.state), Some(State::Working));
        remember(&mut memo, changed, NOW_MS + 26_000);
        let a = judge(ag, &run_dir, memo.get("ag"), &rules, Some(&a), NOW_MS + 26_000);
        assert_eq!((a.state, a.source, a.since_unix_ms), (State::Working, Source::Screen, NOW_MS + 26_000));
        assert_eq!(a.screen, "its work line (working), unchanged for 0 s");
    }
}
