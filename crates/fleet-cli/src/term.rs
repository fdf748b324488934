//! The user's terminal for `fleet watch` and `fleet attach`: raw mode and the
//! alternate screen (put back however the command ends), its size, and a
//! renderer that draws a pane of any size into it.
//!
//! The renderer keeps the pane's screen in a terminal emulator (vt100) at
//! the pane's size, fed with the node's frames, and draws it into the user's
//! terminal whatever its size: a smaller terminal shows the pane's top-left
//! part, a larger one the pane and a status line below it. Only rows that
//! changed are drawn again.

use fleet_proto::v1::{self, pane_frame::Body};
use rustix::termios::{self, OptionalActions, Termios};
use std::io::Write;
use std::num::NonZeroU16;
use std::os::fd::BorrowedFd;

/// Raw mode and the alternate screen while alive.
pub struct RawTerminal {
    saved: Termios,
}

fn stdin_fd() -> BorrowedFd<'static> {
    rustix::stdio::stdin()
}

/// Modes a pane's program may have set in the user's terminal through the
/// renderer (cursor keys, keypad, bracketed paste, mouse), all off, and the
/// cursor shown.
const MODES_OFF: &str =
    "\x1b[?1l\x1b>\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?25h\x1b[0m";

impl RawTerminal {
    /// Enter raw mode and the alternate screen; `Err` names why not (stdin
    /// is not a terminal: the caller says what to use instead).
    pub fn enter() -> std::io::Result<RawTerminal> {
        let saved = termios::tcgetattr(stdin_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin_fd(), OptionalActions::Flush, &raw)?;
        let mut out = std::io::stdout().lock();
        out.write_all(b"\x1b[?1049h\x1b[H\x1b[2J")?;
        out.flush()?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(MODES_OFF.as_bytes());
        let _ = out.write_all(b"\x1b[?1049l");
        let _ = out.flush();
        let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Is stdin a terminal?
pub fn is_terminal() -> bool {
    termios::isatty(stdin_fd())
}

/// The terminal's size (columns, rows); 80x24 when it cannot be read.
pub fn size() -> (u16, u16) {
    match termios::tcgetwinsize(rustix::stdio::stdout()) {
        Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (w.ws_col, w.ws_row),
        _ => (80, 24),
    }
}

fn nz(n: u32) -> NonZeroU16 {
    NonZeroU16::new(u16::try_from(n.clamp(1, 1000)).unwrap_or(1000)).expect("at least 1")
}

/// A pane's screen drawn into a terminal of another size.
pub struct Renderer {
    parser: vt100::Parser,
    /// The rows as last drawn (None: draw every row).
    drawn: Vec<Option<String>>,
    /// The terminal's size (columns, rows).
    term: (u16, u16),
    status: String,
    modes: String,
}

impl Renderer {
    pub fn new(term: (u16, u16), status: String) -> Renderer {
        Renderer {
            parser: vt100::Parser::new(nz(24), nz(80), 0),
            drawn: Vec::new(),
            term,
            status,
            modes: String::new(),
        }
    }

    /// The terminal was resized: everything is drawn again.
    pub fn resize(&mut self, term: (u16, u16)) {
        self.term = term;
        self.drawn.clear();
    }

    /// The pane's screen as text.
    pub fn contents(&self) -> String {
        self.parser.screen().contents()
    }

    /// Apply a frame; `Some(why)` when the stream ends.
    pub fn apply(&mut self, frame: &v1::PaneFrame) -> Option<String> {
        let (rows, cols) = (nz(frame.pane_height), nz(frame.pane_width));
        match &frame.body {
            Some(Body::Screen(s)) => {
                self.parser = vt100::Parser::new(rows, cols, 0);
                self.parser.process(&s.content);
                self.parser.process(format!("\x1b[0m\x1b[{};{}H", s.cursor_y + 1, s.cursor_x + 1).as_bytes());
                self.drawn.clear();
            }
            Some(Body::Output(bytes)) => {
                if frame.pane_width > 0 && self.parser.screen().size() != (rows, cols) {
                    self.parser.screen_mut().set_size(rows, cols);
                    self.drawn.clear();
                }
                self.parser.process(bytes);
            }
            Some(Body::Ended(why)) => return Some(why.clone()),
            None => {}
        }
        None
    }

    /// What to write to the terminal to show the pane as it is now.
    pub fn draw(&mut self, input_modes: bool) -> Vec<u8> {
        let (cols, rows) = self.term;
        let screen = self.parser.screen();
        let (ph, pw) = screen.size();
        let show_rows = ph.get().min(rows);
        let show_cols = pw.get().min(cols);
        let mut out = Vec::new();
        if self.drawn.len() != usize::from(rows) {
            out.extend_from_slice(b"\x1b[0m\x1b[H\x1b[2J");
            self.drawn = vec![None; usize::from(rows)];
        }
        let mut fresh: Vec<String> = screen.rows_formatted(0, show_cols).take(usize::from(show_rows)).collect();
        // Rows below the pane: blank, then the status line on the last row.
        fresh.resize(usize::from(rows), String::new());
        if rows > ph.get() {
            let mut status = self.status.clone();
            status.truncate(usize::from(cols));
            fresh[usize::from(rows) - 1] = format!("\x1b[7m{status}\x1b[0m");
        }
        for (i, row) in fresh.into_iter().enumerate() {
            if self.drawn[i].as_ref() != Some(&row) {
                out.extend_from_slice(format!("\x1b[{};1H\x1b[0m{row}\x1b[0m\x1b[K", i + 1).as_bytes());
                self.drawn[i] = Some(row);
            }
        }
        if input_modes {
            let modes = screen.input_mode_formatted();
            if modes != self.modes {
                out.extend_from_slice(modes.as_bytes());
                self.modes = modes;
            }
        }
        let (cy, cx) = screen.cursor_position();
        if cy < show_rows && cx < show_cols && !screen.hide_cursor() {
            out.extend_from_slice(format!("\x1b[{};{}H\x1b[?25h", cy + 1, cx + 1).as_bytes());
        } else {
            out.extend_from_slice(b"\x1b[?25l");
        }
        out
    }
}

/// Pane output as plain text: escape sequences and control characters
/// dropped (a newline and a tab kept), a CR LF read as a newline. Keeps
/// what it needs across chunks (a sequence split between two).
#[derive(Default)]
pub struct Plain {
    state: PlainState,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum PlainState {
    #[default]
    Text,
    Escape,
    Csi,
    /// An OSC, DCS, APC, PM or SOS string, up to BEL or ESC `\`.
    Str,
    StrEscape,
}

impl Plain {
    pub fn text(&mut self, bytes: &[u8]) -> Vec<u8> {
        use PlainState::*;
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            self.state = match (self.state, b) {
                (Text, 0x1b) => Escape,
                (Text, b'\n' | b'\t') => {
                    out.push(b);
                    Text
                }
                (Text, b) if b < 0x20 || b == 0x7f => Text,
                (Text, b) => {
                    out.push(b);
                    Text
                }
                (Escape, b'[') => Csi,
                (Escape, b']' | b'P' | b'_' | b'^' | b'X') => Str,
                // Two-byte sequences; an intermediate byte (`(B`) takes one more.
                (Escape, 0x20..=0x2f) => Escape,
                (Escape, _) => Text,
                (Csi, 0x40..=0x7e) => Text,
                (Csi, _) => Csi,
                (Str, 0x07) => Text,
                (Str, 0x1b) => StrEscape,
                (Str, _) => Str,
                (StrEscape, b'\\') => Text,
                (StrEscape, _) => Str,
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, body: Body) -> v1::PaneFrame {
        v1::PaneFrame { pane_width: w, pane_height: h, body: Some(body), ..Default::default() }
    }

    #[test]
    fn plain_text_drops_sequences_even_split_across_chunks() {
        let mut p = Plain::default();
        let mut out = p.text(b"a\x1b[3");
        out.extend(p.text(b"1mred\x1b[0m\r\n\x1b]0;title\x07b\x1b(Bc\x1b]8;;x\x1b\\d\x08\t"));
        assert_eq!(String::from_utf8(out).unwrap(), "ared\nbcd\t");
        assert_eq!(p.text("é€".as_bytes()), "é€".as_bytes());
    }

    #[test]
    fn a_pane_larger_than_the_terminal_shows_its_top_left_and_a_smaller_one_a_status_line() {
        let content = b"0123456789\r\nabcdefghij\r\nline three".to_vec();
        let screen = Body::Screen(v1::PaneScreen { content, cursor_x: 10, cursor_y: 2, reason: "start".into() });
        let mut small = Renderer::new((4, 2), "status".into());
        small.apply(&frame(12, 3, screen.clone()));
        let drawn = String::from_utf8(small.draw(false)).unwrap();
        assert!(drawn.contains("0123") && drawn.contains("abcd"), "{drawn:?}");
        assert!(!drawn.contains("0123456") && !drawn.contains("line"), "cropped: {drawn:?}");
        assert!(drawn.ends_with("\x1b[?25l"), "the cursor is outside: hidden");

        let mut big = Renderer::new((20, 6), "watching a@h".into());
        big.apply(&frame(12, 3, screen));
        let drawn = String::from_utf8(big.draw(false)).unwrap();
        assert!(drawn.contains("line three"), "{drawn:?}");
        assert!(drawn.contains("\x1b[6;1H\x1b[0m\x1b[7mwatching a@h"), "{drawn:?}");
        assert!(drawn.ends_with("\x1b[3;11H\x1b[?25h"), "cursor where the pane has it: {drawn:?}");
        // Nothing changed: nothing but the cursor is drawn again.
        assert_eq!(String::from_utf8(big.draw(false)).unwrap(), "\x1b[3;11H\x1b[?25h");
        assert_eq!(big.apply(&frame(12, 3, Body::Output(b"!".to_vec()))), None);
        let drawn = String::from_utf8(big.draw(false)).unwrap();
        assert!(drawn.starts_with("\x1b[3;1H") && drawn.contains("line three!"), "one row: {drawn:?}");
        assert_eq!(big.apply(&frame(12, 3, Body::Ended("bye".into()))), Some("bye".into()));
    }
}
