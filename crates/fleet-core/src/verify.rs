//! Deciding whether an agent really took a message, from pane captures.
//!
//! The driver (fleet-tmux) captures the pane before sending, then after
//! sending polls `capture-pane` about every 400 ms and feeds each capture to
//! [`Verifier::observe`]. The verdict:
//! - `accepted`: the pane changed and the input line no longer holds the text,
//!   seen on two identical captures in a row (so a half-drawn screen never
//!   counts);
//! - `draft`: the text sits unsubmitted on the input line (one more Enter may
//!   be tried: [`Step::PressEnter`]);
//! - `unverifiable`: nothing changed, or the screen is blank.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    Draft,
    Unverifiable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Draft => "draft",
            Verdict::Unverifiable => "unverifiable",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Poll again.
    Wait,
    /// The text sits on the input line: press Enter once more, then poll.
    PressEnter,
    /// Done.
    Done(Verdict, String),
}

/// How a single capture looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    Blank,
    Unchanged,
    Draft,
    Submitted,
}

/// Polls in a row that must look like a draft before Enter is pressed again.
const DRAFT_POLLS_BEFORE_ENTER: u32 = 3;

pub struct Verifier {
    before: String,
    before_prompt: Option<String>,
    needle: String,
    last: Option<(Look, String)>,
    draft_polls: u32,
    pressed_enter: bool,
}

impl Verifier {
    /// `before` is the capture taken before sending; `text` what was pasted.
    pub fn new(before: &str, text: &str) -> Self {
        Verifier {
            before: normalise(before),
            before_prompt: prompt_content(before),
            needle: needle(text),
            last: None,
            draft_polls: 0,
            pressed_enter: false,
        }
    }

    fn look(&self, capture: &str) -> Look {
        let now = normalise(capture);
        if now.trim().is_empty() {
            return Look::Blank;
        }
        if now == self.before {
            return Look::Unchanged;
        }
        let region = input_region(&now);
        let prompt = prompt_content(&now);
        let holds_text = !self.needle.is_empty() && squash(&region).contains(&self.needle);
        let new_prompt_text = prompt.as_ref().is_some_and(|p| !p.is_empty() && Some(p) != self.before_prompt.as_ref());
        if holds_text || new_prompt_text { Look::Draft } else { Look::Submitted }
    }

    /// Feed one capture. Call [`Verifier::finish`] when the time is up.
    pub fn observe(&mut self, capture: &str) -> Step {
        let look = self.look(capture);
        let now = normalise(capture);
        let stable = self.last.as_ref().is_some_and(|(l, c)| *l == look && *c == now);
        self.last = Some((look, now));
        match look {
            Look::Submitted if stable => {
                let how = if self.pressed_enter { " after a second Enter" } else { "" };
                Step::Done(Verdict::Accepted, format!("the pane changed and the input line is clear{how}"))
            }
            Look::Draft => {
                self.draft_polls += 1;
                if self.draft_polls >= DRAFT_POLLS_BEFORE_ENTER && !self.pressed_enter {
                    self.pressed_enter = true;
                    Step::PressEnter
                } else {
                    Step::Wait
                }
            }
            _ => {
                self.draft_polls = 0;
                Step::Wait
            }
        }
    }

    /// The verdict when the timeout has passed without a decision.
    pub fn finish(&self) -> (Verdict, String) {
        match self.last.as_ref().map(|(l, _)| *l) {
            Some(Look::Draft) => (
                Verdict::Draft,
                if self.pressed_enter {
                    "the text sits unsubmitted on the input line, also after a second Enter".into()
                } else {
                    "the text sits unsubmitted on the input line".into()
                },
            ),
            Some(Look::Blank) => (Verdict::Unverifiable, "the pane shows a blank screen".into()),
            Some(Look::Submitted) => (Verdict::Unverifiable, "the pane kept changing; could not confirm".into()),
            Some(Look::Unchanged) | None => (Verdict::Unverifiable, "the pane did not change".into()),
        }
    }
}

fn normalise(capture: &str) -> String {
    let mut lines: Vec<&str> = capture.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// Characters TUIs draw around an input box.
fn is_frame(c: char) -> bool {
    matches!(c, '│' | '┃' | '|' | '╭' | '╮' | '╰' | '╯' | '─' | ' ')
}

/// The content after the prompt marker of the last prompt line (`> `, `❯ `,
/// `› `, also inside a box), if there is a prompt line.
fn prompt_content(capture: &str) -> Option<String> {
    let idx = prompt_line(capture)?;
    let line = capture.lines().nth(idx)?;
    let rest = line.trim_start_matches(is_frame);
    let rest = rest.strip_prefix(['>', '❯', '›']).unwrap_or(rest);
    Some(rest.trim_matches(is_frame).to_string())
}

fn prompt_line(capture: &str) -> Option<usize> {
    capture
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start_matches(is_frame).starts_with(['>', '❯', '›']))
        .map(|(i, _)| i)
        .last()
}

/// The input line and what follows it (a multi-line input box, a status line);
/// with no prompt line, the last non-blank line.
fn input_region(capture: &str) -> String {
    let lines: Vec<&str> = capture.lines().collect();
    match prompt_line(capture) {
        Some(i) => lines[i..].join("\n"),
        None => lines.iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.to_string()).unwrap_or_default(),
    }
}

/// Whitespace-free text, so wrapping and box drawing do not hide a match.
fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && !is_frame(*c)).collect()
}

/// The tail of the last non-blank line of the text, whitespace removed.
fn needle(text: &str) -> String {
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let s = squash(last);
    let n = s.chars().count();
    s.chars().skip(n.saturating_sub(24)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "stub ready\n> \n\n\n";

    fn run(v: &mut Verifier, captures: &[&str]) -> Vec<Step> {
        captures.iter().map(|c| v.observe(c)).collect()
    }

    #[test]
    fn accepted_needs_a_stable_changed_screen_with_a_clear_input_line() {
        let mut v = Verifier::new(BEFORE, "[h:a -> h:b] hello world");
        let after = "stub ready\n> [h:a -> h:b] hello world\naccepted: [h:a -> h:b] hello world\n> \n";
        let steps = run(&mut v, &[BEFORE, after, after]);
        assert_eq!(steps[0], Step::Wait);
        assert_eq!(steps[1], Step::Wait);
        assert!(matches!(&steps[2], Step::Done(Verdict::Accepted, _)), "{steps:?}");
    }

    #[test]
    fn text_left_on_the_input_line_is_a_draft_and_gets_one_more_enter() {
        let mut v = Verifier::new(BEFORE, "line one\nplease do the thing");
        let draft = "stub ready\n> line one please do the thing\n";
        let steps = run(&mut v, &[draft, draft, draft, draft, draft]);
        assert_eq!(steps[..2], [Step::Wait, Step::Wait]);
        assert_eq!(steps[2], Step::PressEnter);
        assert_eq!(steps[3..], [Step::Wait, Step::Wait]);
        assert_eq!(v.finish().0, Verdict::Draft);
        assert!(v.finish().1.contains("second Enter"));
    }

    #[test]
    fn a_collapsed_paste_placeholder_on_the_prompt_is_a_draft() {
        let before = "╭────╮\n│ >  │\n╰────╯\n";
        let mut v = Verifier::new(before, "a\nb\nc");
        let after = "╭──────────────────────────╮\n│ > [Pasted text #1 +3 lines] │\n╰──────────────────────────╯\n";
        v.observe(after);
        v.observe(after);
        assert_eq!(v.finish().0, Verdict::Draft);
    }

    #[test]
    fn box_input_cleared_after_submit_is_accepted() {
        let before = "│ >   │\n? for shortcuts\n";
        let after = "● working on: fix the bug\n│ >   │\n? for shortcuts\n";
        let mut v = Verifier::new(before, "fix the bug");
        v.observe(after);
        assert!(matches!(v.observe(after), Step::Done(Verdict::Accepted, _)));
    }

    #[test]
    fn nothing_changed_or_blank_is_unverifiable() {
        let mut v = Verifier::new(BEFORE, "hi");
        run(&mut v, &[BEFORE, BEFORE]);
        assert_eq!(v.finish(), (Verdict::Unverifiable, "the pane did not change".into()));
        let mut v = Verifier::new(BEFORE, "hi");
        run(&mut v, &["\n\n\n", "   \n"]);
        assert_eq!(v.finish(), (Verdict::Unverifiable, "the pane shows a blank screen".into()));
    }

    #[test]
    fn long_wrapped_text_is_still_found() {
        let text = "x".repeat(50) + " the end of it";
        let mut v = Verifier::new(BEFORE, &text);
        let wrapped = format!("> {}\n{} the end\n of it\n", "x".repeat(30), "x".repeat(20));
        v.observe(&wrapped);
        v.observe(&wrapped);
        assert_eq!(v.finish().0, Verdict::Draft);
    }
}
