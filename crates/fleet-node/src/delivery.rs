//! Putting messages into panes on this host, for many callers at once.
//!
//! - One turn per agent: sends to one agent go one at a time, each to its end
//!   (paste, pause, Enter, and the verify that follows), so two messages never
//!   merge on one input line. Sends to different agents overlap.
//! - Without verify, through one tmux control-mode client per socket, attached
//!   to the roster's holder session (about 0.1 ms a command instead of a
//!   spawned `tmux`). The client is locked for one command at a time, not for
//!   a whole send: another agent's send goes on during this one's pause.
//! - With verify, without a holder session, or when the client cannot attach
//!   (or has died before the send pasted), by spawning tmux
//!   ([`fleet_tmux::send::send`]).

use fleet_core::roster::TmuxSocket;
use fleet_tmux::control::Control;
use fleet_tmux::send::{Delivery, SendError, SendOptions};
use fleet_tmux::tmux::Tmux;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// A lock that a panicking holder poisoned still guards sound data here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Turn = Arc<Mutex<()>>;

#[derive(Default)]
pub struct Deliverer {
    /// Control-mode clients by socket.
    controls: Mutex<HashMap<TmuxSocket, Arc<Mutex<Control>>>>,
    /// Turns by socket and agent; entries nobody holds are dropped as new ones come.
    turns: Mutex<HashMap<(TmuxSocket, String), Turn>>,
}

impl Deliverer {
    /// Deliver `text` (preamble included) to `agent` on `socket`. Blocking:
    /// waits for the agent's turn, then for the enter pause (and verify).
    pub fn send(
        &self,
        socket: &TmuxSocket,
        holder: Option<&str>,
        agent: &str,
        text: &str,
        opts: &SendOptions,
        scratch: &Path,
    ) -> Result<Delivery, SendError> {
        let turn = self.turn(socket, agent);
        let _turn = lock(&turn);
        let tmux = Tmux::new(socket.clone());
        if let (false, Some(holder)) = (opts.verify, holder)
            && let Some(ctl) = self.control(socket, &tmux, holder)
        {
            let _ = std::fs::create_dir_all(scratch);
            let mut pasted = false;
            let result = fleet_tmux::send::send_via_control(
                |words| {
                    pasted |= words.first() == Some(&"paste-buffer");
                    lock(&ctl).run(words)
                },
                agent,
                text,
                opts,
                scratch,
            );
            match result {
                // The client died (tmux server restarted, holder killed) before
                // this send pasted: nothing reached the pane, spawn tmux.
                Err(SendError::Tmux(_)) if !pasted && !lock(&ctl).alive() => self.forget(socket, &ctl),
                // From the paste on, the text may be on the input line: never a second paste.
                other => {
                    if other.is_err() && !lock(&ctl).alive() {
                        self.forget(socket, &ctl);
                    }
                    return other;
                }
            }
        }
        fleet_tmux::send::send(&tmux, agent, text, opts)
    }

    /// Deliver in phases ([`fleet_tmux::send::send_phased`]), in the agent's
    /// turn, without verify: through the socket's control-mode client when
    /// there is one, else by spawning tmux for each step. For the durable
    /// queue, which records each phase before going on.
    #[allow(clippy::too_many_arguments)]
    pub fn send_phased(
        &self,
        socket: &TmuxSocket,
        holder: Option<&str>,
        agent: &str,
        text: &str,
        opts: &SendOptions,
        scratch: &Path,
        begin: impl FnOnce(&fleet_tmux::probe::Pane) -> fleet_tmux::send::Begin,
        phase: impl FnMut(fleet_tmux::send::Phase<'_>) -> Result<(), SendError>,
    ) -> Result<Delivery, SendError> {
        let turn = self.turn(socket, agent);
        let _turn = lock(&turn);
        let tmux = Tmux::new(socket.clone());
        let _ = std::fs::create_dir_all(scratch);
        if let Some(holder) = holder
            && let Some(ctl) = self.control(socket, &tmux, holder)
        {
            let result = fleet_tmux::send::send_phased(|w| lock(&ctl).run(w), agent, text, opts, scratch, begin, phase);
            if result.is_err() && !lock(&ctl).alive() {
                self.forget(socket, &ctl);
            }
            return result;
        }
        let run = |words: &[&str]| tmux.run(words, None).map(|out| out.lines().map(str::to_string).collect());
        fleet_tmux::send::send_phased(run, agent, text, opts, scratch, begin, phase)
    }

    /// Run `f` with the socket's control-mode client (one command at a time
    /// through `run`); `None` when there is none (no holder session, or it
    /// cannot attach): the caller spawns tmux instead.
    pub fn with_control<T>(
        &self,
        socket: &TmuxSocket,
        holder: Option<&str>,
        f: impl FnOnce(&mut dyn FnMut(&[&str]) -> Result<Vec<String>, fleet_tmux::tmux::TmuxError>) -> T,
    ) -> Option<T> {
        let ctl = self.control(socket, &Tmux::new(socket.clone()), holder?)?;
        let out = f(&mut |words| lock(&ctl).run(words));
        if !lock(&ctl).alive() {
            self.forget(socket, &ctl);
        }
        Some(out)
    }

    fn turn(&self, socket: &TmuxSocket, agent: &str) -> Turn {
        let mut turns = lock(&self.turns);
        turns.retain(|_, t| Arc::strong_count(t) > 1);
        turns.entry((socket.clone(), agent.to_string())).or_default().clone()
    }

    /// The socket's client, attached now if there is none or it has exited.
    /// A client busy with a command is waited for without holding the map, so
    /// a hung tmux server holds up sends on its own socket only. Attaching
    /// happens under the map's lock: two first sends attach once.
    fn control(&self, socket: &TmuxSocket, tmux: &Tmux, holder: &str) -> Option<Arc<Mutex<Control>>> {
        let current = lock(&self.controls).get(socket).cloned();
        if let Some(c) = current {
            if lock(&c).alive() {
                return Some(c);
            }
            self.forget(socket, &c);
        }
        let mut controls = lock(&self.controls);
        if let Some(c) = controls.get(socket) {
            // Another send attached one meanwhile.
            return Some(c.clone());
        }
        let c = Arc::new(Mutex::new(Control::attach(tmux, holder).ok()?));
        controls.insert(socket.clone(), c.clone());
        Some(c)
    }

    /// Drop `ctl` from the map, unless another send has replaced it already.
    fn forget(&self, socket: &TmuxSocket, ctl: &Arc<Mutex<Control>>) {
        let mut controls = lock(&self.controls);
        if controls.get(socket).is_some_and(|c| Arc::ptr_eq(c, ctl)) {
            controls.remove(socket);
        }
    }
}
