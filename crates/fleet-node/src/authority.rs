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
//! does not start with the HTTP/2 preface, a frame over [`MAX_FRAME`] or a block that does not
//! decode is passed on as it is from there on, for h2 to refuse as it would have.

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
/// Largest frame payload the fix buffers (h2 itself accepts 16 KiB unless told otherwise).
pub const MAX_FRAME: usize = 1 << 20;
/// Payload size of the frames the fix writes: HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`,
/// which every server accepts.
const OUT_FRAME: usize = 16_384;
/// The dynamic table size h2 allows the client by default.
const TABLE_SIZE: usize = 4096;
/// What an unusable `:authority` becomes.
const LOCALHOST: &[u8] = b"localhost";

enum State {
    Preface,
    Frames,
    /// Not HTTP/2 as expected: everything passes as it is.
    Pass,
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
    /// Authorities replaced so far (for tests and the debug log).
    pub rewritten: u64,
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
            rewritten: 0,
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

    /// Move what can be judged from `raw` to `out`.
    fn process(&mut self) {
        loop {
            match self.state {
                State::Pass => {
                    let rest = self.raw.split();
                    self.out.extend_from_slice(&rest);
                    return;
                }
                State::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        return self.pass();
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    let preface = self.raw.split_to(PREFACE.len());
                    self.out.extend_from_slice(&preface);
                    self.state = State::Frames;
                }
                State::Frames => {
                    if self.raw.len() < FRAME_HEADER {
                        return;
                    }
                    let len = usize::from(self.raw[0]) << 16 | usize::from(self.raw[1]) << 8 | usize::from(self.raw[2]);
                    if len > MAX_FRAME {
                        return self.pass();
                    }
                    if self.raw.len() < FRAME_HEADER + len {
                        return;
                    }
                    let frame = self.raw.split_to(FRAME_HEADER + len);
                    self.frame(&frame);
                }
            }
        }
    }

    fn frame(&mut self, frame: &[u8]) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        if let Some(p) = &mut self.pending {
            p.raw.extend_from_slice(frame);
            if kind != CONTINUATION || stream != p.stream {
                // A protocol error of the client's: h2 says so.
                return self.pass();
            }
            p.block.extend_from_slice(payload);
            if flags & END_HEADERS != 0 {
                let p = self.pending.take().expect("pending");
                self.finish(p);
            }
            return;
        }
        if kind != HEADERS {
            self.out.extend_from_slice(frame);
            return;
        }
        let pad = if flags & PADDED != 0 { payload.first().map_or(usize::MAX, |&p| usize::from(p)) } else { 0 };
        let start = usize::from(flags & PADDED != 0) + if flags & PRIORITY != 0 { 5 } else { 0 };
        let Some(block) = payload.len().checked_sub(pad).filter(|&end| end >= start).map(|end| &payload[start..end])
        else {
            self.out.extend_from_slice(frame);
            return self.pass();
        };
        let p = Pending { stream, flags, block: block.to_vec(), raw: frame.to_vec() };
        if flags & END_HEADERS != 0 {
            self.finish(p);
        } else {
            self.pending = Some(p);
        }
    }

    /// Decode a whole block and write it again as HEADERS (+ CONTINUATION) frames.
    fn finish(&mut self, p: Pending) {
        let mut block = Vec::with_capacity(p.block.len() + 64);
        let mut rewritten = 0;
        let decoded = self.decoder.decode_with_cb(&p.block, |name, value| {
            let value: &[u8] = if &*name == b":authority" && http::uri::Authority::try_from(&*value).is_err() {
                rewritten += 1;
                LOCALHOST
            } else {
                &value
            };
            literal(&mut block, &name, value);
        });
        if let Err(e) = decoded {
            tracing::debug!(error = ?e, "local door: a header block that does not decode is passed on as it is");
            self.out.extend_from_slice(&p.raw);
            return self.pass();
        }
        if rewritten > 0 {
            tracing::trace!(stream = p.stream, "local door: an :authority h2 would refuse is now localhost");
        }
        self.rewritten += rewritten;
        let chunks: Vec<&[u8]> = if block.is_empty() { vec![&[]] } else { block.chunks(OUT_FRAME).collect() };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (kind, mut flags) = if i == 0 { (HEADERS, p.flags & END_STREAM) } else { (CONTINUATION, 0) };
            if i == last {
                flags |= END_HEADERS;
            }
            let len = chunk.len() as u32;
            self.out.extend_from_slice(&len.to_be_bytes()[1..]);
            self.out.extend_from_slice(&[kind, flags]);
            self.out.extend_from_slice(&p.stream.to_be_bytes());
            self.out.extend_from_slice(chunk);
        }
    }
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
                    continue;
                }
                Poll::Ready(Ok(())) => this.raw.extend_from_slice(read.filled()),
            }
            this.process();
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
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut fix = AuthorityFix::new(server);
        let writer = tokio::spawn(async move {
            // In small pieces, so frames arrive split.
            for piece in input.chunks(7) {
                client.write_all(piece).await.unwrap();
            }
            client.shutdown().await.unwrap();
            client
        });
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.unwrap();
        drop(writer.await.unwrap());
        out
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
        let big = vec![b'x'; 40_000];
        req.push((b"x-big", big.clone()));
        let block = enc.encode(req.iter().map(|(n, v)| (*n, v.as_slice())));
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
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
}
