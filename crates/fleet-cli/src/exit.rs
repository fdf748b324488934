//! Exit codes (DESIGN.md) and the error type that carries one.

use std::fmt;

/// 0 success; 1 the operation failed; 2 usage or input error; 3 could not
/// reach the node or a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Failed = 1,
    Usage = 2,
    Unreachable = 3,
}

/// An error on its way to `main`, with the exit code it maps to.
pub struct CliError {
    pub code: Code,
    pub error: anyhow::Error,
    /// Already reported to the user (e.g. `roster check` printed its problems).
    pub quiet: bool,
}

impl CliError {
    pub fn new(code: Code, error: impl Into<anyhow::Error>) -> Self {
        CliError { code, error: error.into(), quiet: false }
    }
    pub fn quiet(code: Code) -> Self {
        CliError { code, error: anyhow::anyhow!("reported"), quiet: true }
    }
}

impl CliError {
    /// The message and its causes, each said once: an error that already
    /// quotes its source (`cannot read X: No such file`) does not get the
    /// source appended again, as anyhow's `{:#}` would.
    pub fn message(&self) -> String {
        let mut out = String::new();
        for cause in self.error.chain() {
            let text = cause.to_string();
            if out.contains(&text) {
                continue;
            }
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        out
    }
}

impl fmt::Debug for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message())
    }
}

/// `Err(usage(..))`: bad input (exit 2).
pub fn usage(e: impl Into<anyhow::Error>) -> CliError {
    CliError::new(Code::Usage, e)
}

/// `Err(failed(..))`: the operation failed (exit 1).
pub fn failed(e: impl Into<anyhow::Error>) -> CliError {
    CliError::new(Code::Failed, e)
}

/// `Err(unreachable(..))`: no node or peer answered (exit 3).
pub fn unreachable(e: impl Into<anyhow::Error>) -> CliError {
    CliError::new(Code::Unreachable, e)
}

pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Like a thiserror variant `#[error("cannot read x.yaml: {source}")]`.
    #[derive(Debug)]
    struct Quoting {
        source: std::io::Error,
    }
    impl fmt::Display for Quoting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cannot read x.yaml: {}", self.source)
        }
    }
    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated_and_new_context_is_kept() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = failed(anyhow::Error::new(Quoting { source: io() }).context("starting the node"));
        assert_eq!(e.message(), "starting the node: cannot read x.yaml: no such file");
        let plain = failed(anyhow::Error::new(io()).context("reading the roster"));
        assert_eq!(plain.message(), "reading the roster: no such file");
    }
}
