//! The last lines of a pane: its screen and the scrollback above it, as
//! `fleet tail` shows them.
//!
//! One `capture-pane` (joined wrapped lines, `-e` for colours when asked) and
//! the pane's size from the same tmux call (`display-message` after it, as one
//! command list, so its line is the last of the output), so what is shown and
//! the size it was drawn at agree.

use crate::tmux::{Tmux, TmuxError, exact_session};

/// The most lines one tail returns.
pub const MAX_LINES: u32 = 10_000;
/// Lines when none are asked for (the fleet's old `agent tail -n 80`).
pub const DEFAULT_LINES: u32 = 80;

/// What a tail shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    /// Oldest first; trailing blank lines of the screen are left out.
    pub lines: Vec<String>,
    pub width: u32,
    pub height: u32,
}

/// The last `lines` lines (1..=[`MAX_LINES`]) of `session`'s first pane, with
/// escape sequences for colours and attributes when `ansi`.
pub fn tail(tmux: &Tmux, session: &str, lines: u32, ansi: bool) -> Result<Tail, TmuxError> {
    let lines = lines.clamp(1, MAX_LINES);
    let (target, start) = (exact_session(session), format!("-{lines}"));
    let mut args = capture(&target, &start, ansi);
    args.extend([";", "display-message", "-p", "-t", &target, SIZE]);
    parse(&tmux.run(&args, None)?, lines).ok_or_else(|| TmuxError::Failed {
        args: format!("capture-pane -t {target}"),
        socket: tmux.socket.to_string(),
        stderr: "tmux printed no pane size after the capture".into(),
    })
}

/// The pane's size, printed after the capture.
const SIZE: &str = "#{pane_width} #{pane_height}";

/// `capture-pane` of `target` from line `start`, joined wrapped lines, with
/// colours when `ansi`.
fn capture<'a>(target: &'a str, start: &'a str, ansi: bool) -> Vec<&'a str> {
    let mut args = vec!["capture-pane", "-p", "-J", "-t", target, "-S", start];
    if ansi {
        args.push("-e");
    }
    args
}

/// [`tail`] through a control-mode client (`run` runs one command and
/// returns its lines): no process is spawned. The capture and the size are
/// two commands, so a resize between them may show a size the capture was
/// not drawn at.
pub fn tail_via(
    mut run: impl FnMut(&[&str]) -> Result<Vec<String>, TmuxError>,
    session: &str,
    lines: u32,
    ansi: bool,
) -> Result<Tail, TmuxError> {
    let lines = lines.clamp(1, MAX_LINES);
    let (target, start) = (exact_session(session), format!("-{lines}"));
    let mut out = run(&capture(&target, &start, ansi))?;
    out.extend(run(&["display-message", "-p", "-t", &target, SIZE])?);
    parse(&out.join("\n"), lines).ok_or_else(|| TmuxError::Failed {
        args: format!("capture-pane -t {target}"),
        socket: String::new(),
        stderr: "tmux printed no pane size after the capture".into(),
    })
}

/// Split tmux's output into the capture and the size line (the last line,
/// printed by `display-message` after the capture); keep the last `lines`
/// lines of the capture without its trailing blank lines.
fn parse(out: &str, lines: u32) -> Option<Tail> {
    let mut text: Vec<&str> = out.lines().collect();
    let (w, h) = text.pop()?.split_once(' ')?;
    Some(Tail { lines: last_lines(&text, lines), width: w.parse().ok()?, height: h.parse().ok()? })
}

/// The last `lines` lines of a capture, its blank bottom left out.
pub fn last_lines<S: AsRef<str>>(text: &[S], lines: u32) -> Vec<String> {
    fleet_core::activity::bottom_lines(text, lines as usize).iter().map(|l| l.as_ref().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestServer;

    #[test]
    fn parse_keeps_the_last_lines_without_the_blank_bottom() {
        let out = "a\nb\nc\n\n   \n120 30\n";
        assert_eq!(parse(out, 2), Some(Tail { lines: vec!["b".into(), "c".into()], width: 120, height: 30 }));
        assert_eq!(parse(out, 80).unwrap().lines, ["a", "b", "c"]);
        assert_eq!(parse("80 24", 5).unwrap().lines, Vec::<String>::new());
        assert_eq!(parse("", 5), None, "no size line");
        assert_eq!(parse("a\nx 24", 5), None);
    }

    /// A real pane that printed more than a screen: the last lines, its
    /// scrollback included, and its size.
    #[test]
    fn a_pane_shows_its_last_lines_and_size() {
        let server = TestServer::new();
        server.session("t", &["sh", "-c", "seq 1 200; printf '\\033[31mred\\033[0m\\n'; sleep 30"]);
        server.wait_for("the output", || server.capture("t").contains("red"));
        let t = tail(&server.tmux, "t", 3, false).unwrap();
        assert_eq!(t.lines, ["199", "200", "red"]);
        assert_eq!((t.width, t.height), (120, 30));
        let t = tail(&server.tmux, "t", 50, false).unwrap();
        assert_eq!(t.lines.len(), 50, "scrollback above the 30-line screen");
        assert_eq!(t.lines[0], "152");
        let t = tail(&server.tmux, "t", 1, true).unwrap();
        assert!(t.lines[0].contains("\u{1b}[31m") && t.lines[0].contains("red"), "{:?}", t.lines);
        let e = tail(&server.tmux, "nope", 3, false).unwrap_err();
        assert!(e.is_no_target(), "{e}");
        // The same through a control-mode client.
        server.session("_holder", &["sleep", "30"]);
        let mut c = crate::control::Control::attach(&server.tmux, "_holder").unwrap();
        for (n, ansi) in [(3, false), (50, false), (1, true)] {
            assert_eq!(tail_via(|w| c.run(w), "t", n, ansi).unwrap(), tail(&server.tmux, "t", n, ansi).unwrap());
        }
        let e = tail_via(|w| c.run(w), "nope", 3, false).unwrap_err();
        assert!(e.is_no_target(), "{e}");
    }
}
