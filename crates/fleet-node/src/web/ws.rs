//! A WebSocket per pane (docs/protocol.md "Pane WebSockets"):
//! `GET /api/v1/agents/{host}/{name}/watch` (viewer) and `.../attach` (operator).
//!
//! The socket is fed by the same node-side pane streams as `fleet watch` and `fleet attach`:
//! the node's own `WatchPane` / `AttachPane`, called in this process as the browser's
//! principal, so a pane on another host is forwarded by the mesh, and an attachment is
//! authorized and audited (start, end, bytes typed) like the CLI's.
//!
//! The framing (RFC 6455, server side) is our own, about 150 lines: hyper does the HTTP/1.1
//! upgrade, ring's SHA-1 the handshake's accept key, so the WebSocket costs no new crate.
//! It speaks only what a browser needs: text and binary messages (fragmented or not), ping,
//! pong and close; no extensions, no subprotocols.
//!
//! Server to browser: a JSON text frame `{"type":"screen", width, height, ...}` first (the
//! pane's size), then the screen's bytes as a binary frame, then the pane's output as binary
//! frames. A `screen` frame again (`reason`: `lagged`, `resized`, `paused`) means: reset the
//! terminal to that size and draw what follows. `{"type":"size"}` when the size changes
//! without a redraw, `{"type":"ended","reason":...}` and a close frame at the end.
//! Browser to server (attach only): text or binary frames are keystrokes. The server pings
//! every second; the browser's pongs keep an attachment alive (they become the gRPC
//! keepalives), so a closed or silent socket ends it within [`crate::terminal::ATTACH_IDLE`].

use super::api::{Reply, call, error, status_reply, svc};
use super::{WebCaller, WebDoor};
use crate::terminal::{FrameStream, InputStream};
use bytes::Bytes;
use fleet_core::address::AgentAddr;
use fleet_proto::v1::{self, attach_input::Input, fleet_server::Fleet, pane_frame::Body};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;

/// RFC 6455's key suffix.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest message a browser may send (keystrokes: a paste at most).
const MAX_MESSAGE: usize = 64 * 1024;
/// The server pings this often.
const PING: Duration = Duration::from_secs(1);
/// A socket from which nothing (not even a pong) came for this long is closed.
const SILENT: Duration = Duration::from_secs(10);
/// A write to the browser that takes longer than this ends the socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{key}{GUID}").as_bytes());
    base64(d.as_ref())
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One server frame: FIN set, never masked.
pub fn encode(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | op);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// One frame as read.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub op: u8,
    pub payload: Vec<u8>,
}

/// Why a browser's frames were refused (the socket is then closed with 1002 or 1009).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("reading the socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("a client frame must be masked (RFC 6455 5.1)")]
    Unmasked,
    #[error("reserved bits or an unknown opcode {0:#x}")]
    Bad(u8),
    #[error("a message over {MAX_MESSAGE} bytes")]
    TooBig,
}

/// Read one client frame (masked, as RFC 6455 requires of clients), unmasked.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, FrameError> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    let (fin, op) = (head[0] & 0x80 != 0, head[0] & 0x0f);
    if head[0] & 0x70 != 0 || !matches!(op, OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(FrameError::Bad(head[0]));
    }
    if head[1] & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let len = match head[1] & 0x7f {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    // Control frames carry at most 125 bytes and are never fragmented.
    if op >= OP_CLOSE && (len > 125 || !fin) {
        return Err(FrameError::Bad(head[0]));
    }
    if len > max as u64 {
        return Err(FrameError::TooBig);
    }
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask).await?;
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Frame { fin, op, payload })
}

/// What the reading half tells the writing half.
enum Inbound {
    /// A ping to answer with this payload.
    Ping(Vec<u8>),
    /// The browser closed (its code), or broke the protocol (1002, 1009).
    Close(u16, String),
    /// Anything arrived: the socket is alive.
    Seen,
}

/// `/api/v1/agents/{host}/{name}/watch|attach` -> (address, attach?).
pub fn route(path: &str) -> Option<(&str, &str, bool)> {
    let rest = path.strip_prefix("/api/v1/agents/")?;
    let mut parts = rest.split('/');
    let (host, name, verb) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || host.is_empty() || name.is_empty() {
        return None;
    }
    match verb {
        "watch" => Some((host, name, false)),
        "attach" => Some((host, name, true)),
        _ => None,
    }
}

fn upgrade_problem(req: &http::Request<Incoming>) -> Option<Reply> {
    let h = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Some(error(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "this is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade (docs/protocol.md)",
            None,
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        let mut r = error(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_version",
            "only WebSocket version 13 (RFC 6455) is spoken here",
            None,
        );
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return Some(r);
    }
    match h.get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()) {
        Some(k) if k.trim().len() == 24 => None,
        _ => Some(error(
            StatusCode::BAD_REQUEST,
            "websocket_key",
            "Sec-WebSocket-Key: required, 16 bytes in base64",
            None,
        )),
    }
}

/// `GET /api/v1/agents/{host}/{name}/watch|attach`: the pane stream is opened first (so a
/// refusal is an HTTP status: 403, 404, 502), then the socket is upgraded and served.
pub async fn pane(
    door: &Arc<WebDoor>,
    caller: WebCaller,
    req: http::Request<Incoming>,
    host: &str,
    name: &str,
    attach: bool,
) -> Reply {
    let verb = if attach { fleet_tls::Verb::Attach } else { fleet_tls::Verb::Watch };
    let path = req.uri().path().to_string();
    // Cookies ride along on a cross-site WebSocket too: the Origin says whose page opened it.
    if let Err(why) = door.check_origin(&req) {
        door.audit(&door.principal(&caller.label), &caller.peer, verb, &path, fleet_tls::audit::DENIED, Some(&why));
        return error(StatusCode::FORBIDDEN, "bad_origin", &why, None);
    }
    if let Some(r) = upgrade_problem(&req) {
        return r;
    }
    let addr = match format!("{name}@{host}").parse::<AgentAddr>() {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_argument", &e.to_string(), None),
    };
    let (host, agent) = (addr.host.map(|h| h.to_string()).unwrap_or_default(), addr.agent.to_string());
    let (target_host, target_agent) = (host.clone(), agent.clone());
    let mut keys = None;
    let opened = if attach {
        let (tx, rx) = mpsc::channel::<v1::AttachInput>(64);
        let start = v1::AttachInput {
            input: Some(Input::Start(v1::AttachStart {
                tenant_id: String::new(),
                host,
                agent,
                resize: false,
                size: None,
            })),
        };
        let input: InputStream =
            Box::pin(tokio_stream::once(start).chain(tokio_stream::wrappers::ReceiverStream::new(rx)).map(Ok));
        keys = Some(tx);
        door.node.attach_pane(call(&caller, input)).await
    } else {
        let r = v1::WatchPaneRequest { tenant_id: String::new(), host, agent, lines: 0 };
        Fleet::watch_pane(&svc(door), call(&caller, r)).await
    };
    let frames = match opened {
        Ok(r) => r.into_inner(),
        Err(s) => return status_reply(&s),
    };
    // The pane's host audits an attachment (as `node:<this host> for web:...` when it is
    // another host); this door audits its browser's side too when the pane is elsewhere.
    let audit = (attach && !door.node.is_self(&target_host)).then(|| {
        let a = Audit {
            door: door.clone(),
            principal: door.principal(&caller.label),
            peer: caller.peer.clone(),
            target: format!("{target_agent}@{target_host}"),
            started: Instant::now(),
        };
        a.write("started", "forwarded to the pane's host; the window keeps its size");
        a
    });
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    let accept = accept_key(key);
    let cancel = door.node.cancel.clone();
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(up) => serve(hyper_util::rt::TokioIo::new(up), frames, keys, attach, audit, cancel).await,
            Err(e) => {
                tracing::debug!(error = %e, "web socket upgrade failed");
                if let Some(a) = audit {
                    a.write("ended", &format!("the upgrade failed ({e}); 0 bytes typed"));
                }
            }
        }
    });
    let mut r = http::Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a header value"));
    r
}

/// An attachment's record in this door's audit log (principal `web:<label>@<tenant>`).
struct Audit {
    door: Arc<WebDoor>,
    principal: String,
    peer: String,
    target: String,
    started: Instant,
}

impl Audit {
    fn write(&self, outcome: &str, detail: &str) {
        self.door.audit(&self.principal, &self.peer, fleet_tls::Verb::Attach, &self.target, outcome, Some(detail));
    }
}

/// The pane frame as WebSocket messages; `size` is the last size told.
fn messages(frame: v1::PaneFrame, role: &str, size: &mut (u32, u32)) -> (Vec<Vec<u8>>, Option<String>) {
    let (w, h) = (frame.pane_width, frame.pane_height);
    let head = |kind: &str| {
        json!({"type": kind, "tenant_id": frame.tenant_id, "host": frame.host, "agent": frame.agent,
               "width": w, "height": h, "role": role})
    };
    match frame.body {
        Some(Body::Screen(s)) => {
            *size = (w, h);
            let mut v = head("screen");
            v["reason"] = json!(s.reason);
            v["cursor_x"] = json!(s.cursor_x);
            v["cursor_y"] = json!(s.cursor_y);
            let mut draw = b"\x1b[0m\x1b[H\x1b[2J".to_vec();
            draw.extend_from_slice(&s.content);
            draw.extend_from_slice(format!("\x1b[0m\x1b[{};{}H", s.cursor_y + 1, s.cursor_x + 1).as_bytes());
            (vec![encode(OP_TEXT, v.to_string().as_bytes()), encode(OP_BINARY, &draw)], None)
        }
        Some(Body::Output(data)) => {
            let mut out = Vec::with_capacity(2);
            if w > 0 && (w, h) != *size {
                *size = (w, h);
                out.push(encode(OP_TEXT, head("size").to_string().as_bytes()));
            }
            out.push(encode(OP_BINARY, &data));
            (out, None)
        }
        Some(Body::Ended(why)) => (Vec::new(), Some(why)),
        None => (Vec::new(), None),
    }
}

/// The close frame with `code` and `reason` (cut to fit a control frame).
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &p)
}

/// Serve an upgraded socket until the pane stream ends, the browser closes or goes silent,
/// or the node stops.
async fn serve<S>(
    io: S,
    mut frames: FrameStream,
    keys: Option<mpsc::Sender<v1::AttachInput>>,
    attach: bool,
    audit: Option<Audit>,
    cancel: tokio_util::sync::CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (in_tx, mut inbound) = mpsc::channel::<Inbound>(16);
    let typed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = typed.clone();
    let reader = tokio::spawn(async move {
        let mut message: Vec<u8> = Vec::new();
        loop {
            let f = match read_frame(&mut rd, MAX_MESSAGE).await {
                Ok(f) => f,
                Err(FrameError::Io(_)) => {
                    let _ = in_tx.send(Inbound::Close(1006, "the socket closed".into())).await;
                    return;
                }
                Err(e @ FrameError::TooBig) => {
                    let _ = in_tx.send(Inbound::Close(1009, e.to_string())).await;
                    return;
                }
                Err(e) => {
                    let _ = in_tx.send(Inbound::Close(1002, e.to_string())).await;
                    return;
                }
            };
            let _ = in_tx.send(Inbound::Seen).await;
            match f.op {
                OP_PING => {
                    let _ = in_tx.send(Inbound::Ping(f.payload)).await;
                    continue;
                }
                OP_PONG => {
                    if let Some(k) = &keys
                        && k.send(v1::AttachInput { input: Some(Input::Keepalive(true)) }).await.is_err()
                    {
                        return;
                    }
                    continue;
                }
                OP_CLOSE => {
                    let code = f.payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                    let _ = in_tx.send(Inbound::Close(code, "the browser closed the socket".into())).await;
                    return;
                }
                _ => {}
            }
            if message.len() + f.payload.len() > MAX_MESSAGE {
                let _ = in_tx.send(Inbound::Close(1009, FrameError::TooBig.to_string())).await;
                return;
            }
            message.extend_from_slice(&f.payload);
            if !f.fin {
                continue;
            }
            let bytes = std::mem::take(&mut message);
            counted.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            // A viewer's keystrokes go nowhere: watching never types.
            if let Some(k) = &keys
                && !bytes.is_empty()
                && k.send(v1::AttachInput { input: Some(Input::Keys(bytes)) }).await.is_err()
            {
                return;
            }
        }
    });
    let role = if attach { "operator" } else { "viewer" };
    let mut size = (0, 0);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    // Nothing goes before the first screen (its JSON frame tells the pane's size).
    let mut started = false;
    let mut seen = Instant::now();
    let (code, why) = loop {
        let out: Vec<Vec<u8>> = tokio::select! {
            () = cancel.cancelled() => break (1001, "the node is shutting down".to_string()),
            f = frames.next() => match f {
                Some(Ok(frame)) => match messages(frame, role, &mut size) {
                    (_, Some(why)) => break (1000, why),
                    (out, None) => { started = true; out }
                },
                Some(Err(s)) => break (1011, s.message().to_string()),
                None => break (1000, "the pane's stream ended".to_string()),
            },
            i = inbound.recv() => match i {
                Some(Inbound::Seen) => { seen = Instant::now(); continue }
                Some(Inbound::Ping(p)) if started => vec![encode(OP_PONG, &p)],
                Some(Inbound::Ping(_)) => continue,
                Some(Inbound::Close(code, why)) => break (if code == 1006 { 1000 } else { code }, why),
                None => break (1000, "the socket closed".to_string()),
            },
            _ = tick.tick(), if started => {
                if seen.elapsed() > SILENT {
                    break (1001, format!("nothing from the browser for {} s", SILENT.as_secs()));
                }
                vec![encode(OP_PING, b"")]
            }
        };
        let write = async {
            for m in &out {
                wr.write_all(m).await?;
            }
            wr.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            _ => break (1006, "writing to the browser failed".to_string()),
        }
    };
    // Dropping the stream and the key sender ends the node's side (an attachment is then
    // audited as ended); the browser hears why.
    drop(frames);
    reader.abort();
    if code != 1006 {
        let ended = json!({"type": "ended", "reason": why});
        let bye = async {
            wr.write_all(&encode(OP_TEXT, ended.to_string().as_bytes())).await?;
            wr.write_all(&close_frame(code, &why)).await?;
            wr.flush().await?;
            wr.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
    }
    if let Some(a) = audit {
        let typed = typed.load(std::sync::atomic::Ordering::Relaxed);
        a.write("ended", &format!("{why}; {:.1} s, {typed} bytes typed", a.started.elapsed().as_secs_f64()));
    }
    tracing::debug!(code, reason = %why, attach, "pane web socket ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_rfc_6455s_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn frames_read_and_write() {
        let long = vec![7u8; 300];
        let mut wire = masked(0x81, b"hi");
        wire.extend(masked(0x02, &long));
        wire.extend(masked(0x89, b"p"));
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r, 1024).await.unwrap(), Frame { fin: true, op: OP_TEXT, payload: b"hi".to_vec() });
        assert_eq!(read_frame(&mut r, 1024).await.unwrap(), Frame { fin: false, op: OP_BINARY, payload: long });
        assert_eq!(read_frame(&mut r, 1024).await.unwrap().op, OP_PING);
        assert!(matches!(read_frame(&mut r, 1024).await, Err(FrameError::Io(_))));
        // Unmasked, too big, reserved bits, a fragmented ping: refused.
        assert!(matches!(read_frame(&mut &encode(OP_TEXT, b"x")[..], 9).await, Err(FrameError::Unmasked)));
        assert!(matches!(read_frame(&mut &masked(0x82, &[0; 200])[..], 100).await, Err(FrameError::TooBig)));
        assert!(matches!(read_frame(&mut &masked(0xc1, b"x")[..], 9).await, Err(FrameError::Bad(_))));
        assert!(matches!(read_frame(&mut &masked(0x09, b"x")[..], 9).await, Err(FrameError::Bad(_))));
        assert_eq!(encode(OP_BINARY, &[0; 3])[..2], [0x82, 3]);
        assert_eq!(encode(OP_BINARY, &[0; 300])[..4], [0x82, 126, 1, 44]);
        assert_eq!(encode(OP_BINARY, &vec![0; 70000])[..2], [0x82, 127]);
        assert_eq!(close_frame(1000, "é".repeat(100).as_str()).len(), 2 + 2 + 120);
    }

    #[test]
    fn routes() {
        assert_eq!(route("/api/v1/agents/b/coder/watch"), Some(("b", "coder", false)));
        assert_eq!(route("/api/v1/agents/b/coder/attach"), Some(("b", "coder", true)));
        assert_eq!(route("/api/v1/agents/b/coder/type"), None);
        assert_eq!(route("/api/v1/agents//coder/watch"), None);
        assert_eq!(route("/api/v1/agents/b/coder/watch/x"), None);
        assert_eq!(route("/api/v1/agents"), None);
    }
}
