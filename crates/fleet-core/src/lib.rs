//! The pure domain of fleet mesh. No tokio, no network, no I/O beyond reading
//! text it is given: the decisions live here and are tested without tmux.
//! The one exception is [`file`], the bounded reader every crate reads files
//! with (see there why it lives here).
//!
//! - [`names`]: agent names and DNS labels (tenant ids, host names).
//! - [`address`]: `agent@host` addresses.
//! - [`yaml`]: a YAML tree with positions, for error messages with line and column.
//! - [`roster`]: `roster.yaml`, parsed and validated, with the fleet invariants.
//! - [`roster_edit`]: the fleet's guards (one orchestrator, an enhancer) and roster text edits.
//! - [`heartbeat`]: protocol v1 files, timestamps, the 3x health rule, paths.
//! - [`runtime`]: which processes a runtime's pane may show (drift).
//! - [`record`]: the `fleet ps` rows for agents and hosts.
//! - [`event`]: heartbeat-stream events derived from successive host views.
//! - [`message`]: agent-send text validation and the preamble.
//! - [`file`]: read a regular file of at most N bytes, never a device or FIFO.
//! - [`comms`]: the "Fleet Comms" block agents read to reach their peers.
//! - [`check`]: `fleet verify`'s problems of a host, each with its next step.
//! - [`verify`]: the accepted / draft / unverifiable decision from pane captures.

pub mod activity;
pub mod address;
pub mod check;
pub mod comms;
pub mod event;
pub mod file;
pub mod heartbeat;
pub mod message;
pub mod names;
pub mod record;
pub mod roster;
pub mod roster_edit;
pub mod runtime;
pub mod verify;
pub mod yaml;
