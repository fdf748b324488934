//! Running tmux: one socket, exact targets, errors that say what failed.

use fleet_core::roster::TmuxSocket;
use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("could not run {bin}: {source} (is tmux installed and on PATH?)")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tmux {args} on {socket} failed: {stderr}")]
    Failed { args: String, socket: String, stderr: String },
}

impl TmuxError {
    /// The server is not running: not an error for a probe (nothing runs).
    pub fn is_no_server(&self) -> bool {
        match self {
            TmuxError::Failed { stderr, .. } => {
                stderr.contains("no server running")
                    || (stderr.contains("error connecting to") && stderr.contains("No such file or directory"))
                    || stderr.contains("Connection refused")
            }
            TmuxError::Spawn { .. } => false,
        }
    }

    /// The target session, window or pane does not exist.
    pub fn is_no_target(&self) -> bool {
        match self {
            TmuxError::Failed { stderr, .. } => {
                stderr.contains("can't find session")
                    || stderr.contains("can't find window")
                    || stderr.contains("can't find pane")
                    || self.is_no_server()
            }
            TmuxError::Spawn { .. } => false,
        }
    }
}

/// A handle on one tmux server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tmux {
    pub socket: TmuxSocket,
    pub bin: PathBuf,
}

impl Tmux {
    pub fn new(socket: TmuxSocket) -> Self {
        Tmux { socket, bin: PathBuf::from("tmux") }
    }

    /// A `tmux` command with the socket arguments set. `$TMUX` is removed: run
    /// from inside a tmux pane, tmux without `-L`/`-S` would otherwise talk to
    /// the server of that pane instead of the default server.
    ///
    /// `-u` always: a client whose locale is not UTF-8 (`LANG` unset or `C`, as
    /// under a systemd unit) has the server replace every non-printable byte
    /// of its output with `_`, the tabs of our `-F` formats included (tmux
    /// 3.3a), and every probe would then parse to nothing.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("TMUX");
        cmd.arg("-u");
        match &self.socket {
            TmuxSocket::Default => {}
            TmuxSocket::Name(n) => {
                cmd.arg("-L").arg(n);
            }
            TmuxSocket::Path(p) => {
                cmd.arg("-S").arg(p);
            }
        }
        cmd
    }

    /// Run tmux with `args`, optionally feeding `stdin`; return stdout.
    pub fn run<I, S>(&self, args: I, stdin: Option<&[u8]>) -> Result<String, TmuxError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let mut cmd = self.command();
        cmd.args(&args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| TmuxError::Spawn { bin: self.bin.display().to_string(), source };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            // A write error shows up as tmux's own failure below.
            let _ = pipe.write_all(input);
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(TmuxError::Failed {
                args: args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                socket: self.socket.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// The exact target of a session's panes: `=name:` (a bare `=name` is
/// resolved as a window target and can prefix-match another session).
/// Where tmux puts the socket of `-L NAME`: `$TMUX_TMPDIR` (else `/tmp`),
/// `tmux-UID/NAME`. tmux leaves the file behind when its server exits.
pub fn socket_path_of_name(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("TMUX_TMPDIR").filter(|d| !d.is_empty()).unwrap_or_else(|| "/tmp".into());
    std::path::PathBuf::from(dir).join(format!("tmux-{}", rustix::process::getuid().as_raw())).join(name)
}

pub fn exact_session(name: &str) -> String {
    format!("={name}:")
}

/// A value made safe as one tmux argument. tmux reads an argument that ends
/// in `;` as the end of a command (the `;` is dropped and the next argument
/// starts a new command), and one that ends in `\;` as ending in a literal
/// `;`. So a trailing `;` is written `\;`; nothing else needs escaping, since
/// arguments never pass through a shell or tmux's own parser.
pub fn escape_arg(value: &str) -> Cow<'_, str> {
    match value.strip_suffix(';') {
        Some(head) => Cow::Owned(format!("{head}\\;")),
        None => Cow::Borrowed(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_semicolon_is_escaped() {
        assert_eq!(escape_arg("sleep 5"), "sleep 5");
        assert_eq!(escape_arg("a;b"), "a;b");
        assert_eq!(escape_arg("sleep 5;"), "sleep 5\\;");
        assert_eq!(escape_arg(";"), "\\;");
        assert_eq!(escape_arg("a\\;"), "a\\\\;", "tmux drops one backslash: the value stays a\\;");
        assert_eq!(escape_arg(""), "");
    }

    /// In a C locale tmux rewrites a tab in `-F` output to `_` unless the
    /// client says `-u`; the pane probe splits on tabs.
    #[test]
    fn format_output_keeps_its_tabs_in_a_c_locale() {
        let server = crate::testutil::TestServer::new();
        server.tmux.run(["-f", "/dev/null", "new-session", "-d", "-s", "t", "sleep 30"], None).unwrap();
        let mut cmd = server.tmux.command();
        cmd.env_remove("LANG").env_remove("LC_ALL").env_remove("LC_CTYPE");
        let out = cmd.args(["list-panes", "-a", "-F", "#{pane_id}\t#{session_name}"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8(out.stdout).unwrap();
        assert!(line.starts_with('%') && line.trim_end().ends_with("\tt"), "got {line:?}");
    }

    #[test]
    fn tmux_never_inherits_the_callers_tmux_variable() {
        for socket in [TmuxSocket::Default, TmuxSocket::Name("x".into()), TmuxSocket::Path("/tmp/x".into())] {
            let cmd = Tmux::new(socket).command();
            let tmux_var = cmd.get_envs().find(|(k, _)| *k == "TMUX");
            assert_eq!(tmux_var, Some((OsStr::new("TMUX"), None)), "TMUX is removed");
        }
    }

    /// Values ending in `;` reach the program intact (tmux 3.3a).
    #[test]
    fn escaped_values_survive_a_real_tmux() {
        let server = crate::testutil::TestServer::new();
        let out = server.dir.path().join("out");
        let script = format!("printf '%s|%s' \"$V\" \"$1\" > {}; sleep 30", out.display());
        let args = ["-f", "/dev/null", "new-session", "-d", "-s", "t", "-e", &escape_arg("V=x;"), "--", "sh", "-c"];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend([script, "sh".into(), escape_arg("arg;").into_owned()]);
        server.tmux.run(&args, None).unwrap();
        server.wait_for("the program's output", || std::fs::read_to_string(&out).is_ok_and(|s| !s.is_empty()));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "x;|arg;");
    }
}
