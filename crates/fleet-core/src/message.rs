//! The text of an agent-send: validation and the preamble.
//!
//! The text is data and must never be able to act as terminal input beyond
//! plain typing. tmux's `paste-buffer -p` wraps it in bracketed paste
//! (`ESC[200~ ... ESC[201~`); a text holding `ESC[201~` could end the paste
//! early and have the rest run as keystrokes. We **refuse** (not strip) every
//! text holding an escape or other control character, so the operator sees
//! exactly what was refused and nothing is silently altered. Allowed: printable
//! Unicode, tab and newline (`\r\n` is read as `\n`).

/// The largest message accepted, in bytes of UTF-8 (after the preamble).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is {len} bytes; the limit is {max} bytes (send a file path instead, or split it)")]
    TooLong { len: usize, max: usize },
    #[error(
        "the message holds the control character {name} at byte {offset}; terminal control sequences \
         could break out of bracketed paste, so they are refused (strip them, e.g. with `sed 's/\\x1b\\[[0-9;]*[A-Za-z]//g'`)"
    )]
    Control { name: String, offset: usize },
}

/// Check a message and normalise its line ends. Returns the text to paste.
pub fn prepare_text(text: &str) -> Result<String, TextError> {
    let text = text.replace("\r\n", "\n");
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(TextError::TooLong { len: text.len(), max: MAX_MESSAGE_BYTES });
    }
    if let Some((offset, c)) = text.char_indices().find(|(_, c)| is_refused(*c)) {
        let name = match c {
            '\u{1b}' => "ESC (0x1b)".to_string(),
            '\r' => "CR (0x0d) not followed by LF".to_string(),
            c => format!("U+{:04X}", c as u32),
        };
        return Err(TextError::Control { name, offset });
    }
    Ok(text)
}

/// C0 controls other than tab and newline, DEL, and the C1 controls (which
/// some terminals read as 8-bit escape sequences: U+009B is CSI).
fn is_refused(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// The line that tells the receiver who wrote: `[src_host:src -> dst_host:dst] `.
/// The receiver replies by flipping it.
pub fn preamble(src_host: &str, src: &str, dst_host: &str, dst: &str) -> String {
    format!("[{src_host}:{src} -> {dst_host}:{dst}] ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_and_crlf_is_normalised() {
        assert_eq!(prepare_text("hello\r\nworld\t!").unwrap(), "hello\nworld\t!");
        assert_eq!(prepare_text("ünïcödé ✓").unwrap(), "ünïcödé ✓");
    }

    #[test]
    fn paste_end_and_other_escapes_are_refused() {
        let e = prepare_text("hi\x1b[201~; rm -rf ~\n").unwrap_err();
        assert_eq!(e, TextError::Control { name: "ESC (0x1b)".into(), offset: 2 });
        assert!(e.to_string().contains("bracketed paste"));
        assert!(matches!(prepare_text("a\u{9b}201~"), Err(TextError::Control { .. })));
        assert!(matches!(prepare_text("a\u{7f}"), Err(TextError::Control { .. })));
        assert!(matches!(prepare_text("a\u{3}"), Err(TextError::Control { .. })));
        assert!(matches!(prepare_text("a\rb"), Err(TextError::Control { .. })));
    }

    #[test]
    fn size_limit_and_empty() {
        assert!(prepare_text(&"x".repeat(MAX_MESSAGE_BYTES)).is_ok());
        let e = prepare_text(&"x".repeat(MAX_MESSAGE_BYTES + 1)).unwrap_err();
        assert_eq!(e, TextError::TooLong { len: MAX_MESSAGE_BYTES + 1, max: MAX_MESSAGE_BYTES });
        assert_eq!(prepare_text(" \n "), Err(TextError::Empty));
    }

    #[test]
    fn preamble_shape() {
        assert_eq!(
            preamble("w-jarvis", "orchestrator", "dragon-lin", "coder0-0"),
            "[w-jarvis:orchestrator -> dragon-lin:coder0-0] "
        );
    }
}
