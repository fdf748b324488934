//! The clean environment every process a test starts runs with: nothing
//! inherited but PATH; HOME, TMUX_TMPDIR and XDG_RUNTIME_DIR inside the test's
//! own temp dir (so every tmux socket, the default server's included, is the
//! test's own, and no user systemd is found). Shared by the harnesses.
//!
//! No `LANG` or `LC_*`: the C locale, as a systemd unit runs the node. (tmux
//! 3.3a in a C locale rewrites a tab in `-F` output to `_` unless told `-u`;
//! a UTF-8 locale here once hid that.) A test that wants a UTF-8 locale sets it.

use std::path::Path;
use std::process::Command;

pub fn clean_env<'a>(cmd: &'a mut Command, root: &Path, heartbeat_interval: &str) -> &'a mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("USER", "tester")
        .env("TERM", "xterm-256color")
        .env("TMUX_TMPDIR", root.join("tmux"))
        .env("XDG_RUNTIME_DIR", root.join("xdg"))
        .env("MOSAIC_HEARTBEAT_INTERVAL", heartbeat_interval)
}
