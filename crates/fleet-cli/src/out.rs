//! Writing to stdout when the reader may stop reading. `print!` panics when
//! its pipe's reader has gone (`fleet ps | head -1`, `fleet heartbeats | grep
//! -m1 ...`), and a panic is exit 101 and a message about a bug that is not
//! one. Listings and streams write through here instead: a reader that has
//! seen enough ends the command quietly, with exit 0 (`main`).

use crate::exit::{self, CliError, CliResult, Code};
use std::fmt;
use std::io::Write;

/// The reader of stdout went away (`EPIPE`).
#[derive(Debug)]
pub struct Closed;

// Never shown: `main` ends quietly on `Closed` (so a mutant of this text is equivalent).
impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for Closed {}

/// `text` to stdout, as it is.
pub fn print(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(io)
}

/// `text` and a newline to stdout.
pub fn line(text: impl fmt::Display) -> CliResult {
    print(&format!("{text}\n"))
}

/// An error writing stdout: the reader's going is [`Closed`], anything else
/// (a full disk) fails the command.
pub fn io(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe { exit::failed(Closed) } else { exit::failed(e) }
}

/// The same for JSON written straight into stdout.
pub fn json(e: serde_json::Error) -> CliError {
    if e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe) { exit::failed(Closed) } else { exit::failed(e) }
}

/// Whether `e` is the reader's going, not a failure.
pub fn closed(e: &CliError) -> bool {
    e.error.is::<Closed>()
}

/// The end of a command whose exit status is a verdict (`verify`, `doctor`,
/// `roster check`): `failed`, the exit code of a failed verdict, stands when the
/// reader left early (`fleet verify | head -3` under `pipefail` must not pass a
/// failed check), and another write error is said.
pub fn verdict(written: CliResult, failed: Option<Code>) -> CliResult {
    match (written, failed) {
        (Err(e), _) if !closed(&e) => Err(e),
        (_, Some(code)) => Err(CliError::quiet(code)),
        (written, None) => written,
    }
}
