//! A peer host's state over the membership's QUIC connection to it. The replicated view
//! ([`crate::replica`]) asks each host for its rows when gossip announces a new version;
//! asking over the connection SWIM already holds (or opens, and then keeps using) costs a
//! stream, where a gRPC call costs a TCP connection and a second TLS handshake. In a
//! 100-node mass start that was 9,900 handshakes and as many HTTP/2 connections of 25-50
//! KB each (docs/benchmarks.md, "Fifth pass").
//!
//! The stream: the asker writes [`ROWS_ASK`] and finishes; the host answers with a 4-byte
//! big-endian length and the `ListAgentsResponse` of its `ListAgents(LOCAL)`, protobuf
//! encoded. A sync stream begins with its frame's length, whose first byte is 0 (a frame
//! is at most [`super::SYNC_MAX_FRAME`]), so the two never mix up; a node that knows no
//! rows stream reads the ask as a frame too long, and the asker falls back to gRPC.
//!
//! Who may ask: any node the connection admitted (a node certificate of this tenant, not
//! revoked), the peers a gRPC `ListAgents` would serve too. Who answers: the connection's
//! certificate names the host, and the asker checks that it is the host it asked for.

use super::*;
use fleet_proto::v1;
use prost::Message as _;

/// The first bytes of a stream that asks for the host's rows.
pub const ROWS_ASK: [u8; 4] = *b"ROWS";
/// The longest answer read (10,000 agent rows fit many times over).
pub const ROWS_MAX_FRAME: usize = 16 << 20;

/// What this node answers a rows stream with: its `ListAgents(LOCAL)`.
pub type RowsSource = Arc<dyn Fn() -> v1::ListAgentsResponse + Send + Sync>;

impl Membership {
    /// Answer rows streams with `source` (before it is set, a rows stream is reset).
    pub fn serve_rows(&self, source: RowsSource) {
        let _ = self.transport.rows.set(source);
    }

    /// A handle that asks peers for their rows over membership's connections.
    pub fn rows(&self) -> Rows {
        Rows(self.transport.clone())
    }
}

/// Asks peer hosts for their rows over QUIC ([`Rows::fetch`]).
#[derive(Clone)]
pub struct Rows(Arc<Transport>);

impl Rows {
    /// The rows of `host`, whose node listens for QUIC at `to`.
    pub async fn fetch(&self, to: SocketAddr, host: &str) -> Result<v1::ListAgentsResponse, RowsError> {
        let failed = RowsError::Failed;
        let (conn, cert_host) = self.0.connection(to).await.map_err(failed)?;
        if !cert_host.eq_ignore_ascii_case(host) {
            return Err(failed(format!("the node at {to} is {cert_host}, not {host}")));
        }
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(format!("no rows stream: {e}")))?;
        send.write_all(&ROWS_ASK).await.map_err(|e| failed(format!("rows not asked: {e}")))?;
        let _ = send.finish();
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.map_err(|e| match e {
            // A node of this version that does not serve rows yet (it is starting).
            quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code)) if code == ROWS_UNSERVED.into() => {
                failed("the node does not serve rows yet".into())
            }
            e => RowsError::Unanswered(e.to_string()),
        })?;
        let len = rows_frame_len(prefix).map_err(failed)?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body).await.map_err(|e| failed(format!("rows answer of {len} bytes not read: {e}")))?;
        v1::ListAgentsResponse::decode(&body[..]).map_err(|e| failed(format!("rows answer does not decode: {e}")))
    }
}

/// Why [`Rows::fetch`] got no rows.
#[derive(Debug, PartialEq, Eq)]
pub enum RowsError {
    /// The node closed the stream without a word: an older node, which knows no rows
    /// stream (it reads the ask as a sync frame too long).
    Unanswered(String),
    /// No connection, a wrong host, a broken or oversized answer.
    Failed(String),
}

impl std::fmt::Display for RowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowsError::Unanswered(e) => write!(f, "rows stream closed unanswered (an older node?): {e}"),
            RowsError::Failed(e) => f.write_str(e),
        }
    }
}

/// The length a rows answer's prefix declares, if it is not over [`ROWS_MAX_FRAME`].
pub fn rows_frame_len(prefix: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > ROWS_MAX_FRAME {
        return Err(format!("rows answer of {len} bytes refused (at most {ROWS_MAX_FRAME})"));
    }
    Ok(len)
}

/// A rows answer: the length prefix, then the response.
pub fn encode_rows(resp: &v1::ListAgentsResponse) -> Bytes {
    let len = resp.encoded_len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    resp.encode(&mut out).expect("a Vec grows");
    Bytes::from(out)
}

impl Transport {
    /// Answer a rows stream (its [`ROWS_ASK`] already read).
    pub(super) async fn answer_rows(&self, send: &mut quinn::SendStream) -> Result<(), String> {
        let Some(source) = self.rows.get() else {
            let _ = send.reset(ROWS_UNSERVED.into());
            return Err("rows asked before this node serves them".into());
        };
        let answer = encode_rows(&source());
        send.write_all(&answer).await.map_err(|e| format!("rows answer not sent: {e}"))?;
        let _ = send.finish();
        Ok(())
    }
}

/// The stream error code of a rows stream asked before this node serves rows.
const ROWS_UNSERVED: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_answer_is_its_length_then_the_response() {
        let resp = v1::ListAgentsResponse { state_generation: 7, state_version: 3, ..Default::default() };
        let frame = encode_rows(&resp);
        let len = rows_frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(v1::ListAgentsResponse::decode(&frame[4..]).unwrap(), resp);
    }

    #[test]
    fn a_rows_answer_is_capped_and_never_read_as_a_sync() {
        assert!(rows_frame_len((ROWS_MAX_FRAME as u32).to_be_bytes()).is_ok());
        assert!(rows_frame_len((ROWS_MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
        // An older node reads the ask as a sync frame's length: far over the limit.
        assert!(sync_frame_len(ROWS_ASK).is_err());
    }
}
