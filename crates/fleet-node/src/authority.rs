//! Stock gRPC clients on the local door.
//!
//! grpc-core (grpcio for Python, and the C++, Ruby, PHP clients; grpc-java does the same)
//! sends, for a `unix:/path/node.sock` target, the percent-encoded socket path as the HTTP/2
//! `:authority` (`home%2Fops%2F.config%2Fmosaic%2Ffleet%2Fnode.sock`). h2, under tonic,
//! refuses a request whose `:authority` is not a valid URI authority as malformed and resets
//! the stream (RST_STREAM PROTOCOL_ERROR, which the client reports as INTERNAL) before any
//! service sees it; h2 has no option to relax this (hyperium/h2#487). On the local door the
//! authority means nothing (the socket is the address, the uid the identity), so
//! [`AuthorityFix`] sits between the socket and h2 and rewrites the client's header blocks:
//! an `:authority` that h2 would refuse becomes `localhost`, what grpc-core itself sent
//! before 1.57.
//!
//! HPACK header blocks depend on a dynamic table that both ends keep in step, so the fix
//! decodes every block the client sends (with the client's table) and encodes it again with
//! literals that never touch h2's dynamic table (literal without indexing, no Huffman). All
//! other frames pass unchanged; the server-to-client direction is untouched. A stream that
//! does not start with the HTTP/2 preface, a frame over [`MAX_FRAME`] (h2's own limit, which
//! h2 then enforces) or a block that does not decode is passed on as it is from there on, for
//! h2 to refuse as it would have.
//!
//! Decoding before h2 does means the fix must also bound what h2 would have bounded: a
//! header block collected over HEADERS and CONTINUATION frames may be at most [`MAX_BLOCK`]
//! bytes as received, and at most [`MAX_HEADER_LIST`] decoded (one-byte references to a 4 KiB
//! table entry would otherwise turn a 16 KiB frame into 64 MiB of literals). Past either
//! limit the connection is closed (an `InvalidData` error to h2): passing the bytes on would
//! not help, since h2's table would no longer be in step with the client's.

use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Largest frame payload the fix reads: the `SETTINGS_MAX_FRAME_SIZE` h2 advertises (HTTP/2's
/// default, 16 KiB; the node does not raise it). A larger frame is handed on unread, for h2 to
/// refuse (FRAME_SIZE_ERROR) after reading its 9-byte header.
pub const MAX_FRAME: usize = 16_384;
/// Largest header block the fix collects, as received: the HEADERS and CONTINUATION frames,
/// their 9-byte headers included, so that empty CONTINUATION frames count too.
pub const MAX_BLOCK: usize = 64 * 1024;
/// Largest header list the fix writes out, counted as HPACK counts it (name + value + 32 per
/// field): four times hyper's `SETTINGS_MAX_HEADER_LIST_SIZE` (16 KiB), so a list somewhat
/// over h2's limit still reaches h2, which answers it on that stream alone as it would have.
pub const MAX_HEADER_LIST: usize = 64 * 1024;
/// Payload size of the frames the fix writes: HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`,
/// which every server accepts.
const OUT_FRAME: usize = 16_384;
/// The fix decodes no further frames while this much waits for h2 (so tiny frames that each
/// decode to a big block cannot pile up).
const OUT_HIGH: usize = 64 * 1024;
/// The dynamic table size h2 allows the client by default.
const TABLE_SIZE: usize = 4096;
/// What an unusable `:authority` becomes.
const LOCALHOST: &[u8] = b"localhost";

enum State {
    Preface,
    Frames,
    /// Not HTTP/2 as expected: everything passes as it is.
    Pass,
    /// Over a limit: the connection is refused (why).
    Refused(&'static str),
}

/// A header block split over HEADERS and CONTINUATION frames, collected.
struct Pending {
    stream: u32,
    flags: u8,
    block: Vec<u8>,
    /// The frames as received, in case the block cannot be decoded.
    raw: Vec<u8>,
}

/// The local door's connection, with the client's header blocks made acceptable to h2.
pub struct AuthorityFix<S> {
    inner: S,
    state: State,
    /// Read from the client, not yet looked at.
    raw: BytesMut,
    /// Ready for h2.
    out: BytesMut,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> AuthorityFix<S> {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        AuthorityFix {
            inner,
            state: State::Preface,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            pending: None,
            decoder,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Give up on fixing: everything not yet passed goes on as received.
    fn pass(&mut self) {
        if let Some(p) = self.pending.take() {
            self.out.extend_from_slice(&p.raw);
        }
        let rest = self.raw.split();
        self.out.extend_from_slice(&rest);
        self.state = State::Pass;
    }

    /// Refuse the connection: nothing more goes to h2.
    fn refuse(&mut self, why: &'static str, stream: u32) -> io::Error {
        tracing::warn!(stream, why, "local door: a client's header block is over a limit; connection closed");
        self.pending = None;
        self.raw = BytesMut::new();
        self.out = BytesMut::new();
        self.state = State::Refused(why);
        refused(why)
    }

    /// Move what can be judged from `raw` to `out`, until `out` holds [`OUT_HIGH`].
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Refused(why) => return Err(refused(why)),
                State::Pass => {
                    let rest = self.raw.split();
                    self.out.extend_from_slice(&rest);
                    return Ok(());
                }
                State::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        self.pass();
                        return Ok(());
                    }
                    if n < PREFACE.len() {
                        return Ok(());
                    }
                    let preface = self.raw.split_to(PREFACE.len());
                    self.out.extend_from_slice(&preface);
                    self.state = State::Frames;
                }
                State::Frames => {
                    if self.raw.len() < FRAME_HEADER || self.out.len() >= OUT_HIGH {
                        return Ok(());
                    }
                    let len = usize::from(self.raw[0]) << 16 | usize::from(self.raw[1]) << 8 | usize::from(self.raw[2]);
                    if len > MAX_FRAME {
                        self.pass();
                        return Ok(());
                    }
                    if self.raw.len() < FRAME_HEADER + len {
                        return Ok(());
                    }
                    let frame = self.raw.split_to(FRAME_HEADER + len);
                    self.frame(&frame)?;
                }
            }
        }
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        if let Some(p) = &mut self.pending {
            if kind != CONTINUATION || stream != p.stream {
                // A protocol error of the client's: h2 says so.
                p.raw.extend_from_slice(frame);
                self.pass();
                return Ok(());
            }
            if p.raw.len() + frame.len() > MAX_BLOCK {
                return Err(self.refuse("a header block of more than 64 KiB (HEADERS and CONTINUATION frames)", stream));
            }
            p.raw.extend_from_slice(frame);
            p.block.extend_from_slice(payload);
            if flags & END_HEADERS != 0 {
                let p = self.pending.take().expect("pending");
                return self.finish(p.stream, p.flags, &p.block, &p.raw);
            }
            return Ok(());
        }
        if kind != HEADERS {
            self.out.extend_from_slice(frame);
            return Ok(());
        }
        let pad = if flags & PADDED != 0 { payload.first().map_or(usize::MAX, |&p| usize::from(p)) } else { 0 };
        let start = usize::from(flags & PADDED != 0) + if flags & PRIORITY != 0 { 5 } else { 0 };
        let Some(block) = payload.len().checked_sub(pad).filter(|&end| end >= start).map(|end| &payload[start..end])
        else {
            self.out.extend_from_slice(frame);
            self.pass();
            return Ok(());
        };
        if flags & END_HEADERS != 0 {
            // One frame: decoded where it lies, passed on from there if it does not decode.
            return self.finish(stream, flags, block, frame);
        }
        self.pending = Some(Pending { stream, flags, block: block.to_vec(), raw: frame.to_vec() });
        Ok(())
    }

    /// Decode a whole block and write it again as HEADERS (+ CONTINUATION) frames; `raw`:
    /// the frames it came in.
    fn finish(&mut self, stream: u32, flags: u8, block: &[u8], raw: &[u8]) -> io::Result<()> {
        let mut fixed = Vec::with_capacity(block.len() + 64);
        let (mut rewritten, mut list_size) = (0, 0usize);
        let decoded = self.decoder.decode_with_cb(block, |name, value| {
            // The decoder cannot be stopped from here; past the limit nothing more is kept.
            list_size = list_size.saturating_add(name.len() + value.len() + 32);
            if list_size > MAX_HEADER_LIST {
                return;
            }
            let value: &[u8] = if &*name == b":authority" && http::uri::Authority::try_from(&*value).is_err() {
                rewritten += 1;
                LOCALHOST
            } else {
                &value
            };
            literal(&mut fixed, &name, value);
        });
        if list_size > MAX_HEADER_LIST {
            return Err(self.refuse("a header list of more than 64 KiB decoded", stream));
        }
        if let Err(e) = decoded {
            tracing::debug!(error = ?e, "local door: a header block that does not decode is passed on as it is");
            self.out.extend_from_slice(raw);
            self.pass();
            return Ok(());
        }
        if rewritten > 0 {
            tracing::trace!(stream, "local door: an :authority h2 would refuse is now localhost");
        }
        let chunks: Vec<&[u8]> = if fixed.is_empty() { vec![&[]] } else { fixed.chunks(OUT_FRAME).collect() };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (kind, mut flags) = if i == 0 { (HEADERS, flags & END_STREAM) } else { (CONTINUATION, 0) };
            if i == last {
                flags |= END_HEADERS;
            }
            let len = chunk.len() as u32;
            self.out.extend_from_slice(&len.to_be_bytes()[1..]);
            self.out.extend_from_slice(&[kind, flags]);
            self.out.extend_from_slice(&stream.to_be_bytes());
            self.out.extend_from_slice(chunk);
        }
        Ok(())
    }
}

/// The error h2 gets for a refused connection (it closes the connection).
fn refused(why: &'static str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("local door: {why}: connection closed (send smaller header blocks)"),
    )
}

/// One header as a literal without indexing, with a literal name, no Huffman coding.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    // Writing to a Vec cannot fail.
    let _ = loona_hpack::encoder::encode_integer_into(0, 4, 0x00, out);
    for s in [name, value] {
        let _ = loona_hpack::encoder::encode_integer_into(s.len(), 7, 0x00, out);
        out.extend_from_slice(s);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            // Nothing can be given; reading on now would only fill `out`.
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Pass) && this.raw.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // What is buffered first (a previous round may have stopped at OUT_HIGH), so
            // `raw` never holds more than one frame and one read.
            this.process()?;
            if !this.out.is_empty() {
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of stream: whatever is left goes to h2 as it is, then EOF.
                    if this.raw.is_empty() && this.pending.is_none() {
                        return Poll::Ready(Ok(()));
                    }
                    this.pass();
                }
                Poll::Ready(Ok(())) => this.raw.extend_from_slice(read.filled()),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// h2's largest frame payload (SETTINGS_MAX_FRAME_SIZE as it advertises it).
    const H2_FRAME: usize = 16_384;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Split `bytes` (after the preface) into frames: (kind, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        let (out, end) = through_to_end(input).await;
        end.unwrap();
        out
    }

    /// What h2 reads from the fix, and how its reading ended (EOF or the fix's error).
    async fn through_to_end(input: Vec<u8>) -> (Vec<u8>, io::Result<()>) {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut fix = AuthorityFix::new(server);
        let writer = tokio::spawn(async move {
            // In small pieces, so frames arrive split; a refused connection stops reading.
            for piece in input.chunks(7) {
                if client.write_all(piece).await.is_err() {
                    return;
                }
            }
            let _ = client.shutdown().await;
        });
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            match fix.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        drop(fix);
        writer.await.unwrap();
        (out, end)
    }

    /// A request on stream 1 that puts `x-big: <4000 bytes>` into the client's dynamic table
    /// (its index is then 62).
    fn big_entry() -> Vec<u8> {
        let mut block = vec![0x80 | 3, 0x80 | 6];
        block.extend(indexed_literal(4, b"", b"/fleet.v1.Mesh/NodeInfo"));
        block.extend([0x40, 5]);
        block.extend_from_slice(b"x-big");
        let _ = loona_hpack::encoder::encode_integer_into(4000, 7, 0x00, &mut block);
        block.extend_from_slice(&[b'a'; 4000]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        input
    }

    fn request(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":path", b"/fleet.v1.Mesh/NodeInfo".to_vec()),
            (b":authority", authority.to_vec()),
            (b"te", b"trailers".to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
        ]
    }

    /// A literal with incremental indexing: static name `index` (0: a literal name).
    fn indexed_literal(index: u8, name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x40 | index];
        if index == 0 {
            out.push(name.len() as u8);
            out.extend_from_slice(name);
        }
        out.push(value.len() as u8);
        out.extend_from_slice(value);
        out
    }

    #[tokio::test]
    async fn a_percent_encoded_socket_path_becomes_localhost_and_the_rest_is_kept() {
        let path = b"tmp%2Fdoor%2Fhome%2Ffleet%2Fnode.sock";
        let req = request(path);
        // As grpc-core encodes: the first request adds its headers to the dynamic table, the
        // second refers to them (62 is the newest entry).
        let block1 = [
            vec![0x80 | 3, 0x80 | 6],
            indexed_literal(4, b"", &req[2].1),
            indexed_literal(1, b"", path),
            indexed_literal(0, b"te", b"trailers"),
            indexed_literal(31, b"", b"application/grpc"),
        ]
        .concat();
        let block2 = [0x80 | 3, 0x80 | 6, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62];
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[[3u8].as_slice(), &block1, &[0, 0, 0]].concat()));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0")); // DATA, unchanged
        // Split over HEADERS + CONTINUATION, with a priority field.
        let (a, b) = block2.split_at(2);
        input.extend(frame(HEADERS, PRIORITY | END_STREAM, 3, &[[0u8, 0, 0, 0, 16].as_slice(), a].concat()));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        let out = through(input).await;
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let got = frames(&out[PREFACE.len()..]);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], (0x4, 0, 0, vec![]));
        assert_eq!(got[2], (0x0, END_STREAM, 1, b"\0\0\0\0\0".to_vec()));
        // What h2 decodes (its own table, which the fix never fills).
        let mut h2 = loona_hpack::Decoder::new();
        let want: Vec<(Vec<u8>, Vec<u8>)> = req
            .iter()
            .map(|(n, v)| (n.to_vec(), if *n == b":authority" { b"localhost".to_vec() } else { v.clone() }))
            .collect();
        for (i, stream, flags) in [(1, 1, END_HEADERS), (3, 3, END_HEADERS | END_STREAM)] {
            let (kind, f, s, block) = &got[i];
            assert_eq!((*kind, *f, *s), (HEADERS, flags, stream));
            assert_eq!(h2.decode(block).unwrap(), want, "stream {stream}");
        }
    }

    #[tokio::test]
    async fn a_valid_authority_is_kept_and_big_blocks_are_split() {
        let mut enc = loona_hpack::Encoder::new();
        let mut req = request(b"fleet-node.local");
        let big = vec![b'/'; 40_000]; // 8 bits in Huffman: not shorter
        req.push((b"x-big", big.clone()));
        let block = enc.encode(req.iter().map(|(n, v)| (*n, v.as_slice())));
        // In frames of at most 16 KiB, as h2 allows.
        let mut input = PREFACE.to_vec();
        let pieces: Vec<&[u8]> = block.chunks(H2_FRAME).collect();
        assert_eq!(pieces.len(), 3, "{} bytes", block.len());
        input.extend(frame(HEADERS, 0, 1, pieces[0]));
        input.extend(frame(CONTINUATION, 0, 1, pieces[1]));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, pieces[2]));
        let out = through(input).await;
        let got = frames(&out[PREFACE.len()..]);
        assert_eq!(got.len(), 3, "40 KB in 16 KiB frames");
        assert_eq!((got[0].0, got[0].1), (HEADERS, 0));
        assert_eq!((got[1].0, got[1].1), (CONTINUATION, 0));
        assert_eq!((got[2].0, got[2].1), (CONTINUATION, END_HEADERS));
        let block: Vec<u8> = got.iter().flat_map(|f| f.3.clone()).collect();
        let headers = loona_hpack::Decoder::new().decode(&block).unwrap();
        assert_eq!(headers[3], (b":authority".to_vec(), b"fleet-node.local".to_vec()));
        assert_eq!(headers[6], (b"x-big".to_vec(), big));
    }

    #[tokio::test]
    async fn what_is_not_http2_passes_as_it_is() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(input.clone()).await, input);
        // A block that does not decode (index 70 with an empty dynamic table): passed on.
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0x80 | 70]));
        input.extend(frame(0x0, 0, 1, b"abc"));
        assert_eq!(through(input.clone()).await, input);
    }

    #[tokio::test]
    async fn references_to_a_big_entry_close_the_connection_past_the_header_list_limit() {
        // Twelve references (12 x 4037 bytes as HPACK counts them): under the limit, passed
        // on (h2 answers a list over its own 16 KiB limit on that stream alone).
        let mut input = big_entry();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x80 | 62; 12]));
        let got = frames(&through(input).await[PREFACE.len()..]);
        let block: Vec<u8> = got[1..].iter().flat_map(|f| f.3.clone()).collect();
        let headers = loona_hpack::Decoder::new().decode(&block).unwrap();
        assert_eq!(headers.len(), 12);
        assert!(headers.iter().all(|(n, v)| n == b"x-big" && v.len() == 4000));

        // A 16 KiB frame of them (64 MiB if expanded): refused after 64 KiB.
        let mut input = big_entry();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x80 | 62; H2_FRAME]));
        input.extend(frame(0x0, END_STREAM, 1, b"more"));
        let (out, end) = through_to_end(input).await;
        let e = end.expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("header list of more than 64 KiB"), "{e}");
        let got = frames(&out[PREFACE.len()..]);
        assert_eq!(got.len(), 1, "only the first request went to h2");
        assert!(out.len() < 5000, "{} bytes", out.len());
    }

    #[tokio::test]
    async fn a_header_block_that_never_ends_closes_the_connection() {
        for continuation in [0, 1000, H2_FRAME] {
            let mut input = PREFACE.to_vec();
            input.extend(frame(HEADERS, 0, 1, &[0x80 | 3, 0x80 | 6]));
            let n = (8 * MAX_BLOCK).checked_div(continuation).unwrap_or(20_000);
            for _ in 0..n {
                input.extend(frame(CONTINUATION, 0, 1, &vec![0x80 | 2; continuation]));
            }
            let (out, end) = through_to_end(input).await;
            let e = end.expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("header block of more than 64 KiB"), "{continuation}: {e}");
            assert_eq!(out, PREFACE, "{continuation}: nothing of the block went to h2");
        }
        // Up to the limits, a block is collected and passed on: 60 KB in 16 KiB frames.
        let mut block = vec![0x80 | 3, 0x80 | 6, 0x00, 6];
        block.extend_from_slice(b"x-long");
        let _ = loona_hpack::encoder::encode_integer_into(60_000, 7, 0x00, &mut block);
        block.extend_from_slice(&[b'/'; 60_000]);
        let mut input = PREFACE.to_vec();
        let pieces: Vec<&[u8]> = block.chunks(H2_FRAME).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            input.extend(frame(kind, if i == pieces.len() - 1 { END_HEADERS } else { 0 }, 1, piece));
        }
        let got = frames(&through(input).await[PREFACE.len()..]);
        let block: Vec<u8> = got.iter().flat_map(|f| f.3.clone()).collect();
        let headers = loona_hpack::Decoder::new().decode(&block).unwrap();
        assert_eq!(headers[2], (b"x-long".to_vec(), vec![b'/'; 60_000]));
    }

    #[tokio::test]
    async fn a_frame_over_16_kib_is_handed_on_unread() {
        // A block the fix would rewrite, if it read a frame this big.
        let mut block = vec![0x80 | 3, 0x80 | 6];
        block.extend(indexed_literal(1, b"", b"tmp%2Fnode.sock"));
        block.extend([0x00, 5]);
        block.extend_from_slice(b"x-pad");
        let _ = loona_hpack::encoder::encode_integer_into(H2_FRAME, 7, 0x00, &mut block);
        block.extend_from_slice(&[b'/'; H2_FRAME]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        input.extend(frame(0x0, 0, 1, b"abc"));
        assert_eq!(through(input.clone()).await, input, "for h2 to refuse as too big");
    }
}
