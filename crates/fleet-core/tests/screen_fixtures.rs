//! The shipped screen rules (framework/fleet/activity.yaml) against screens
//! written to look like each runtime's in each state: the bottom of the
//! pane as `capture-pane` gives it, and the title. The claude and codex
//! screens follow those programs as of late 2026; pi and opencode follow
//! their documentation (see the rules file's header).

use fleet_core::activity::{ScreenRules, State};

fn rules() -> ScreenRules {
    ScreenRules::parse(include_str!("../../../framework/fleet/activity.yaml")).expect("the shipped rules parse")
}

fn judge(runtime: &str, screen: &str, title: &str) -> Option<State> {
    let lines: Vec<String> = screen.lines().map(String::from).collect();
    rules().judge(runtime, &lines, title).map(|m| m.state)
}

/// (runtime, what it shows, the state the rules must give).
const FIXTURES: &[(&str, &str, Option<State>)] = &[
    (
        "claude",
        "● I'll start by reading the parser.\n\n✻ Pondering… (12s · ↑ 1.2k tokens · esc to interrupt)\n\n╭────────────────────────╮\n│ >                      │\n╰────────────────────────╯\n  ⏵⏵ accept edits on (shift+tab to cycle)\n",
        Some(State::Working),
    ),
    (
        "claude",
        "╭────────────────────────────────────────╮\n│ Bash command                           │\n│   rm -rf build/                        │\n│ Do you want to proceed?                │\n│ ❯ 1. Yes                               │\n│   2. No, and tell Claude what to do    │\n╰────────────────────────────────────────╯\n",
        Some(State::Waiting),
    ),
    (
        "claude",
        "● Done: the parser handles nested lists now.\n\n╭────────────────────────╮\n│ >                      │\n╰────────────────────────╯\n  ? for shortcuts\n",
        Some(State::Idle),
    ),
    (
        "codex",
        "• Running cargo test\n\n• Working (18s • esc to interrupt)\n\n▌ \n⏎ send   ⇧⏎ newline   ⌃T transcript   ⌃C quit\n",
        Some(State::Working),
    ),
    (
        "codex",
        "Would you like to run the following command?\n  $ cargo publish\n› 1. Yes, proceed\n  2. No, and tell Codex what to do differently\n",
        Some(State::Waiting),
    ),
    (
        "codex",
        "• Tests pass.\n\n▌ Ask Codex to do anything\n⏎ send   ⇧⏎ newline   ⌃T transcript   ⌃C quit\n",
        Some(State::Idle),
    ),
    ("pi", "read src/parser.rs\n⠋ Working... (esc to interrupt)\n", Some(State::Working)),
    ("pi", "bash: git push --force\nAllow? (y/n)\n", Some(State::Waiting)),
    ("pi", "Done.\n\n> \n", Some(State::Idle)),
    ("opencode", "Build  claude-sonnet\n⠙ working...   esc interrupt\n", Some(State::Working)),
    ("opencode", "Permission required: edit src/main.rs\n  Allow once   Allow always   Reject\n", Some(State::Waiting)),
    ("opencode", "Done.\n┃ \n  enter send   ctrl+p commands\n", Some(State::Idle)),
    ("stub", "> /work 5\n⠋ working 2s (esc to interrupt)\n", Some(State::Working)),
    ("stub", "> /ask\nAllow this action? [y/n]\n", Some(State::Waiting)),
    ("stub", "> hello\naccepted: hello\n> \n\n\n", Some(State::Idle)),
    // An agent that printed a prompt-like line mid-output and then kept working is not idle:
    // only the last line counts for the stub, and "esc to interrupt" wins for claude.
    ("stub", "> \nbuilding...\n", None),
    ("claude", "? for shortcuts\n✻ Thinking… (esc to interrupt)\n", Some(State::Working)),
    // A runtime nobody wrote rules for.
    ("aider", "> \n", None),
];

#[test]
fn each_runtime_in_each_state_is_judged_as_it_shows() {
    for (runtime, screen, want) in FIXTURES {
        assert_eq!(judge(runtime, screen, ""), *want, "{runtime} showing:\n{screen}");
    }
}

#[test]
fn the_rules_look_only_at_the_bottom_of_the_screen() {
    // A permission prompt answered long ago, scrolled up past the bottom lines, is not waiting.
    let mut screen = String::from("Do you want to proceed?\n");
    screen.push_str(&"output line\n".repeat(20));
    screen.push_str("╭──╮\n│ > │\n╰──╯\n  ? for shortcuts\n");
    assert_eq!(judge("claude", &screen, ""), Some(State::Idle));
}
