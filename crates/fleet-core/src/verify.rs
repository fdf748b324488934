//! Deciding whether an agent really took a message, from pane captures.
//!
//! The driver (fleet-tmux) captures the pane before sending, once more after
//! the paste and before `Enter` ([`Verifier::pasted`]), then polls
//! `capture-pane` about every 400 ms and feeds each capture to
//! [`Verifier::observe`]. "Accepted" is the product's promise, so it needs
//! positive evidence; anything unclear ends as `draft` or `unverifiable`.
//!
//! Screens with a prompt line (the last line starting with `>`, `❯` or `›`,
//! also inside a box): the *input region* is that line and everything below
//! it (a multi-line input box, a footer). Then:
//! - `draft`: the region holds the text, or the prompt shows new content (a
//!   paste placeholder such as `[Pasted text #1 +3 lines]`);
//! - `accepted`: the region is clear **and** there is evidence the text was
//!   taken: it shows in lines that are new since the first capture, above the
//!   region (the transcript or echo), or it was seen on the input line before
//!   and is now gone. The region (not the whole screen: a spinner or an
//!   elapsed-time line above the prompt changes on every poll) must look the
//!   same on two captures in a row.
//!
//! Screens without a prompt line: nothing tells input from output, so the
//! text counts as submitted only when it sits on the old input line (the last
//! line of the first capture, e.g. a shell prompt, now followed by the text)
//! and below it come only new lines ending with a fresh copy of that input
//! line. A text that shows anywhere else in new or changed lines (e.g. above
//! a footer or status line that did not move) is a `draft`. Stability is
//! judged on the whole screen.
//!
//! `unverifiable`: nothing changed, the screen is blank, the pane changed but
//! shows no trace of the text (e.g. only a spinner moved), or it never held
//! still.

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
    /// The text (or a paste placeholder) sits on the prompt's input line.
    Draft,
    /// No prompt line: the text shows in new lines, with nothing after it that
    /// shows it was submitted.
    Pending,
    /// The input is clear and there is evidence the text was taken.
    Submitted,
    /// The pane changed, but shows no trace of the text.
    Changed,
}

/// Polls in a row that must look like a draft before Enter is pressed again.
const DRAFT_POLLS_BEFORE_ENTER: u32 = 3;

pub struct Verifier {
    before: String,
    before_prompt: Option<String>,
    needle: String,
    /// The last look and what stability is judged on (the input region, or
    /// the whole screen when there is no prompt line).
    last: Option<(Look, String)>,
    draft_polls: u32,
    pressed_enter: bool,
    /// The text (or a paste placeholder) was seen on the input.
    seen_pending: bool,
}

impl Verifier {
    /// `before` is the capture taken before sending; `text` what was pasted.
    pub fn new(before: &str, text: &str) -> Self {
        let before = normalise(before);
        let before_prompt = {
            let lines: Vec<&str> = before.lines().collect();
            prompt_line(&lines).map(|i| prompt_content(lines[i]))
        };
        Verifier {
            before,
            before_prompt,
            needle: needle(text),
            last: None,
            draft_polls: 0,
            pressed_enter: false,
            seen_pending: false,
        }
    }

    /// Feed the capture taken after the paste and before `Enter`: seeing the
    /// text on the input there is evidence for a later clear input line.
    pub fn pasted(&mut self, capture: &str) {
        if self.look(capture).2 {
            self.seen_pending = true;
        }
    }

    fn holds(&self, s: &str) -> bool {
        !self.needle.is_empty() && squash(s).contains(&self.needle)
    }

    /// The look of a capture, the text its stability is judged on, and
    /// whether the text itself (or a paste placeholder) shows on the input.
    fn look(&self, capture: &str) -> (Look, String, bool) {
        let now = normalise(capture);
        if now.trim().is_empty() {
            return (Look::Blank, now, false);
        }
        if now == self.before {
            return (Look::Unchanged, now, false);
        }
        let lines: Vec<&str> = now.lines().collect();
        let before: Vec<&str> = self.before.lines().collect();
        let aligned = align(&before, &lines);
        let Some(p) = prompt_line(&lines) else {
            let look = self.look_without_prompt(&before, &lines, &aligned);
            return (look, now, look == Look::Pending);
        };
        let region = lines[p..].join("\n");
        let prompt = prompt_content(lines[p]);
        let new_prompt_text = !prompt.is_empty() && Some(&prompt) != self.before_prompt.as_ref();
        // A hint or suggestion drawn in an empty prompt also changes its
        // content: that is a draft (never accepted) but no evidence of our text.
        let shows_text = self.holds(&region) || (new_prompt_text && prompt.to_lowercase().contains("paste"));
        let look = if shows_text || new_prompt_text {
            Look::Draft
        } else if self.seen_pending || self.in_new_lines(&lines[..p], &aligned[..p]) {
            Look::Submitted
        } else {
            Look::Changed
        };
        (look, region, shows_text)
    }

    /// Whether the text shows in a run of new lines (lines the first capture
    /// did not have, wrapped text joined).
    fn in_new_lines(&self, lines: &[&str], aligned: &[Option<usize>]) -> bool {
        new_runs(aligned).into_iter().any(|r| self.holds(&lines[r].join("\n")))
    }

    fn look_without_prompt(&self, before: &[&str], lines: &[&str], aligned: &[Option<usize>]) -> Look {
        if !self.in_new_lines(lines, aligned) {
            return if self.seen_pending { Look::Submitted } else { Look::Changed };
        }
        if self.fresh_input_line(before, lines, aligned) { Look::Submitted } else { Look::Pending }
    }

    /// The shell pattern: the old input line (the first capture's last line)
    /// now holds the text, only new lines follow it, and the screen ends with
    /// a fresh copy of that input line.
    fn fresh_input_line(&self, before: &[&str], lines: &[&str], aligned: &[Option<usize>]) -> bool {
        let (Some(input), Some(bottom)) = (before.len().checked_sub(1), lines.len().checked_sub(1)) else {
            return false;
        };
        if aligned[bottom] != Some(input) {
            return false;
        }
        // The block between the last unchanged line above and the fresh input line.
        let above = (0..bottom).rev().find(|&i| aligned[i].is_some());
        if let Some(a) = above
            && aligned[a] != input.checked_sub(1)
        {
            // Lines of the old screen between it and its input line were rewritten.
            return false;
        }
        let block = &lines[above.map_or(0, |a| a + 1)..bottom];
        let old_input = before[input];
        !block.is_empty()
            && block[0].len() > old_input.len()
            && block[0].starts_with(old_input)
            && self.holds(&block.join("\n"))
    }

    /// Feed one capture. Call [`Verifier::finish`] when the time is up.
    pub fn observe(&mut self, capture: &str) -> Step {
        let (look, key, shows_text) = self.look(capture);
        self.seen_pending |= shows_text;
        let stable = self.last.as_ref().is_some_and(|(l, k)| *l == look && *k == key);
        self.last = Some((look, key));
        match look {
            Look::Submitted if stable => {
                let how = if self.pressed_enter { " after a second Enter" } else { "" };
                Step::Done(Verdict::Accepted, format!("the pane changed and the input line is clear{how}"))
            }
            Look::Draft | Look::Pending => {
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
        let again = if self.pressed_enter { ", also after a second Enter" } else { "" };
        match self.last.as_ref().map(|(l, _)| *l) {
            Some(Look::Draft) => (Verdict::Draft, format!("the text sits unsubmitted on the input line{again}")),
            Some(Look::Pending) => (
                Verdict::Draft,
                format!(
                    "no prompt line recognised and the text is still on the newest lines, with no fresh input \
                     line after it: it looks unsubmitted{again}"
                ),
            ),
            Some(Look::Blank) => (Verdict::Unverifiable, "the pane shows a blank screen".into()),
            Some(Look::Submitted) => (Verdict::Unverifiable, "the input line kept changing; could not confirm".into()),
            Some(Look::Changed) => (
                Verdict::Unverifiable,
                "the pane changed, but the text shows neither on the input line nor in new lines above it; \
                 could not confirm it was taken"
                    .into(),
            ),
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

/// The content after the prompt marker of a prompt line (`> `, `❯ `, `› `,
/// also inside a box).
fn prompt_content(line: &str) -> String {
    let rest = line.trim_start_matches(is_frame);
    let rest = rest.strip_prefix(['>', '❯', '›']).unwrap_or(rest);
    rest.trim_matches(is_frame).to_string()
}

/// The index of the last prompt line, if any.
fn prompt_line(lines: &[&str]) -> Option<usize> {
    lines.iter().rposition(|l| l.trim_start_matches(is_frame).starts_with(['>', '❯', '›']))
}

/// For each line of `now`, the line of `before` it is the same as, by a
/// longest common subsequence of lines (ties go to the latest lines, so an
/// input line that comes back at the bottom is matched there). Lines without
/// a partner are new or changed.
fn align(before: &[&str], now: &[&str]) -> Vec<Option<usize>> {
    let (n, m) = (before.len(), now.len());
    let mut out = vec![None; m];
    // lcs[i][j]: the LCS length of before[..i] and now[..j].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in 1..=n {
        for j in 1..=m {
            lcs[i][j] =
                if before[i - 1] == now[j - 1] { lcs[i - 1][j - 1] + 1 } else { lcs[i - 1][j].max(lcs[i][j - 1]) };
        }
    }
    // Where the lines differ, lcs[i][j] is the larger of lcs[i - 1][j] and
    // lcs[i][j - 1], so the mutant `lcs[i][j - 1]` -> `lcs[i][j]` in the test
    // below is equivalent (cargo-mutants reports it as missed).
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        if before[i - 1] == now[j - 1] {
            out[j - 1] = Some(i - 1);
            i -= 1;
            j -= 1;
        } else if lcs[i - 1][j] >= lcs[i][j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    out
}

/// The maximal runs of lines without a partner in the first capture.
fn new_runs(aligned: &[Option<usize>]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, a) in aligned.iter().enumerate() {
        match (a, start) {
            (None, None) => start = Some(i),
            (Some(_), Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push(s..aligned.len());
    }
    runs
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

    /// Feed the same captures for a whole verify window; the verdict.
    fn verdict(before: &str, text: &str, pasted: Option<&str>, captures: &[&str]) -> (Verdict, String) {
        let mut v = Verifier::new(before, text);
        if let Some(p) = pasted {
            v.pasted(p);
        }
        for c in captures {
            if let Step::Done(verdict, detail) = v.observe(c) {
                return (verdict, detail);
            }
        }
        v.finish()
    }

    #[test]
    fn no_prompt_text_above_a_footer_is_never_accepted() {
        let text = "[h:a -> h:b] please fix the build";
        // A full-screen TUI without a prompt marker: the text lands above a status line that did not move.
        let before = "model: x   tokens: 0\nsome earlier output\n\n\n\n-- ctrl+c to quit --";
        let after =
            "model: x   tokens: 0\nsome earlier output\n\n[h:a -> h:b] please fix the build\n\n-- ctrl+c to quit --";
        let (v, detail) = verdict(before, text, Some(after), &[after; 8]);
        assert_eq!(v, Verdict::Draft, "{detail}");
        assert!(detail.contains("no prompt line recognised"), "{detail}");
        // The same on an inline screen that grew by the text's lines (the text wrapped).
        let before = "ready\nstatus: idle";
        let after = "ready\n[h:a -> h:b] please fix\nthe build\nstatus: idle";
        assert_eq!(verdict(before, text, None, &[after; 8]).0, Verdict::Draft);
        // A status line that changes as one types (a character count) is no fresh input line either.
        let before = "ready\n\nchars: 0\n-- ctrl+c to quit --";
        let after = "ready\n[h:a -> h:b] please fix the build\nchars: 33\n-- ctrl+c to quit --";
        assert_eq!(verdict(before, text, None, &[after; 8]).0, Verdict::Draft);
        // And a footer the paste pushed down, with a hint line inserted under the text.
        let before = "ready\n-- ctrl+c to quit --";
        let after = "ready\n[h:a -> h:b] please fix the build\n(enter to send)\n-- ctrl+c to quit --";
        assert_eq!(verdict(before, text, None, &[after; 8]).0, Verdict::Draft);
    }

    #[test]
    fn no_prompt_shell_echo_above_a_fresh_input_line_is_accepted() {
        let text = "[h:a -> h:b] echo hello there";
        let before = "last login: today\nuser@box:~$";
        let after =
            "last login: today\nuser@box:~$ [h:a -> h:b] echo hello there\nbash: [h:a: command not found\nuser@box:~$";
        let (v, detail) = verdict(before, text, None, &[after, after]);
        assert_eq!(v, Verdict::Accepted, "{detail}");
        // A full screen that scrolled: the old top lines are gone.
        let before: String = (0..23).map(|i| format!("line {i}\n")).collect::<String>() + "$";
        let after: String = (2..23).map(|i| format!("line {i}\n")).collect::<String>()
            + "$ [h:a -> h:b] echo hello there\nhello there\n$";
        assert_eq!(verdict(&before, text, None, &[&after, &after]).0, Verdict::Accepted);
        // Still typed on the input line, no fresh one after it: a draft.
        let typed = "last login: today\nuser@box:~$ [h:a -> h:b] echo hello there";
        assert_eq!(verdict("last login: today\nuser@box:~$", text, None, &[typed; 8]).0, Verdict::Draft);
    }

    #[test]
    fn a_spinner_above_the_prompt_does_not_stop_acceptance() {
        let text = "[h:a -> h:b] run the tests";
        let screen = |secs: u32, transcript: &str| {
            format!(
                "{transcript}✻ Thinking… ({secs}s · esc to interrupt)\n╭────────╮\n│ >      │\n╰────────╯\n  ? for shortcuts\n"
            )
        };
        let before = screen(1, "");
        let echo = "> [h:a -> h:b] run the tests\n";
        let polls: Vec<String> = (2..6).map(|s| screen(s, echo)).collect();
        let mut v = Verifier::new(&before, text);
        assert_eq!(v.observe(&polls[0]), Step::Wait);
        assert!(
            matches!(v.observe(&polls[1]), Step::Done(Verdict::Accepted, _)),
            "the spinner changed, the input did not"
        );
    }

    #[test]
    fn a_spinner_alone_is_no_evidence() {
        // A busy agent that swallowed the paste: only the elapsed time moves.
        let text = "[h:a -> h:b] run the tests";
        let screen = |secs: u32| format!("✻ Thinking… ({secs}s)\n│ >      │\n");
        let polls: Vec<String> = (2..12).map(screen).collect();
        let polls: Vec<&str> = polls.iter().map(String::as_str).collect();
        let (v, detail) = verdict(&screen(1), text, None, &polls);
        assert_eq!(v, Verdict::Unverifiable);
        assert!(detail.contains("could not confirm it was taken"), "{detail}");
        // The same without a prompt line.
        let screen = |secs: u32| format!("working ({secs}s)\nstatus: busy");
        let polls: Vec<String> = (2..12).map(screen).collect();
        let polls: Vec<&str> = polls.iter().map(String::as_str).collect();
        assert_eq!(verdict(&screen(1), text, None, &polls).0, Verdict::Unverifiable);
    }

    #[test]
    fn a_placeholder_seen_before_enter_and_then_cleared_is_accepted() {
        let before = "╭────╮\n│ >  │\n╰────╯\n";
        let pasted = "╭──────────────────────────╮\n│ > [Pasted text #1 +3 lines] │\n╰──────────────────────────╯\n";
        // After Enter the transcript shows the placeholder, not the text.
        let after = "> [Pasted text #1 +3 lines]\n● On it.\n╭────╮\n│ >  │\n╰────╯\n";
        assert_eq!(verdict(before, "a\nb\nc", Some(pasted), &[after, after]).0, Verdict::Accepted);
        // Without having seen it on the input, that screen proves nothing.
        assert_eq!(verdict(before, "a\nb\nc", None, &[after; 4]).0, Verdict::Unverifiable);
        // A hint that changed in the empty prompt is a draft, and no evidence.
        let hint = "╭────╮\n│ > Try \"fix lint\" │\n╰────╯\n";
        assert_eq!(verdict(before, "a\nb\nc", Some(hint), &[after; 4]).0, Verdict::Unverifiable);
    }

    #[test]
    fn the_stub_agent_screen_is_accepted() {
        let before = "stub agent coder ready\n> ";
        let text = "[testhost:me -> testhost:coder] line one\nline two; ok";
        let pasted = "stub agent coder ready\n> [testhost:me -> testhost:coder] line one\n  line two; ok";
        let after = "stub agent coder ready\n> [testhost:me -> testhost:coder] line one\n  line two; ok\naccepted: [testhost:me -> testhost:coder] line one ⏎ line two; ok\n> ";
        assert_eq!(verdict(before, text, Some(pasted), &[after, after]).0, Verdict::Accepted);
        assert_eq!(verdict(before, text, None, &[after, after]).0, Verdict::Accepted);
    }

    /// The receipt words are a contract (`--json`, web UIs): pinned here.
    #[test]
    fn verdict_words_are_fixed() {
        for (v, word) in
            [(Verdict::Accepted, "accepted"), (Verdict::Draft, "draft"), (Verdict::Unverifiable, "unverifiable")]
        {
            assert_eq!(v.as_str(), word);
            assert_eq!(v.to_string(), word);
            assert_eq!(serde_json::to_value(v).unwrap(), word);
        }
    }

    /// No prompt line and a screen that changed without our text: no evidence,
    /// however still the screen holds (the "text seen" flag must not be set by
    /// a capture that does not show the text).
    #[test]
    fn a_still_changed_screen_without_the_text_is_not_accepted() {
        let text = "[h:a -> h:b] please fix the build";
        let (v, detail) = verdict("ready\nstatus: idle", text, None, &["ready\nstatus: busy"; 6]);
        assert_eq!(v, Verdict::Unverifiable, "{detail}");
        assert!(detail.contains("shows neither on the input line nor in new lines"), "{detail}");
    }

    /// A prompt that always shows the same placeholder is no draft: the text
    /// echoed above it is the evidence.
    #[test]
    fn an_unchanged_prompt_placeholder_is_not_a_draft() {
        let before = "│ > Type a message │\n";
        let after = "> [h:a -> h:b] fix it\n● on it\n│ > Type a message │\n";
        assert_eq!(verdict(before, "[h:a -> h:b] fix it", None, &[after, after]).0, Verdict::Accepted);
        // A new placeholder in that prompt is (a draft, no evidence).
        let other = "● on it\n│ > Try again │\n";
        assert_eq!(verdict(before, "[h:a -> h:b] fix it", None, &[other; 6]).0, Verdict::Draft);
    }

    /// The text seen on the input before Enter, then a clear input line with no
    /// echo above it (an agent that redraws its transcript elsewhere): accepted.
    #[test]
    fn the_text_seen_on_the_input_then_cleared_is_accepted() {
        let pasted = "> [h:a -> h:b] do it\n";
        let after = "● working\n> \n";
        assert_eq!(verdict("> \n", "[h:a -> h:b] do it", Some(pasted), &[after, after]).0, Verdict::Accepted);
        assert_eq!(verdict("> \n", "[h:a -> h:b] do it", None, &[after; 4]).0, Verdict::Unverifiable);
    }

    /// Without a prompt line, text printed on a line *below* an unchanged shell
    /// prompt was not typed at that prompt: not a fresh input line.
    #[test]
    fn text_below_an_unchanged_input_line_is_not_submitted() {
        let text = "[h:a -> h:b] echo hi";
        let after = "x\n$\n[h:a -> h:b] echo hi\n$";
        assert_eq!(verdict("x\n$", text, None, &[after; 8]).0, Verdict::Draft);
    }

    /// Accepted needs the same look *and* the same input region twice in a row.
    #[test]
    fn a_changing_input_region_is_not_yet_stable() {
        let text = "[h:a -> h:b] hello";
        let echo = "> [h:a -> h:b] hello\naccepted: [h:a -> h:b] hello\n";
        let first = format!("{echo}> \n? for shortcuts");
        let second = format!("{echo}> \nesc to interrupt");
        let mut v = Verifier::new("> \n? for shortcuts", text);
        assert_eq!(v.observe(&first), Step::Wait);
        assert_eq!(v.observe(&second), Step::Wait, "the region changed: not stable");
        assert!(matches!(v.observe(&second), Step::Done(Verdict::Accepted, _)));
    }

    /// The longest common subsequence of two line lists, by plain recursion
    /// (small inputs only): the oracle for [`align`].
    fn lcs_len(a: &[&str], b: &[&str]) -> usize {
        match (a.split_last(), b.split_last()) {
            (Some((x, ra)), Some((y, rb))) if x == y => 1 + lcs_len(ra, rb),
            (Some((_, ra)), Some((_, rb))) => lcs_len(ra, b).max(lcs_len(a, rb)),
            _ => 0,
        }
    }

    /// Every pair of line lists over {a, b} up to 5 lines: the alignment pairs
    /// equal lines, in order, one to one, and as many as the LCS has.
    #[test]
    fn alignment_is_a_longest_common_subsequence() {
        let lists: Vec<Vec<&str>> = (0..=5usize)
            .flat_map(|len| {
                (0..1u32 << len).map(move |bits| (0..len).map(|k| if bits >> k & 1 == 1 { "b" } else { "a" }).collect())
            })
            .collect();
        for before in &lists {
            for now in &lists {
                let a = align(before, now);
                assert_eq!(a.len(), now.len());
                let pairs: Vec<(usize, usize)> = a.iter().enumerate().filter_map(|(j, i)| i.map(|i| (i, j))).collect();
                for &(i, j) in &pairs {
                    assert_eq!(before[i], now[j], "{before:?} {now:?} {a:?}");
                }
                assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1), "{before:?} {now:?} {a:?}");
                assert_eq!(pairs.len(), lcs_len(before, now), "{before:?} {now:?} {a:?}");
            }
        }
    }

    /// Ties go to the latest lines: an input line that comes back at the
    /// bottom is matched there.
    #[test]
    fn alignment_ties_go_to_the_latest_lines() {
        assert_eq!(align(&["$"], &["$", "x", "$"]), [None, None, Some(0)]);
        assert_eq!(align(&["a", "$"], &["a", "$", "b", "$"]), [Some(0), None, None, Some(1)]);
        assert_eq!(align(&[], &["a"]), [None]);
        assert_eq!(align(&["a"], &[]), Vec::<Option<usize>>::new());
    }

    #[test]
    fn alignment_marks_new_and_changed_lines() {
        let a = align(&["a", "b", "$"], &["b", "$ x", "y", "$"]);
        assert_eq!(a, [Some(1), None, None, Some(2)]);
        let runs = new_runs(&a);
        assert_eq!((runs.len(), runs[0].clone()), (1, 1..3));
        assert_eq!(new_runs(&[None, Some(0), None]), [0..1, 2..3]);
    }
}
