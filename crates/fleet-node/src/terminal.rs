//! The terminal plane of `fleet.v1.Fleet`: `WatchPane` (viewer role: `fleet
//! tail --follow`, `fleet watch`) and `AttachPane` (operator role: `fleet
//! attach`), served from this host's pane feeds ([`crate::pane`]) or
//! forwarded to the agent's host on the caller's behalf, like a send.
//!
//! A viewer gets a screen, then the pane's output numbered after it. A
//! viewer that falls [`crate::pane::BACKLOG`] chunks behind gets a fresh
//! screen (`lagged`) instead of what it missed, so a slow viewer costs the
//! node a bounded amount of memory. An attachment ends when the client says
//! so, when its stream breaks, or when no input (keystrokes or keepalives)
//! came for [`ATTACH_IDLE`]; then the feed is dropped, and with the last
//! viewer its tmux client: no client stays attached to a dead viewer.

use crate::pane::{Capture, Chunk, Feed};
use crate::service::{Caller, Node, forward};
use fleet_proto::v1::{self, attach_input::Input, pane_frame::Body};
use fleet_tls::Verb;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

pub type FrameStream = Pin<Box<dyn Stream<Item = Result<v1::PaneFrame, Status>> + Send>>;
/// An attachment's input: a gRPC stream (`tonic::Streaming`), or a browser's WebSocket
/// ([`crate::web::ws`]) made into the same messages in this process.
pub type InputStream = Pin<Box<dyn Stream<Item = Result<v1::AttachInput, Status>> + Send>>;

/// An attachment with no input for this long is ended (its client sends a
/// keepalive every second).
pub const ATTACH_IDLE: Duration = Duration::from_secs(3);
/// Frames queued per viewer before output waits (and, past the feed's
/// backlog, is skipped for a fresh screen).
const FRAMES_QUEUED: usize = 16;
/// How long the first `AttachInput` may take.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Whose pane a frame is from, and the size it is drawn at.
#[derive(Clone)]
struct Header {
    tenant_id: String,
    host: String,
    agent: String,
    width: u32,
    height: u32,
}

impl Header {
    fn frame(&self, body: Body) -> v1::PaneFrame {
        v1::PaneFrame {
            tenant_id: self.tenant_id.clone(),
            host: self.host.clone(),
            agent: self.agent.clone(),
            pane_width: self.width,
            pane_height: self.height,
            body: Some(body),
        }
    }
}

type Frames = mpsc::Sender<Result<v1::PaneFrame, Status>>;

impl Node {
    /// `WatchPane`: follow a pane here, or on its host.
    pub(crate) async fn watch_pane(
        self: &Arc<Self>,
        request: Request<v1::WatchPaneRequest>,
    ) -> Result<Response<FrameStream>, Status> {
        let target = format!("{}@{}", request.get_ref().agent, request.get_ref().host);
        let caller = self.authorize(&request, Verb::Watch, &target)?;
        let req = request.into_inner();
        if !self.is_self(&req.host) {
            let peer = self.peer_for(&req.host).await?;
            let watch = |c, r| async move { v1::fleet_client::FleetClient::new(c).watch_pane(r).await };
            let frames = forward(&peer, &caller, req, None, watch).await?;
            return Ok(Response::new(Box::pin(frames)));
        }
        let feed = self.feed_of(&req.agent).await?;
        let capture =
            if req.lines == 0 { Capture::Screen } else { Capture::Lines(req.lines.min(fleet_tmux::tail::MAX_LINES)) };
        let (tx, rx) = mpsc::channel(FRAMES_QUEUED);
        tokio::spawn(view(feed, capture, self.header(&req.agent), tx, self.cancel.clone()));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    /// `AttachPane`: take over a pane here, or on its host.
    pub(crate) async fn attach_pane(
        self: &Arc<Self>,
        mut request: Request<InputStream>,
    ) -> Result<Response<FrameStream>, Status> {
        let first = tokio::time::timeout(START_TIMEOUT, next_input(request.get_mut())).await;
        let start = match first {
            Ok(Some(Ok(v1::AttachInput { input: Some(Input::Start(s)) }))) => s,
            Ok(Some(Err(status))) => return Err(status),
            Err(_) => return Err(Status::invalid_argument("no AttachInput.start within 5 s")),
            Ok(_) => return Err(Status::invalid_argument("the first AttachInput must be `start`")),
        };
        let target = format!("{}@{}", start.agent, start.host);
        let caller = self.authorize(&request, Verb::Attach, &target)?;
        let input = request.into_inner();
        if !self.is_self(&start.host) {
            return self.forward_attach(&caller, start, input).await;
        }
        let feed = self.feed_of(&start.agent).await?;
        let head = self.header(&start.agent);
        // The window's size before, to put back if the attachment resizes it.
        let before = match start.size {
            Some(size) if start.resize => {
                let s = feed.snapshot(Capture::Screen).await.map_err(|e| Status::unavailable(e.to_string()))?;
                feed.resize(size.width, size.height).await.map_err(|e| Status::unavailable(e.to_string()))?;
                Some((s.width, s.height))
            }
            _ => None,
        };
        let detail =
            if before.is_some() { "the window follows the viewer's size" } else { "the window keeps its size" };
        self.audit(&caller, Verb::Attach, &target, "started", Some(detail));
        let (tx, rx) = mpsc::channel(FRAMES_QUEUED);
        let node = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let viewer =
                tokio::spawn(view(feed.clone(), Capture::Screen, head.clone(), tx.clone(), node.cancel.clone()));
            let (why, typed) = type_into(&feed, input, before.is_some(), viewer, &node.cancel).await;
            if let Some((w, h)) = before
                && let Err(e) = feed.restore_size(w, h).await
            {
                tracing::warn!(target = %target, error = %e, "could not put the window's size back after an attachment");
            }
            let _ = tx.try_send(Ok(head.frame(Body::Ended(why.clone()))));
            let detail = format!("{why}; {:.1} s, {typed} bytes typed", started.elapsed().as_secs_f64());
            node.audit(&caller, Verb::Attach, &target, "ended", Some(&detail));
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn forward_attach(
        &self,
        caller: &Caller,
        start: v1::AttachStart,
        input: InputStream,
    ) -> Result<Response<FrameStream>, Status> {
        let peer = self.peer_for(&start.host).await?;
        let first = v1::AttachInput { input: Some(Input::Start(start)) };
        // Keystrokes and keepalives pass on as they come; the caller's
        // stream ending (or failing) ends the forwarded one.
        let keys = tokio_stream::once(first).chain(UntilError(input));
        let attach = |c, r| async move { v1::fleet_client::FleetClient::new(c).attach_pane(r).await };
        let frames = forward(&peer, caller, keys, None, attach).await?;
        Ok(Response::new(Box::pin(frames)))
    }

    /// The feed of a roster agent of this host.
    async fn feed_of(&self, agent: &str) -> Result<Arc<Feed>, Status> {
        {
            let view = self.live.current();
            let Some(roster) = view.roster.as_deref() else {
                return Err(Status::failed_precondition(format!("host {} has no valid roster", self.info.host)));
            };
            self.roster_agent(roster, agent)?;
        }
        self.panes.feed(&self.socket_of(agent), agent).await.map_err(|e| match e {
            crate::pane::FeedError::NoSession { .. } => {
                Status::not_found(fleet_core::message::not_running(agent, &self.info.host))
            }
            e => Status::unavailable(e.to_string()),
        })
    }

    fn header(&self, agent: &str) -> Header {
        Header {
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
            agent: agent.to_string(),
            width: 0,
            height: 0,
        }
    }
}

/// An input stream's messages up to its end or its first error.
struct UntilError(InputStream);

impl Stream for UntilError {
    type Item = v1::AttachInput;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<v1::AttachInput>> {
        self.0.as_mut().poll_next(cx).map(|m| m.and_then(Result::ok))
    }
}

/// The next input message (a named future: its type is `Send` for every lifetime).
fn next_input(
    input: &mut InputStream,
) -> impl std::future::Future<Output = Option<Result<v1::AttachInput, Status>>> + Send + '_ {
    std::future::poll_fn(move |cx| input.as_mut().poll_next(cx))
}

/// Type what the client sends until it stops: the reason and the bytes typed.
async fn type_into(
    feed: &Feed,
    mut input: InputStream,
    resize: bool,
    mut viewer: tokio::task::JoinHandle<()>,
    cancel: &tokio_util::sync::CancellationToken,
) -> (String, u64) {
    let mut typed = 0u64;
    let why = loop {
        let next = tokio::select! {
            () = cancel.cancelled() => break "the node is shutting down".to_string(),
            _ = &mut viewer => break "the pane's stream ended".to_string(),
            next = tokio::time::timeout(ATTACH_IDLE, next_input(&mut input)) => next,
        };
        let msg = match next {
            Err(_) => break format!("no input or keepalive for {} s", ATTACH_IDLE.as_secs()),
            Ok(Some(Err(status))) => break format!("the client's stream broke ({})", status.message()),
            Ok(None) => break "the client detached".to_string(),
            Ok(Some(Ok(m))) => m,
        };
        match msg.input {
            Some(Input::Keys(bytes)) => {
                typed += bytes.len() as u64;
                if let Err(e) = feed.keys(&bytes).await {
                    break format!("typing failed: {e}");
                }
            }
            Some(Input::Resize(size)) if resize => {
                if let Err(e) = feed.resize(size.width, size.height).await {
                    tracing::warn!(error = %e, "resizing an attached window failed");
                }
            }
            _ => {}
        }
    };
    viewer.abort();
    (why, typed)
}

/// Send `feed`'s pane to one viewer: a screen, then output after it; a
/// fresh screen after a lag or a resize; the end and why.
async fn view(
    feed: Arc<Feed>,
    first: Capture,
    mut head: Header,
    tx: Frames,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut chunks = feed.subscribe();
    let Some(mut at) = screen(&feed, first, "start", &mut head, &tx).await else { return };
    // After a lag, a follower (text lines) gets the visible screen's lines.
    let again = if first == Capture::Screen { Capture::Screen } else { Capture::Lines(0) };
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => {
                let _ = tx.send(Ok(head.frame(Body::Ended("the node is shutting down".into())))).await;
                return;
            }
            () = tx.closed() => return,
            c = chunks.recv() => c,
        };
        let redraw = match next {
            Ok(Chunk::Output { seq, data }) if seq > at => {
                if tx.send(Ok(head.frame(Body::Output(data.to_vec())))).await.is_err() {
                    return;
                }
                None
            }
            Ok(Chunk::Gap { seq, reason }) if seq > at => {
                // Text lines do not care about the pane's size.
                (reason != "resized" || first == Capture::Screen).then_some(reason)
            }
            Ok(Chunk::Ended(why)) => {
                let _ = tx.send(Ok(head.frame(Body::Ended(why)))).await;
                return;
            }
            Ok(_) => None,
            Err(broadcast::error::RecvError::Lagged(_)) => Some("lagged"),
            Err(broadcast::error::RecvError::Closed) => {
                let _ = tx.send(Ok(head.frame(Body::Ended("the pane's feed ended".into())))).await;
                return;
            }
        };
        if let Some(reason) = redraw {
            match screen(&feed, again, reason, &mut head, &tx).await {
                Some(seq) => at = seq,
                None => return,
            }
        }
    }
}

/// Capture and send a screen; the output number it sits at (`None`: the
/// viewer is gone or the capture failed, which it was told).
async fn screen(feed: &Feed, what: Capture, reason: &str, head: &mut Header, tx: &Frames) -> Option<u64> {
    match feed.snapshot(what).await {
        Ok(s) => {
            head.width = s.width;
            head.height = s.height;
            let frame = head.frame(Body::Screen(v1::PaneScreen {
                content: s.content,
                cursor_x: s.cursor_x,
                cursor_y: s.cursor_y,
                reason: reason.to_string(),
            }));
            tx.send(Ok(frame)).await.ok().map(|()| s.seq)
        }
        Err(e) => {
            let _ = tx.send(Ok(head.frame(Body::Ended(format!("capturing the pane failed: {e}"))))).await;
            None
        }
    }
}
