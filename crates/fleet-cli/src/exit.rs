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

impl fmt::Debug for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.code, self.error)
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
