//! What an agent is doing: `working`, `waiting` (for a person: a permission
//! prompt or a question), `idle` (at its prompt), `exited`, or `unknown`;
//! where that came from (`hook`, `screen`, `process`), since when, and the
//! rule that decided.
//!
//! Three inputs, combined by [`decide`]:
//! - the pane's process: a missing or dead pane is `exited`, whatever else
//!   says;
//! - a hook file `<run_dir>/<agent>.state` that the runtime's hooks write
//!   ([`HookState`]): an edge (the runtime said it started or stopped a
//!   turn, or asked for permission) that expires after [`HOOK_TTL_SECS`];
//! - the screen: the bottom lines and the title of the pane, matched against
//!   the runtime's screen rules ([`ScreenRules`], data in
//!   `framework/fleet/activity.yaml`, first matching rule wins).
//!
//! The screen confirms or overrides a hook: a visible permission prompt is
//! `waiting` whatever a hook said; a visible working marker is `working`
//! whatever a hook said; a hook saying `working` while the idle prompt has
//! been on an unchanged screen for [`INTERRUPT_SECS`] is `idle` (an
//! interrupted turn fires no hook: Esc in Claude Code or Codex). Without a
//! fresh hook the screen decides; with neither, `unknown`.

use crate::record::PaneState;
use crate::yaml::{self, Node, Value};
use std::fmt;

/// A hook older than this no longer counts (the screen decides).
pub const HOOK_TTL_SECS: i64 = 30 * 60;
/// A hook saying `working` is overruled by an idle prompt on a screen that
/// has not changed for this long.
pub const INTERRUPT_SECS: i64 = 20;
/// Bottom lines of the screen the rules look at, unless a runtime says.
pub const DEFAULT_BOTTOM_LINES: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Working,
    Waiting,
    Idle,
    Exited,
    Unknown,
}

impl State {
    pub const ALL: [State; 5] = [State::Working, State::Waiting, State::Idle, State::Exited, State::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Working => "working",
            State::Waiting => "waiting",
            State::Idle => "idle",
            State::Exited => "exited",
            State::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Hook,
    Screen,
    Process,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hook => "hook",
            Source::Screen => "screen",
            Source::Process => "process",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [Source::Hook, Source::Screen, Source::Process].into_iter().find(|x| x.as_str() == s)
    }
}

/// An agent's activity, as `fleet ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Activity {
    pub state: State,
    pub source: Source,
    /// Since when the agent is in this state (as this node saw it), Unix ms.
    pub since_unix_ms: i64,
    /// The rule or hook that decided, in one line.
    pub detail: String,
    /// What the hook file said (`working by prompt_submitted at ...`, `none`,
    /// or why it could not be used), for `fleet explain`.
    pub hook: String,
    /// What the screen showed (`its prompt (idle), unchanged for 35 s`, `no
    /// rule matched`, or why it was not read), for `fleet explain`.
    pub screen: String,
}

impl Activity {
    pub fn unknown(detail: impl Into<String>, now_ms: i64) -> Activity {
        Activity {
            state: State::Unknown,
            source: Source::Process,
            since_unix_ms: now_ms,
            detail: detail.into(),
            hook: String::new(),
            screen: String::new(),
        }
    }

    /// What a pane alone says: `exited` for a missing or dead one, else
    /// `unknown` until hooks and the screen are judged.
    pub fn of_pane(pane: PaneState, now_ms: i64) -> Activity {
        let v = decide(&Inputs {
            pane,
            hook: None,
            screen: None,
            has_rules: false,
            screen_still_secs: None,
            now_unix: now_ms.div_euclid(1000),
        });
        let mut a = v.since(None, now_ms);
        if pane == PaneState::Alive {
            a.detail = "not judged yet".into();
        }
        a
    }
}

/// A verdict before it has a `since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub state: State,
    pub source: Source,
    pub detail: String,
}

impl Verdict {
    fn new(state: State, source: Source, detail: impl Into<String>) -> Verdict {
        Verdict { state, source, detail: detail.into() }
    }

    /// With a `since`: the previous one's when the state did not change.
    pub fn since(self, prev: Option<&Activity>, now_ms: i64) -> Activity {
        let since_unix_ms = match prev {
            Some(p) if p.state == self.state => p.since_unix_ms,
            _ => now_ms,
        };
        Activity {
            state: self.state,
            source: self.source,
            since_unix_ms,
            detail: self.detail,
            hook: String::new(),
            screen: String::new(),
        }
    }
}

// ---------------------------------------------------------------- hooks

/// `<run_dir>/<agent>.state`, written atomically by a runtime's hook
/// (`fleet hook STATE`):
///
/// ```text
/// ts=2026-12-02T01:40:00Z
/// state=working
/// event=prompt_submitted
/// ```
///
/// `state` is `working`, `waiting`, `idle` or `exited`; `event` names the
/// hook (free text, optional). Unknown keys are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookState {
    pub unix: i64,
    pub state: State,
    pub event: String,
}

impl HookState {
    /// Parse a state file; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<HookState, String> {
        let (mut unix, mut state, mut event) = (None, None, String::new());
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("not key=value: {:?}", line.chars().take(60).collect::<String>()));
            };
            let v = v.trim();
            match k.trim() {
                "ts" => unix = Some(crate::heartbeat::Timestamp::parse(v).ok_or(format!("bad ts {v:?}"))?.unix),
                "state" => match State::parse(v) {
                    Some(State::Unknown) | None => return Err(format!("bad state {v:?}")),
                    s => state = s,
                },
                "event" => event = v.chars().take(80).collect(),
                _ => {}
            }
        }
        Ok(HookState { unix: unix.ok_or("no ts")?, state: state.ok_or("no state")?, event })
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let ts = crate::heartbeat::Timestamp::from_unix(self.unix).to_rfc3339();
        let event = self.event.replace(['\n', '\r'], " ");
        format!("ts={ts}\nstate={}\nevent={event}\n", self.state)
    }
}

/// The state file of `agent` in `run_dir`.
pub fn state_path(run_dir: &std::path::Path, agent: &str) -> std::path::PathBuf {
    run_dir.join(format!("{agent}.state"))
}

// ---------------------------------------------------------------- screen rules

/// One rule: the state it gives when any of its `screen` texts is in the
/// bottom lines of the screen, the last non-blank line starts with any of
/// its `last_line` texts, or any of its `title` texts is in the pane's title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub state: State,
    pub screen: Vec<String>,
    pub last_line: Vec<String>,
    pub title: Vec<String>,
    /// What the rule means, for `detail` (`a permission prompt`).
    pub name: String,
}

/// The rules of one runtime, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeRules {
    pub bottom_lines: usize,
    pub rules: Vec<Rule>,
}

/// Screen rules per runtime (`framework/fleet/activity.yaml`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScreenRules {
    pub runtimes: std::collections::BTreeMap<String, RuntimeRules>,
}

/// What the screen says: the state, and the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenMatch {
    pub state: State,
    pub rule: String,
}

impl ScreenRules {
    /// Parse the rules file; every problem, with line and column.
    pub fn parse(text: &str) -> Result<ScreenRules, Vec<String>> {
        let root = yaml::parse(text).map_err(|e| vec![format!("{}: {}", e.pos, e.message)])?;
        let mut problems = Vec::new();
        let mut out = ScreenRules::default();
        let Some(runtimes) = map_get(&root, "runtimes") else {
            return Err(vec!["no `runtimes:` map".into()]);
        };
        let Value::Map(entries) = &runtimes.value else {
            return Err(vec![format!("{}: `runtimes` is a {}, not a map", runtimes.pos, runtimes.kind())]);
        };
        for (k, v) in entries {
            let Some(name) = k.as_str() else { continue };
            let bottom = map_get(v, "bottom_lines").and_then(Node::as_u64).map(|n| n.clamp(1, 200) as usize);
            let mut rr = RuntimeRules { bottom_lines: bottom.unwrap_or(DEFAULT_BOTTOM_LINES), rules: Vec::new() };
            let rules = map_get(v, "rules");
            let Some(Value::Seq(list)) = rules.map(|r| &r.value) else {
                problems.push(format!("{}: runtimes.{name}: expected a `rules:` list", v.pos));
                continue;
            };
            for (i, r) in list.iter().enumerate() {
                let at = format!("{}: runtimes.{name}.rules[{i}]", r.pos);
                let state = map_get(r, "state").and_then(Node::as_str).and_then(State::parse);
                let Some(state) = state.filter(|s| !matches!(s, State::Exited | State::Unknown)) else {
                    problems.push(format!("{at}.state: expected working, waiting or idle"));
                    continue;
                };
                let (screen, title) = (strings(map_get(r, "screen")), strings(map_get(r, "title")));
                let last_line = strings(map_get(r, "last_line"));
                if screen.is_empty() && title.is_empty() && last_line.is_empty() {
                    problems.push(format!("{at}: a rule needs `screen:`, `last_line:` or `title:` texts"));
                    continue;
                }
                let name = map_get(r, "name").and_then(Node::as_str).unwrap_or(state.as_str()).to_string();
                rr.rules.push(Rule { state, screen, last_line, title, name });
            }
            out.runtimes.insert(name.to_string(), rr);
        }
        if problems.is_empty() { Ok(out) } else { Err(problems) }
    }

    /// How many bottom lines `runtime`'s rules look at (0: it has none).
    pub fn bottom_lines(&self, runtime: &str) -> usize {
        self.runtimes.get(runtime).map_or(0, |r| r.bottom_lines)
    }

    /// The first rule of `runtime` that the screen's bottom lines or the
    /// title match; `None` when none does (or the runtime has no rules).
    pub fn judge(&self, runtime: &str, screen: &[String], title: &str) -> Option<ScreenMatch> {
        let rr = self.runtimes.get(runtime)?;
        let bottom = bottom_lines(screen, rr.bottom_lines);
        let last = bottom.last().map_or("", |l| l.as_str().trim_end());
        rr.rules
            .iter()
            .find(|r| {
                r.screen.iter().any(|t| bottom.iter().any(|l| l.contains(t.as_str())))
                    || r.last_line.iter().any(|t| last.starts_with(t.as_str()))
                    || r.title.iter().any(|t| title.contains(t.as_str()))
            })
            .map(|r| ScreenMatch { state: r.state, rule: r.name.clone() })
    }
}

/// The last `n` lines of a screen, its blank bottom left out.
pub fn bottom_lines<S: AsRef<str>>(screen: &[S], n: usize) -> &[S] {
    let end = screen.iter().rposition(|l| !l.as_ref().trim().is_empty()).map_or(0, |i| i + 1);
    &screen[end.saturating_sub(n)..end]
}

fn map_get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
        _ => None,
    }
}

/// A string or a list of strings.
fn strings(node: Option<&Node>) -> Vec<String> {
    match node.map(|n| &n.value) {
        Some(Value::Seq(items)) => items.iter().filter_map(Node::as_str).map(String::from).collect(),
        Some(Value::Scalar { text, .. }) if !text.is_empty() => vec![text.clone()],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------- the decision

/// What [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub pane: PaneState,
    /// The hook file, if there is one that parses.
    pub hook: Option<&'a HookState>,
    /// What the screen rules said; `None`: no rule matched.
    pub screen: Option<&'a ScreenMatch>,
    /// Does the runtime have screen rules at all?
    pub has_rules: bool,
    /// How long the screen has been unchanged, in seconds (as far as this
    /// node saw); `None` when the screen was not read.
    pub screen_still_secs: Option<i64>,
    pub now_unix: i64,
}

/// The state, its source and the rule that decided (see the module doc).
pub fn decide(i: &Inputs) -> Verdict {
    match i.pane {
        PaneState::Missing => return Verdict::new(State::Exited, Source::Process, "no session"),
        PaneState::Dead => return Verdict::new(State::Exited, Source::Process, "the pane's process has exited"),
        PaneState::Alive => {}
    }
    let hook = i.hook.filter(|h| i.now_unix - h.unix <= HOOK_TTL_SECS);
    let screen = i.screen;
    let on_screen = |s: &ScreenMatch| format!("the screen shows {}", s.rule);
    // The screen's own verdicts that no hook overrules.
    if let Some(s) = screen
        && matches!(s.state, State::Waiting | State::Working)
    {
        let why = match hook {
            Some(h) if h.state != s.state => format!("{} (the {} hook said {})", on_screen(s), h.event, h.state),
            _ => on_screen(s),
        };
        return Verdict::new(s.state, Source::Screen, why);
    }
    if let Some(h) = hook {
        let said = format!("the {} hook said {}", if h.event.is_empty() { "runtime's" } else { &h.event }, h.state);
        if h.state == State::Working
            && let Some(s) = screen.filter(|s| s.state == State::Idle)
            && i.screen_still_secs.is_some_and(|t| t >= INTERRUPT_SECS)
        {
            return Verdict::new(
                State::Idle,
                Source::Screen,
                format!("{said}, but {} unchanged for {INTERRUPT_SECS} s or more (interrupted?)", on_screen(s)),
            );
        }
        return Verdict::new(h.state, Source::Hook, said);
    }
    match screen {
        Some(s) => Verdict::new(s.state, Source::Screen, on_screen(s)),
        None if i.has_rules => Verdict::new(State::Unknown, Source::Screen, "no screen rule matched"),
        None => Verdict::new(State::Unknown, Source::Process, "running; its runtime has no screen rules or hooks"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn hook(state: State, ago: i64) -> HookState {
        HookState { unix: NOW - ago, state, event: "stop".into() }
    }

    fn seen(state: State) -> ScreenMatch {
        ScreenMatch { state, rule: format!("the {state} rule") }
    }

    fn inputs<'a>(hook: Option<&'a HookState>, screen: Option<&'a ScreenMatch>, still: Option<i64>) -> Inputs<'a> {
        Inputs { pane: PaneState::Alive, hook, screen, has_rules: true, screen_still_secs: still, now_unix: NOW }
    }

    fn verdict(i: &Inputs) -> (State, Source) {
        let v = decide(i);
        (v.state, v.source)
    }

    #[test]
    fn a_missing_or_dead_pane_is_exited_whatever_else_says() {
        let (h, s) = (hook(State::Working, 1), seen(State::Working));
        for pane in [PaneState::Missing, PaneState::Dead] {
            let i = Inputs { pane, ..inputs(Some(&h), Some(&s), Some(0)) };
            assert_eq!(verdict(&i), (State::Exited, Source::Process));
        }
    }

    #[test]
    fn a_visible_prompt_or_working_marker_beats_any_hook() {
        for h in [State::Idle, State::Working, State::Waiting, State::Exited] {
            let h = hook(h, 5);
            let s = seen(State::Waiting);
            assert_eq!(verdict(&inputs(Some(&h), Some(&s), Some(0))), (State::Waiting, Source::Screen));
            let s = seen(State::Working);
            assert_eq!(verdict(&inputs(Some(&h), Some(&s), Some(100))), (State::Working, Source::Screen));
        }
        let (h, s) = (hook(State::Idle, 5), seen(State::Waiting));
        assert_eq!(
            decide(&inputs(Some(&h), Some(&s), None)).detail,
            "the screen shows the waiting rule (the stop hook said idle)"
        );
        let h = hook(State::Waiting, 5);
        assert_eq!(decide(&inputs(Some(&h), Some(&s), None)).detail, "the screen shows the waiting rule");
    }

    #[test]
    fn a_fresh_hook_decides_over_an_idle_screen_until_the_interrupt_window() {
        let h = hook(State::Working, 30);
        let s = seen(State::Idle);
        assert_eq!(verdict(&inputs(Some(&h), Some(&s), Some(INTERRUPT_SECS - 1))), (State::Working, Source::Hook));
        assert_eq!(verdict(&inputs(Some(&h), Some(&s), None)), (State::Working, Source::Hook));
        let v = decide(&inputs(Some(&h), Some(&s), Some(INTERRUPT_SECS)));
        assert_eq!((v.state, v.source), (State::Idle, Source::Screen));
        assert_eq!(
            v.detail,
            format!(
                "the stop hook said working, but the screen shows the idle rule unchanged for {INTERRUPT_SECS} s or more (interrupted?)"
            )
        );
        // Only a working hook is overruled that way.
        for st in [State::Waiting, State::Idle, State::Exited] {
            let h = hook(st, 30);
            assert_eq!(verdict(&inputs(Some(&h), Some(&s), Some(1000))), (st, Source::Hook));
        }
        // No screen rule matched: the working hook stands however still the screen.
        assert_eq!(verdict(&inputs(Some(&h), None, Some(1000))), (State::Working, Source::Hook));
    }

    #[test]
    fn a_hook_expires_after_its_ttl() {
        let s = seen(State::Idle);
        let fresh = hook(State::Working, HOOK_TTL_SECS);
        assert_eq!(verdict(&inputs(Some(&fresh), Some(&s), Some(0))), (State::Working, Source::Hook));
        let old = hook(State::Working, HOOK_TTL_SECS + 1);
        assert_eq!(verdict(&inputs(Some(&old), Some(&s), Some(0))), (State::Idle, Source::Screen));
        assert_eq!(verdict(&inputs(Some(&old), None, Some(0))), (State::Unknown, Source::Screen));
        let d = decide(&inputs(Some(&fresh), None, None)).detail;
        assert_eq!(d, "the stop hook said working");
        let unnamed = HookState { event: String::new(), ..fresh };
        assert!(decide(&inputs(Some(&unnamed), None, None)).detail.starts_with("the runtime's hook said working"));
    }

    #[test]
    fn without_a_hook_the_screen_decides_or_it_is_unknown() {
        for st in [State::Idle, State::Working, State::Waiting] {
            let s = seen(st);
            assert_eq!(verdict(&inputs(None, Some(&s), None)), (st, Source::Screen));
        }
        assert_eq!(verdict(&inputs(None, None, Some(3))), (State::Unknown, Source::Screen));
        let i = Inputs { has_rules: false, ..inputs(None, None, None) };
        assert_eq!(verdict(&i), (State::Unknown, Source::Process));
    }

    #[test]
    fn states_and_sources_read_back_from_their_words() {
        for st in State::ALL {
            assert_eq!(State::parse(st.as_str()), Some(st));
        }
        for src in [Source::Hook, Source::Screen, Source::Process] {
            assert_eq!(Source::parse(src.as_str()), Some(src));
        }
        assert_eq!(State::parse("busy"), None);
        assert_eq!(Source::parse("tmux"), None);
        assert_eq!(Source::parse("Hook"), None, "the words are lower case");
    }

    #[test]
    fn since_is_kept_while_the_state_holds() {
        let prev = Activity { since_unix_ms: 5, ..Activity::unknown("x", 0) };
        let prev = Activity { state: State::Idle, ..prev };
        let idle = Verdict::new(State::Idle, Source::Screen, "y");
        assert_eq!(idle.clone().since(Some(&prev), 99).since_unix_ms, 5, "same state, other source: same since");
        assert_eq!(Verdict::new(State::Working, Source::Screen, "y").since(Some(&prev), 99).since_unix_ms, 99);
        assert_eq!(idle.since(None, 99).since_unix_ms, 99);
    }

    #[test]
    fn state_files_are_read_tolerantly_and_render_back() {
        let h = HookState::parse("ts=2027-01-15T08:00:00Z\nstate=waiting\nevent=permission_prompt\nextra=1\n").unwrap();
        assert_eq!(h.state, State::Waiting);
        assert_eq!(h.event, "permission_prompt");
        assert_eq!(HookState::parse(&h.render()), Ok(h));
        assert_eq!(HookState::parse("state=idle\nts=2027-01-15T08:00:00+01:00").unwrap().event, "");
        assert!(HookState::parse("").unwrap_err().contains("no ts"));
        assert!(HookState::parse("ts=2027-01-15T08:00:00Z").unwrap_err().contains("no state"));
        assert!(HookState::parse("ts=2027-01-15T08:00:00Z\nstate=unknown").unwrap_err().contains("bad state"));
        assert!(HookState::parse("ts=yesterday\nstate=idle").unwrap_err().contains("bad ts"));
        assert!(HookState::parse("garbage").unwrap_err().contains("not key=value"));
        let odd = HookState { unix: NOW, state: State::Idle, event: "a\nb".into() };
        assert_eq!(HookState::parse(&odd.render()).unwrap().event, "a b");
    }

    const RULES: &str = r#"
runtimes:
  claude:
    bottom_lines: 3
    rules:
      - { state: waiting, name: a permission prompt, screen: ["Do you want to proceed?"] }
      - { state: working, name: the interrupt hint, screen: esc to interrupt, title: ["✳"] }
      - { state: idle, name: the empty prompt, screen: ["│ > "] }
  stub:
    rules:
      - { state: idle, name: its prompt, last_line: [">"] }
"#;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn rules_match_the_bottom_lines_or_the_title_first_rule_first() {
        let r = ScreenRules::parse(RULES).unwrap();
        assert_eq!(r.bottom_lines("claude"), 3);
        assert_eq!(r.bottom_lines("codex"), 0);
        let judge = |screen: &str, title: &str| r.judge("claude", &lines(screen), title).map(|m| m.state);
        assert_eq!(judge("x\n│ > \n\n", ""), Some(State::Idle));
        assert_eq!(judge("Do you want to proceed?\n│ > ", ""), Some(State::Waiting), "the first rule wins");
        assert_eq!(judge("esc to interrupt\na\nb\nc\n\n  ", ""), None, "above the bottom 3 lines");
        assert_eq!(judge("a\nb", "✳ Claude Code"), Some(State::Working), "by the title");
        assert_eq!(r.judge("claude", &lines("x\n│ > "), "").unwrap().rule, "the empty prompt");
        assert_eq!(r.judge("codex", &lines("│ > "), ""), None, "no rules for codex");
        assert_eq!(judge("", ""), None);
        let stub = |screen: &str| r.judge("stub", &lines(screen), "").map(|m| m.state);
        assert_eq!(stub("> hello\naccepted: hello\n>  \n\n"), Some(State::Idle), "the last non-blank line");
        assert_eq!(stub("> hello\nworking"), None, "a prompt above the last line is not it");
        assert_eq!(stub(" > x"), None, "starts with");
    }

    #[test]
    fn a_bad_rules_file_names_every_problem() {
        let bad =
            "runtimes:\n  a:\n    rules:\n      - { state: exited, screen: x }\n      - { state: idle }\n  b: {}\n";
        let p = ScreenRules::parse(bad).unwrap_err();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("runtimes.a.rules[0].state: expected working, waiting or idle"), "{p:?}");
        assert!(p[1].contains("runtimes.a.rules[1]: a rule needs `screen:`, `last_line:` or `title:`"), "{p:?}");
        assert!(p[2].contains("runtimes.b: expected a `rules:` list"), "{p:?}");
        assert!(ScreenRules::parse("nope: 1").is_err());
        assert!(ScreenRules::parse("runtimes: [1]").unwrap_err()[0].contains("not a map"));
        assert!(ScreenRules::parse("runtimes: {a: [").is_err());
    }

    #[test]
    fn the_shipped_rules_file_parses() {
        let text = include_str!("../../../framework/fleet/activity.yaml");
        let rules = ScreenRules::parse(text).unwrap();
        for rt in ["claude", "codex", "pi", "opencode", "stub"] {
            assert!(!rules.runtimes[rt].rules.is_empty(), "{rt}");
        }
    }
}
