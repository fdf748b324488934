//! What a tmux control-mode client attached to an agent's session prints,
//! read as events: command replies, the pane's output, and the notifications
//! a pane stream acts on.
//!
//! A reply is the lines between `%begin T N F` and the `%end T N F` (or
//! `%error T N F`) with the same numbers, so a captured screen line that
//! happens to start with `%end` does not end it. Outside a reply, `%output
//! %P DATA` and `%extended-output %P AGE ... : DATA` carry what pane `%P`
//! wrote, with bytes below 0x20 and `\` written as octal escapes (`\015`);
//! other bytes, UTF-8 or not, come as they are.

/// One event of the client's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A command's reply: its lines, or what tmux said when it failed.
    Reply(Result<Vec<Vec<u8>>, String>),
    /// Bytes pane `pane` (`%N`) wrote.
    Output { pane: String, data: Vec<u8> },
    /// tmux stopped sending pane `pane`'s output (the client fell behind
    /// `pause-after`); `refresh-client -A PANE:continue` resumes it.
    Pause { pane: String },
    /// A window's layout changed: a pane may have a new size.
    Layout,
    /// The client was detached (the session ended, or it was told to).
    Exit(String),
}

/// Reads lines (without their newline) into [`Note`]s.
#[derive(Default)]
pub struct Reader {
    /// The `T N F` of the reply being read, and its lines so far.
    open: Option<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl Reader {
    /// One line in, at most one event out.
    pub fn feed(&mut self, line: &[u8]) -> Option<Note> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some((tag, lines)) = &mut self.open {
            let end = line.strip_prefix(b"%end ").map(|t| (t, true));
            let end = end.or_else(|| line.strip_prefix(b"%error ").map(|t| (t, false)));
            return match end {
                Some((t, ok)) if t == tag.as_slice() => {
                    let lines = std::mem::take(lines);
                    self.open = None;
                    Some(Note::Reply(if ok { Ok(lines) } else { Err(text(&lines)) }))
                }
                _ => {
                    lines.push(line.to_vec());
                    None
                }
            };
        }
        if let Some(tag) = line.strip_prefix(b"%begin ") {
            self.open = Some((tag.to_vec(), Vec::new()));
            return None;
        }
        if let Some(rest) = line.strip_prefix(b"%output ") {
            let (pane, data) = split_word(rest);
            return Some(Note::Output { pane, data: unescape(data) });
        }
        if let Some(rest) = line.strip_prefix(b"%extended-output ") {
            // `%extended-output %P AGE [RESERVED...] : DATA`
            let (pane, rest) = split_word(rest);
            let at = rest.windows(3).position(|w| w == b" : ").map(|i| i + 3)?;
            return Some(Note::Output { pane, data: unescape(&rest[at..]) });
        }
        if let Some(rest) = line.strip_prefix(b"%pause ") {
            return Some(Note::Pause { pane: split_word(rest).0 });
        }
        if line.starts_with(b"%layout-change ") {
            return Some(Note::Layout);
        }
        if line == b"%exit" || line.starts_with(b"%exit ") {
            let why = String::from_utf8_lossy(line.strip_prefix(b"%exit").unwrap_or_default()).trim().to_string();
            return Some(Note::Exit(if why.is_empty() { "detached".into() } else { why }));
        }
        None
    }
}

fn split_word(s: &[u8]) -> (String, &[u8]) {
    let at = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    (String::from_utf8_lossy(&s[..at]).into_owned(), s.get(at + 1..).unwrap_or_default())
}

fn text(lines: &[Vec<u8>]) -> String {
    lines.iter().map(|l| String::from_utf8_lossy(l)).collect::<Vec<_>>().join("\n")
}

/// Undo tmux's octal escapes (`\ooo`, three digits); anything else is kept.
pub fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\\'
            && let Some(d) = data.get(i + 1..i + 4)
            && d.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(r: &mut Reader, lines: &[&[u8]]) -> Vec<Note> {
        lines.iter().filter_map(|l| r.feed(l)).collect()
    }

    #[test]
    fn output_is_unescaped_and_replies_end_only_at_their_own_end() {
        let mut r = Reader::default();
        let notes = feed_all(
            &mut r,
            &[
                b"%begin 1 5 1",
                b"%end 9 9 1",
                b"line \\015",
                b"%end 1 5 1",
                b"%output %3 hi\\015\\012\\134x\xc3\xa9",
                b"%extended-output %3 12 : a\\033[1m",
                b"%begin 2 6 1",
                b"can't find pane: %9",
                b"%error 2 6 1",
                b"%pause %3",
                b"%layout-change @1 b25d,80x24,0,0,1 b25d,80x24,0,0,1 *",
                b"%session-changed $1 ag",
                b"%exit",
            ],
        );
        assert_eq!(
            notes,
            vec![
                Note::Reply(Ok(vec![b"%end 9 9 1".to_vec(), b"line \\015".to_vec()])),
                Note::Output { pane: "%3".into(), data: b"hi\r\n\\x\xc3\xa9".to_vec() },
                Note::Output { pane: "%3".into(), data: b"a\x1b[1m".to_vec() },
                Note::Reply(Err("can't find pane: %9".into())),
                Note::Pause { pane: "%3".into() },
                Note::Layout,
                Note::Exit("detached".into()),
            ]
        );
        assert_eq!(r.feed(b"%exit server exited"), Some(Note::Exit("server exited".into())));
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape(b"\\0"), b"\\0");
        assert_eq!(unescape(b"\\08x"), b"\\08x");
        assert_eq!(unescape(b"\\777"), b"\\777", "above a byte");
        assert_eq!(unescape(b"\\000\\177\\377"), b"\x00\x7f\xff");
        assert_eq!(unescape(b"ab\\"), b"ab\\");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// tmux's escaping, as control.c writes it.
        fn escape(data: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            for &b in data {
                if b < b' ' || b == b'\\' {
                    out.extend(format!("\\{b:03o}").bytes());
                } else {
                    out.push(b);
                }
            }
            out
        }

        proptest! {
            #[test]
            fn what_tmux_escapes_comes_back(data in prop::collection::vec(any::<u8>(), 0..64)) {
                prop_assert_eq!(unescape(&escape(&data)), data);
            }

            #[test]
            fn any_lines_are_read_without_panic(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..16)) {
                let mut r = Reader::default();
                for l in &lines {
                    let _ = r.feed(l);
                }
            }
        }
    }
}
