//! The local plane: one host's tmux fleet, without any network.
//!
//! - [`tmux`]: running tmux on one socket, exact targets, error kinds.
//! - [`probe`]: the `fleet ps --local` rows (tmux + systemd + heartbeats), at a
//!   constant number of processes whatever the number of agents.
//! - [`systemd`]: `mosaic-agent@<name>.service` states; `n/a` without user systemd.
//! - [`run`]: a helper program (tmux, systemctl) run within a time limit, its
//!   process group killed past it.
//! - [`control`]: a persistent control-mode client (commands in ~0.1 ms).
//! - [`send`]: paste a message into a pane and verify the agent took it.
//! - [`lifecycle`]: start and stop roster agents' sessions.
//! - [`roster_file`]: the roster rewritten atomically under a lock; an agent's
//!   env file and unit enablement, for `fleet add` and `fleet remove`.
//! - [`hbwriter`]: protocol-v1 heartbeat writing, for launchers and the stub agent.
//! - [`tail`]: the last lines of a pane, for `fleet tail`.
//! - [`notify`]: a control-mode client's output read as events (replies, pane
//!   output, pauses), for the node's pane streams (`fleet watch`, `attach`).
//!
//! Everything here is synchronous (a probe is a few short-lived processes);
//! the node calls it from blocking tasks.

pub mod control;
pub mod hbwriter;
pub mod lifecycle;
pub mod notify;
pub mod probe;
pub mod roster_file;
pub mod run;
pub mod screen;
pub mod send;
pub mod systemd;
pub mod tail;
pub mod tmux;

#[cfg(test)]
mod testutil;
