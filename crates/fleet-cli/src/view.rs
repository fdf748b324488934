//! `fleet watch` (read-only, viewer role) and `fleet attach` (typing,
//! operator role): an agent's pane, on any host, in this terminal.
//!
//! Both draw the node's frames with [`crate::term::Renderer`] in the
//! alternate screen, redraw on the terminal's resize, and put the terminal
//! back however they end. `watch` never sends a byte: keystrokes other than
//! `q` and Ctrl-C are dropped here. `attach` sends keystrokes as they come
//! and a keepalive every second (the node ends an attachment that goes quiet
//! for 3 s), and leaves on its detach key.

use crate::exit::{self, CliResult};
use crate::node;
use crate::term::{self, RawTerminal, Renderer};
use anyhow::anyhow;
use fleet_core::address::AgentAddr;
use fleet_proto::v1::{self, attach_input::Input};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The agent: AGENT (this host) or AGENT@HOST.
    pub target: String,
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The agent: AGENT (this host) or AGENT@HOST.
    pub target: String,
    /// The key that detaches: `ctrl-X` for a letter X, or `ctrl-]`,
    /// `ctrl-\`, `ctrl-^`, `ctrl-_`.
    #[arg(long, value_name = "KEY", default_value = "ctrl-]", value_parser = parse_detach_key)]
    pub detach_key: u8,
    /// Size the agent's window to this terminal (and follow its resizes); it
    /// is put back when you detach. Without it the window keeps its size.
    #[arg(long)]
    pub resize: bool,
}

/// `ctrl-]` -> 0x1d.
pub fn parse_detach_key(s: &str) -> Result<u8, String> {
    let key = s.to_ascii_lowercase();
    let c = key.strip_prefix("ctrl-").or_else(|| key.strip_prefix("c-")).and_then(|k| {
        let mut chars = k.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    });
    match c {
        Some(c @ 'a'..='z') => Ok(c as u8 - b'a' + 1),
        Some(c @ ('\\' | ']' | '^' | '_')) => Ok(c as u8 - b'@'),
        _ => Err(format!(
            "{s:?} is not a detach key: use ctrl-LETTER or one of ctrl-], ctrl-\\, ctrl-^, ctrl-_ (ctrl-[ is Esc)"
        )),
    }
}

fn key_name(k: u8) -> String {
    format!("ctrl-{}", char::from(k + b'@').to_ascii_lowercase())
}

fn address(target: &str) -> CliResult<AgentAddr> {
    target.parse().map_err(exit::usage)
}

fn need_terminal(verb: &str, instead: &str) -> CliResult<()> {
    if term::is_terminal() {
        Ok(())
    } else {
        Err(exit::usage(anyhow!("fleet {verb} needs a terminal (stdin is not one); {instead}")))
    }
}

/// What the user types, read on a thread of its own (a blocking read).
fn keystrokes() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

fn write_out(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// How a pane view ended.
enum End {
    /// The user left (`q`, Ctrl-C, the detach key).
    Left,
    /// The node ended the stream: why.
    Ended(String),
    /// The stream broke.
    Broke(tonic::Status),
}

/// Draw `frames` until the stream ends or `keys` says to leave (`Some(true)`
/// from `on_key`).
async fn show(
    mut frames: tonic::Streaming<v1::PaneFrame>,
    status: String,
    input_modes: bool,
    mut on_key: impl FnMut(Vec<u8>) -> bool,
    mut on_resize: impl FnMut((u16, u16)),
) -> End {
    let mut keys = keystrokes();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut r = Renderer::new(term::size(), status);
    loop {
        tokio::select! {
            frame = frames.message() => match frame {
                Ok(Some(f)) => {
                    if let Some(why) = r.apply(&f) {
                        return End::Ended(why);
                    }
                    write_out(&r.draw(input_modes));
                }
                Ok(None) => return End::Ended("the node closed the stream".into()),
                Err(s) => return End::Broke(s),
            },
            k = keys.recv() => match k {
                Some(k) => if on_key(k) { return End::Left },
                None => return End::Left,
            },
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                let size = term::size();
                r.resize(size);
                on_resize(size);
                write_out(&r.draw(input_modes));
            }
        }
    }
}

fn finish(end: End, what: &str) -> CliResult {
    match end {
        End::Left => Ok(()),
        End::Ended(why) => {
            eprintln!("fleet {what}: {why}");
            Ok(())
        }
        End::Broke(s) => Err(node::status(s)),
    }
}

pub fn watch(args: WatchArgs) -> CliResult {
    let addr = address(&args.target)?;
    need_terminal("watch", "use `fleet tail --follow` to follow a pane's output as text")?;
    let req = v1::WatchPaneRequest {
        tenant_id: String::new(),
        host: addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.agent.to_string(),
        lines: 0,
    };
    let rt = node::runtime()?;
    rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let frames = client.watch_pane(req).await.map_err(node::status)?.into_inner();
        let status = format!(" watching {} (read-only): q or ctrl-c leaves", args.target);
        let end = {
            let _raw = RawTerminal::enter().map_err(|e| exit::failed(anyhow!("cannot set up the terminal: {e}")))?;
            // Only `q` and Ctrl-C mean anything; nothing is ever sent.
            show(frames, status, false, |k| k.iter().any(|&b| b == b'q' || b == 0x03), |_| {}).await
        };
        finish(end, "watch")
    })
}

pub fn attach(args: AttachArgs) -> CliResult {
    let addr = address(&args.target)?;
    need_terminal("attach", "`fleet send` types a message without a terminal")?;
    let (width, height) = term::size();
    let start = v1::AttachStart {
        tenant_id: String::new(),
        host: addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.agent.to_string(),
        resize: args.resize,
        size: Some(v1::PaneSize { width: width.into(), height: height.into() }),
    };
    let rt = node::runtime()?;
    rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let (tx, rx) = mpsc::channel::<v1::AttachInput>(64);
        tx.send(v1::AttachInput { input: Some(Input::Start(start)) }).await.expect("open channel");
        let frames = client
            .attach_pane(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(node::status)?
            .into_inner();
        let keepalive = {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if tx.send(v1::AttachInput { input: Some(Input::Keepalive(true)) }).await.is_err() {
                        return;
                    }
                }
            })
        };
        let detach = args.detach_key;
        let status = format!(" attached to {}: {} detaches", args.target, key_name(detach));
        let end = {
            let _raw = RawTerminal::enter().map_err(|e| exit::failed(anyhow!("cannot set up the terminal: {e}")))?;
            let keys_tx = tx.clone();
            let on_key = move |k: Vec<u8>| {
                let (typed, leave) = match k.iter().position(|&b| b == detach) {
                    Some(i) => (k[..i].to_vec(), true),
                    None => (k, false),
                };
                if !typed.is_empty() {
                    let _ = keys_tx.try_send(v1::AttachInput { input: Some(Input::Keys(typed)) });
                }
                leave
            };
            let resize_tx = tx.clone();
            let on_resize = move |(w, h): (u16, u16)| {
                if args.resize {
                    let size = v1::PaneSize { width: w.into(), height: h.into() };
                    let _ = resize_tx.try_send(v1::AttachInput { input: Some(Input::Resize(size)) });
                }
            };
            show(frames, status, true, on_key, on_resize).await
        };
        keepalive.abort();
        drop(tx);
        finish(end, "attach")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_control_characters() {
        assert_eq!(parse_detach_key("ctrl-]"), Ok(0x1d));
        assert_eq!(parse_detach_key("C-a"), Ok(0x01));
        assert_eq!(parse_detach_key("ctrl-Q"), Ok(0x11));
        assert_eq!(parse_detach_key("ctrl-\\"), Ok(0x1c));
        assert_eq!(parse_detach_key("ctrl-_"), Ok(0x1f));
        assert!(parse_detach_key("ctrl-[").unwrap_err().contains("Esc"));
        assert!(parse_detach_key("q").is_err());
        assert!(parse_detach_key("ctrl-ab").is_err());
        assert_eq!(key_name(0x1d), "ctrl-]");
        assert_eq!(key_name(0x01), "ctrl-a");
    }
}
