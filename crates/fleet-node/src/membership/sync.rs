//! The full membership sync (memberlist's push/pull) over a QUIC stream: when
//! a node joins, while its view grows and periodically, it swaps its whole
//! membership state with one member, each side vetting what it receives as
//! gossip is vetted (see the module docs of [`super`]).

use super::*;
use foca::Member;

/// A sync frame's body may not be longer (the 4-byte length prefix is checked before the
/// body is read or allocated).
pub const SYNC_MAX_FRAME: usize = 1 << 20;
/// Members one sync frame may carry (a frame that declares more is refused whole).
pub const SYNC_MAX_MEMBERS: usize = 4096;
/// One sync exchange (dial, stream, both frames) must end within this.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// Syncs this node answers at once, all peers together; one more is refused (its stream
/// reset with [`SYNC_BUSY`]), not queued: its sender tries another member later.
pub const SYNC_SERVE: usize = 8;
/// Streams a peer may open to us at once (the QUIC stream limit): a sync and a rows
/// fetch ([`super::rows`]).
pub(super) const PEER_STREAMS: u32 = 2;
/// The stream error code of a sync refused because [`SYNC_SERVE`] are in progress.
const SYNC_BUSY: u32 = 1;

/// How often a node of a mesh of `members` syncs with a random member to heal missed
/// updates: [`SyncPolicy::PERIOD`] up to 32 members, then one more period each time the
/// mesh doubles (memberlist's `pushPullScale`), so the sync bytes per node stay about flat:
/// 30 s at 32, 90 s at 100, 180 s at 1,000.
pub fn sync_period(members: usize) -> Duration {
    if members <= 32 {
        return SyncPolicy::PERIOD;
    }
    // ceil(log2(members)) - log2(32) more periods.
    let doublings = usize::BITS - (members - 1).leading_zeros() - 5;
    SyncPolicy::PERIOD * (doublings + 1)
}

/// When this node starts a full sync (sans-I/O; the driver asks it every
/// [`SyncPolicy::CHECK`], the simulation does the same in simulated time).
/// - When it joins: as soon as it has a member (its seed's `Feed` came), with a seed
///   ([`SyncPolicy::first`]); again [`SyncPolicy::GAP`] later until one succeeds.
/// - While its view grows by more than one member since the last sync began (a mass start,
///   a healed partition): again after [`SyncPolicy::GAP`], with a random member.
/// - Otherwise every [`sync_period`] (jittered ±50 % so a mass start does not sync in step).
/// - One at a time: none while one is in progress (its task always reports within
///   [`SYNC_TIMEOUT`]; a report that never came is given up after twice that).
#[derive(Clone, Debug, Default)]
pub struct SyncPolicy {
    /// When the last sync began, and the active members then.
    last: Option<(Duration, usize)>,
    /// When the next periodic sync is due.
    next: Duration,
    /// When the sync in progress began.
    busy: Option<Duration>,
    /// Syncs that succeeded, and syncs started.
    done: u32,
    started: u32,
}

impl SyncPolicy {
    pub const CHECK: Duration = Duration::from_millis(500);
    pub const GAP: Duration = Duration::from_secs(1);
    pub const PERIOD: Duration = Duration::from_secs(30);

    /// At `now` (since start), with `members` active members: start a sync now? `jitter`
    /// in [0, 1) places the next periodic one.
    pub fn due(&mut self, now: Duration, members: usize, jitter: f64) -> bool {
        if members == 0 || self.busy.is_some_and(|since| now < since + 2 * SYNC_TIMEOUT) {
            return false;
        }
        let go = match self.last {
            None => true,
            Some((at, _)) if self.done == 0 => now >= at + Self::GAP,
            Some((at, then)) => (members > then + 1 && now >= at + Self::GAP) || now >= self.next,
        };
        if go {
            self.last = Some((now, members));
            self.busy = Some(now);
            self.next = now + sync_period(members).mul_f64(0.5 + jitter.clamp(0.0, 1.0));
            self.started += 1;
        }
        go
    }

    /// The sync in progress ended.
    pub fn finished(&mut self, ok: bool) {
        self.busy = None;
        if ok {
            self.done += 1;
        }
    }

    /// Is the sync being started the join's first try (to be made with a seed)?
    pub fn first(&self) -> bool {
        self.started <= 1 && self.done == 0
    }
}

/// Whom to sync with among the active members' addresses: on the join's first try a seed
/// (it has been a member longest and knows most), otherwise the member `dice` picks.
pub fn sync_target(
    first: bool,
    members: &[SocketAddr],
    is_seed: impl Fn(&SocketAddr) -> bool,
    dice: u64,
) -> Option<SocketAddr> {
    if first && let Some(s) = members.iter().find(|a| is_seed(a)) {
        return Some(*s);
    }
    (!members.is_empty()).then(|| members[(dice % members.len() as u64) as usize])
}

/// One sync frame: a 4-byte big-endian body length, then the body: a 2-byte big-endian
/// member count and that many members in foca's encoding (`PostcardCodec::encode_member`,
/// as in datagrams). At most [`SYNC_MAX_MEMBERS`] members and [`SYNC_MAX_FRAME`] bytes of
/// body: members past either are left out (a mesh that large syncs in part; gossip does
/// the rest).
pub fn encode_sync<'a>(members: impl Iterator<Item = &'a Member<MemberId>>) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(4096);
    out.extend_from_slice(&[0; 6]);
    let mut count: u16 = 0;
    for m in members {
        if usize::from(count) == SYNC_MAX_MEMBERS {
            break;
        }
        let before = out.len();
        if PostcardCodec.encode_member(m, &mut out).is_err() || out.len() - 4 > SYNC_MAX_FRAME {
            out.truncate(before);
            break;
        }
        count += 1;
    }
    let body = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&body.to_be_bytes());
    out[4..6].copy_from_slice(&count.to_be_bytes());
    out.freeze()
}

/// The body length a sync frame's prefix declares, if within [`SYNC_MAX_FRAME`].
pub fn sync_frame_len(prefix: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > SYNC_MAX_FRAME {
        return Err(format!(
            "a sync frame of {len} bytes is over the cap of {SYNC_MAX_FRAME}: refused (the peer runs another version or misbehaves)"
        ));
    }
    Ok(len)
}

/// The members of a sync frame's body; the whole frame is refused when it declares more
/// than [`SYNC_MAX_MEMBERS`], a member does not decode, or bytes follow the last member.
pub fn decode_sync(body: &[u8]) -> Result<Vec<Member<MemberId>>, String> {
    let [a, b, rest @ ..] = body else { return Err("a sync frame without its member count".into()) };
    let count = usize::from(u16::from_be_bytes([*a, *b]));
    if count > SYNC_MAX_MEMBERS {
        return Err(format!("a sync frame of {count} members is over the cap of {SYNC_MAX_MEMBERS}: refused"));
    }
    let mut cursor = rest;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let m = PostcardCodec
            .decode_member(&mut cursor)
            .map_err(|e| format!("member {i} of {count} of a sync frame does not decode: {e}"))?;
        out.push(m);
    }
    if !cursor.is_empty() {
        return Err(format!("{} bytes after the last of {count} members of a sync frame", cursor.len()));
    }
    Ok(out)
}

/// The members of a received sync that foca may see, and the refused identities: as for
/// datagram updates, each must be [`believable`] (`believes`); a seed placeholder is
/// refused too (foca never holds one as a member, so nobody honest syncs one).
pub fn vet_synced(
    members: Vec<Member<MemberId>>,
    mut believes: impl FnMut(&MemberId) -> bool,
) -> (Vec<Member<MemberId>>, Vec<MemberId>) {
    let (kept, refused): (Vec<_>, Vec<_>) =
        members.into_iter().partition(|m| !is_placeholder(m.id()) && believes(m.id()));
    (kept, refused.into_iter().map(|m| m.id().clone()).collect())
}

/// This node's sync frame: itself (alive, incarnation 0: a receiver that knows a later
/// incarnation keeps it) and every member it knows, with state and incarnation.
fn snapshot(me: &MemberId, state: &[&Member<MemberId>]) -> Bytes {
    let myself = Member::alive(me.clone());
    encode_sync(std::iter::once(&myself).chain(state.iter().copied().filter(|m| !is_placeholder(m.id()))))
}

/// Counts of full syncs since start ([`Membership::sync_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Syncs this node began that succeeded, and that failed (no connection, refused,
    /// timed out, a bad frame).
    pub began: u64,
    pub failed: u64,
    /// Syncs of peers this node answered.
    pub answered: u64,
    /// Sync stream bytes (frames) received and sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Default)]
pub(super) struct SyncCounters {
    began: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    answered: std::sync::atomic::AtomicU64,
    bytes_in: std::sync::atomic::AtomicU64,
    bytes_out: std::sync::atomic::AtomicU64,
}

fn add(counter: &std::sync::atomic::AtomicU64, n: usize) {
    counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

impl Membership {
    /// Full syncs since start (see the `sync` section).
    pub fn sync_stats(&self) -> SyncStats {
        let c = &self.transport.sync_stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        SyncStats {
            began: get(&c.began),
            failed: get(&c.failed),
            answered: get(&c.answered),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
        }
    }
}

/// What a sync task tells the driver.
pub(super) enum SyncNews {
    /// A peer's sync arrived (its members vetted); `reply` takes our snapshot.
    Asked {
        peer: SocketAddr,
        host: String,
        members: Vec<Member<MemberId>>,
        refused: usize,
        reply: oneshot::Sender<Bytes>,
    },
    /// The sync this node began with `peer` ended.
    Answered { peer: SocketAddr, result: Result<Synced, String> },
}

pub(super) struct Synced {
    host: String,
    members: Vec<Member<MemberId>>,
    refused: usize,
}

async fn read_sync(recv: &mut quinn::RecvStream) -> Result<(Vec<Member<MemberId>>, usize), String> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.map_err(|e| format!("sync frame not read: {e}"))?;
    read_sync_body(prefix, recv).await
}

/// The rest of a sync frame whose length `prefix` was read.
async fn read_sync_body(
    prefix: [u8; 4],
    recv: &mut quinn::RecvStream,
) -> Result<(Vec<Member<MemberId>>, usize), String> {
    let len = sync_frame_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| format!("sync frame of {len} bytes not read: {e}"))?;
    Ok((decode_sync(&body)?, 4 + len))
}

impl Transport {
    /// [`vet_synced`] with what the connections show, refusals counted and logged as
    /// for datagrams.
    fn vet_sync(
        &self,
        addr: SocketAddr,
        cert_host: &str,
        members: Vec<Member<MemberId>>,
    ) -> (Vec<Member<MemberId>>, usize) {
        let (kept, refused) = vet_synced(members, |id| self.believes(id));
        for id in &refused {
            self.refused(addr, cert_host, id, "dropped a synced member that is not believable");
        }
        (kept, refused.len())
    }

    /// The open connection to `to` and its certificate's host, or a new one (admitted and
    /// kept as any other).
    pub(super) async fn connection(self: &Arc<Self>, to: SocketAddr) -> Result<(quinn::Connection, String), String> {
        let open = self.conns.lock().expect("conns").get(&to).filter(|c| c.close_reason().is_none()).cloned();
        if let Some(c) = open {
            let owners = self.owners.lock().expect("owners");
            if let Some(o) = owners.get(&to).filter(|o| o.conn == c.stable_id()) {
                return Ok((c, o.host.clone()));
            }
        }
        let client = self.client.lock().expect("client config").clone();
        let conn = match client {
            Some(c) => self.endpoint.connect_with(c, to, &self.server_name),
            None => self.endpoint.connect(to, &self.server_name),
        }
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
        let p = self.admit(&conn).inspect_err(|_| conn.close(1u32.into(), b"not a node of this tenant"))?;
        self.keep(conn.clone(), p.name.clone());
        Ok((conn, p.name))
    }

    /// Send `mine` to the member at `to` on a new stream and read its state back.
    async fn sync_with(self: &Arc<Self>, to: SocketAddr, mine: Bytes) -> Result<Synced, String> {
        let (conn, host) = self.connection(to).await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("no sync stream: {e}"))?;
        send.write_all(&mine).await.map_err(|e| format!("sync not sent: {e}"))?;
        let _ = send.finish();
        add(&self.sync_stats.bytes_out, mine.len());
        let (members, len) = read_sync(&mut recv).await?;
        add(&self.sync_stats.bytes_in, len);
        let (members, refused) = self.vet_sync(to, &host, members);
        Ok(Synced { host, members, refused })
    }

    /// Answer the syncs and rows asks ([`super::rows`]) that the peer of `conn` (an
    /// admitted node whose certificate names `host`) opens: each stream in a task of its
    /// own, at most [`PEER_STREAMS`] at once (the peer may open no more).
    pub(super) fn serve_syncs(self: &Arc<Self>, conn: quinn::Connection, host: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let peer = conn.remote_address();
            while let Ok((send, recv)) = conn.accept_bi().await {
                let (me, host) = (me.clone(), host.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(SYNC_TIMEOUT, me.serve_stream(peer, &host, send, recv)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "membership: stream not answered"),
                        Err(_) => {
                            tracing::debug!(peer = %peer, "membership: stream not answered within {SYNC_TIMEOUT:?}")
                        }
                    }
                });
            }
        });
    }

    /// One stream a peer opened: a rows ask, or a sync (refused when [`SYNC_SERVE`] are
    /// answered already).
    async fn serve_stream(
        &self,
        peer: SocketAddr,
        host: &str,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Result<(), String> {
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.map_err(|e| format!("stream closed before its first bytes: {e}"))?;
        if prefix == super::ROWS_ASK {
            return self.answer_rows(&mut send).await;
        }
        let Ok(_slot) = self.sync_slots.clone().try_acquire_owned() else {
            let _ = send.reset(SYNC_BUSY.into());
            let _ = recv.stop(SYNC_BUSY.into());
            return Err(format!("sync refused, {SYNC_SERVE} in progress"));
        };
        let (members, len) = read_sync_body(prefix, &mut recv).await?;
        add(&self.sync_stats.bytes_in, len);
        let (members, refused) = self.vet_sync(peer, host, members);
        let (reply, ours) = oneshot::channel();
        let asked = SyncNews::Asked { peer, host: host.to_string(), members, refused, reply };
        self.sync_news.send(asked).await.map_err(|_| "membership stopped".to_string())?;
        let ours = ours.await.map_err(|_| "membership stopped".to_string())?;
        send.write_all(&ours).await.map_err(|e| format!("sync answer not sent: {e}"))?;
        let _ = send.finish();
        add(&self.sync_stats.bytes_out, ours.len());
        add(&self.sync_stats.answered, 1);
        Ok(())
    }
}

/// The driver's side of the sync: when to start one ([`SyncPolicy`]), with whom, and what
/// to do with what comes back. Stream I/O runs in spawned tasks that post [`SyncNews`].
pub(super) struct Syncer {
    pub(super) check: tokio::time::Interval,
    policy: SyncPolicy,
    since: tokio::time::Instant,
    dice: u64,
    news: mpsc::Sender<SyncNews>,
}

impl Syncer {
    pub(super) fn new(me: &MemberId, news: mpsc::Sender<SyncNews>) -> Syncer {
        let mut check = tokio::time::interval(SyncPolicy::CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let dice = me.generation ^ u64::from(std::process::id()).rotate_left(29) | 1;
        Syncer { check, policy: SyncPolicy::default(), since: tokio::time::Instant::now(), dice, news }
    }

    /// xorshift64: which member, and the jitter of the next periodic sync.
    fn roll(&mut self) -> u64 {
        self.dice ^= self.dice << 13;
        self.dice ^= self.dice >> 7;
        self.dice ^= self.dice << 17;
        self.dice
    }

    /// Start a sync if one is due (`state`: foca's whole membership state).
    pub(super) fn tick(
        &mut self,
        me: &MemberId,
        state: &[&Member<MemberId>],
        seeds: &HashMap<SocketAddr, Seed>,
        transport: &Arc<Transport>,
    ) {
        let active: Vec<SocketAddr> = state
            .iter()
            .filter(|m| m.state() != foca::State::Down && transport.believes(m.id()))
            .map(|m| m.id().quic)
            .collect();
        let jitter = (self.roll() >> 11) as f64 / (1u64 << 53) as f64;
        if !self.policy.due(self.since.elapsed(), active.len(), jitter) {
            return;
        }
        let dice = self.roll();
        let Some(to) = sync_target(self.policy.first(), &active, |a| seeds.contains_key(a), dice) else {
            self.policy.finished(false);
            return;
        };
        let mine = snapshot(me, state);
        let (transport, news) = (transport.clone(), self.news.clone());
        tokio::spawn(async move {
            let result = tokio::time::timeout(SYNC_TIMEOUT, transport.sync_with(to, mine))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {SYNC_TIMEOUT:?}")));
            let c = &transport.sync_stats;
            add(if result.is_ok() { &c.began } else { &c.failed }, 1);
            let _ = news.send(SyncNews::Answered { peer: to, result }).await;
        });
    }

    /// What a sync task reported: the members to apply (answering a peer's sync with our
    /// snapshot first).
    pub(super) fn news(&mut self, news: SyncNews, me: &MemberId, state: &[&Member<MemberId>]) -> Vec<Member<MemberId>> {
        let (peer, host, members, refused, side) = match news {
            SyncNews::Asked { peer, host, members, refused, reply } => {
                let _ = reply.send(snapshot(me, state));
                (peer, host, members, refused, "asked")
            }
            SyncNews::Answered { peer, result: Ok(s) } => {
                self.policy.finished(true);
                (peer, s.host, s.members, s.refused, "answered")
            }
            SyncNews::Answered { peer, result: Err(e) } => {
                self.policy.finished(false);
                tracing::debug!(peer = %peer, error = %e, "membership: sync failed");
                return vec![];
            }
        };
        let known: HashSet<&MemberId> =
            state.iter().filter(|m| m.state() != foca::State::Down).map(|m| m.id()).collect();
        let new = members
            .iter()
            .filter(|m| m.state() != foca::State::Down && m.id() != me && !known.contains(m.id()))
            .count();
        tracing::info!(
            peer = %peer, host = %host, side, members = members.len(), new, refused,
            "membership: synced"
        );
        members
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::id;
    use super::*;

    fn member(host: &str, generation: u64, port: u16) -> Member<MemberId> {
        let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Member::new(
            MemberId { tenant: "t".into(), host: host.into(), grpc: a, quic: a, generation, bump: 0 },
            3,
            foca::State::Suspect,
        )
    }

    fn body(frame: &Bytes) -> &[u8] {
        let len = sync_frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4, "the prefix is the body length");
        &frame[4..]
    }

    #[test]
    fn a_sync_frame_carries_members_with_state_and_incarnation() {
        let ms: Vec<_> = (0..40).map(|i| member(&format!("h{i}"), i, 1000 + i as u16)).collect();
        let frame = encode_sync(ms.iter());
        assert_eq!(decode_sync(body(&frame)).unwrap(), ms);
        let empty = encode_sync(std::iter::empty());
        assert_eq!(&empty[..], &[0, 0, 0, 2, 0, 0]);
        assert!(decode_sync(body(&empty)).unwrap().is_empty());
    }

    #[test]
    fn a_sync_frame_is_capped_both_ways() {
        // Sending: no more than the caps, whatever the view.
        let many: Vec<_> = (0..SYNC_MAX_MEMBERS + 10).map(|i| member("h", i as u64, 1)).collect();
        let frame = encode_sync(many.iter());
        assert_eq!(decode_sync(body(&frame)).unwrap().len(), SYNC_MAX_MEMBERS);
        let long = "x".repeat(SYNC_MAX_FRAME / 1000);
        let big: Vec<_> = (0..1500).map(|i| member(&long, i, 1)).collect();
        let frame = encode_sync(big.iter());
        assert!(frame.len() - 4 <= SYNC_MAX_FRAME, "{}", frame.len());
        let n = decode_sync(body(&frame)).unwrap().len();
        assert!(n > 900 && n < 1000, "members up to the byte cap: {n}");
        // The byte cap is exact: a body of exactly the cap is sent, one byte more is not.
        let size = |m: &Member<MemberId>| {
            let mut b = bytes::BytesMut::new();
            PostcardCodec.encode_member(m, &mut b).unwrap();
            b.len()
        };
        let of = |l: usize| member(&"x".repeat(l), 1, 1);
        let base = size(&of(0));
        let l = (0..16)
            .map(|d| SYNC_MAX_FRAME - 2 - base - d)
            .find(|&l| size(&of(l)) == SYNC_MAX_FRAME - 2)
            .expect("a member of the cap's size");
        let exact = encode_sync([of(l)].iter());
        assert_eq!(exact.len() - 4, SYNC_MAX_FRAME);
        assert_eq!(decode_sync(body(&exact)).unwrap().len(), 1, "a body of exactly the cap");
        assert_eq!(decode_sync(body(&encode_sync([of(l + 1)].iter()))).unwrap().len(), 0, "one byte over");
        // Receiving: a declared length over the cap is refused before anything is read.
        assert_eq!(sync_frame_len((SYNC_MAX_FRAME as u32).to_be_bytes()), Ok(SYNC_MAX_FRAME));
        assert!(sync_frame_len((SYNC_MAX_FRAME as u32 + 1).to_be_bytes()).unwrap_err().contains("over the cap"));
        assert!(sync_frame_len(u32::MAX.to_be_bytes()).is_err());
        // A count over the cap, a member that does not decode, bytes after the last one.
        let mut over = (SYNC_MAX_MEMBERS as u16 + 1).to_be_bytes().to_vec();
        over.extend_from_slice(&body(&encode_sync(many.iter()))[2..]);
        assert!(decode_sync(&over).unwrap_err().contains("over the cap"));
        let two = encode_sync(ms_pair().iter());
        let b = body(&two);
        assert!(decode_sync(&b[..b.len() - 1]).unwrap_err().contains("does not decode"));
        let mut trailing = b.to_vec();
        trailing.push(0);
        assert!(decode_sync(&trailing).unwrap_err().contains("after the last"));
        assert!(decode_sync(&[0]).is_err());
        assert!(decode_sync(&[]).is_err());
    }

    fn ms_pair() -> Vec<Member<MemberId>> {
        vec![member("a", 1, 1), member("b", 2, 2)]
    }

    #[test]
    fn synced_members_are_vetted_as_gossip_is() {
        let b = id("b", 5);
        let c = MemberId { quic: "127.0.0.1:2".parse().unwrap(), ..id("c", 1) };
        // The node at b's address has a connection whose certificate names b and which
        // announced b(5); nothing is open at c's.
        let believes = |m: &MemberId| {
            let owner = (m.quic == b.quic).then_some(("b", Some(&b)));
            believable("t", owner, m)
        };
        let got = vec![
            Member::alive(b.clone()),
            Member::new(c.clone(), 2, foca::State::Suspect),
            Member::alive(MemberId { host: "evil".into(), ..b.clone() }),
            Member::alive(id("b", 6)),
            Member::alive(MemberId { tenant: "u".into(), ..c.clone() }),
            Member::alive(placeholder(&b, c.quic)),
            Member::down(id("b", 4)),
        ];
        let (kept, refused) = vet_synced(got, believes);
        assert_eq!(
            kept,
            vec![Member::alive(b.clone()), Member::new(c.clone(), 2, foca::State::Suspect), Member::down(id("b", 4))]
        );
        let hosts: Vec<(&str, &str, u64)> =
            refused.iter().map(|m| (m.tenant.as_str(), m.host.as_str(), m.generation)).collect();
        assert_eq!(
            hosts,
            vec![("t", "evil", 5), ("t", "b", 6), ("u", "c", 1), ("t", "seed:127.0.0.1:2", 0)],
            "a forged host, a forged next generation, another tenant, a placeholder"
        );
    }

    #[test]
    fn the_periodic_sync_slows_as_the_mesh_doubles() {
        let s = |n| sync_period(n).as_secs();
        assert_eq!((s(0), s(2), s(32)), (30, 30, 30));
        assert_eq!((s(33), s(64), s(65)), (60, 60, 90));
        assert_eq!((s(100), s(128), s(1000), s(1024), s(1025)), (90, 90, 180, 180, 210));
    }

    #[test]
    fn a_sync_starts_on_join_while_the_view_grows_and_periodically() {
        let ms = Duration::from_millis;
        let mut p = SyncPolicy::default();
        assert!(!p.due(ms(0), 0, 0.5), "no member yet: nobody to sync with");
        assert!(p.due(ms(500), 25, 0.5), "the seed's Feed came: sync at once");
        assert!(p.first(), "the join's first sync goes to a seed");
        assert!(!p.due(ms(1500), 80, 0.5), "one at a time");
        p.finished(false);
        assert!(!p.due(ms(1000), 25, 0.5), "a failed join sync is tried again after a gap");
        assert!(p.due(ms(1500), 25, 0.5), "even when the view did not grow");
        assert!(!p.first(), "and then with anyone");
        p.finished(true);
        assert!(!p.due(ms(2000), 99, 0.5), "the view grew, but within the gap");
        assert!(p.due(ms(2500), 99, 0.5), "the view grew by more than one: again");
        p.finished(true);
        assert!(!p.due(ms(3500), 100, 0.5), "one more member is no reason");
        assert!(!p.due(ms(2500 + 89_999), 100, 0.5));
        assert!(p.due(ms(2500 + 90_000), 100, 0.5), "periodic: 90 s at 100 members");
        p.finished(true);
        let mut q = SyncPolicy::default();
        assert!(q.due(ms(0), 100, 0.0));
        q.finished(true);
        assert!(!q.due(ms(44_999), 100, 0.999_999));
        assert!(q.due(ms(45_000), 100, 0.999_999), "jitter: half the period at least");
        q.finished(true);
        assert!(!q.due(ms(45_000 + 134_999), 100, 0.999_999));
        assert!(q.due(ms(45_000 + 135_000), 100, 0.999_999), "and one and a half at most");
        let mut r = SyncPolicy::default();
        assert!(r.due(ms(0), 3, 0.5));
        assert!(!r.due(ms(9_999), 30, 0.5), "a report that never came holds the next");
        assert!(r.due(ms(10_000), 30, 0.5), "for twice the timeout");
    }

    #[test]
    fn a_join_syncs_with_a_seed_then_with_anyone() {
        let a: Vec<SocketAddr> = (1..=4).map(|p| format!("127.0.0.1:{p}").parse().unwrap()).collect();
        let seed = |x: &SocketAddr| x.port() == 3;
        assert_eq!(sync_target(true, &a, seed, 0), Some(a[2]));
        assert_eq!(sync_target(true, &a, |_| false, 5), Some(a[1]), "no seed among the members");
        assert_eq!(sync_target(false, &a, seed, 5), Some(a[1]));
        assert_eq!(sync_target(false, &a, seed, 7), Some(a[3]));
        assert_eq!(sync_target(true, &[], seed, 7), None);
    }
}
