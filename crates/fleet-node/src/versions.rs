//! State versions, spread by SWIM gossip: each node numbers the states of its
//! host that peers replicate (a new number whenever an agent row or the host
//! row changes in a way a peer would show) and announces `(host, generation,
//! version)` as a foca custom broadcast. Every node thus learns, within a few
//! gossip rounds and at a cost that does not grow with the mesh, which hosts
//! changed; it then asks each such host itself for its rows
//! ([`crate::replica`]), over mutual TLS, so a version heard from anyone can
//! make a node ask, but only the host's own answer is ever shown.
//!
//! A version that the host itself contradicts (it answers with an older one
//! of the same generation: a forged or garbled announcement) is set aside by
//! the replica, never believed.

use foca::{BroadcastHandler, Invalidates};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What a host announced last: `(generation, version)`.
pub type Stamp = (u64, u64);

/// The newest stamp heard per host.
pub type Book = HashMap<String, Stamp>;

/// One announcement: the key foca keeps while it spreads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub host: String,
    pub stamp: Stamp,
}

impl Invalidates for Announced {
    /// A newer stamp of the same host replaces an older one still spreading.
    fn invalidates(&self, other: &Self) -> bool {
        self.host == other.host && self.stamp > other.stamp
    }
}

/// The longest host name (a DNS label).
const HOST_MAX: usize = 63;

/// `host` (one length byte and the name), generation and version (big endian).
pub fn encode(host: &str, stamp: Stamp) -> Vec<u8> {
    let name = &host.as_bytes()[..host.len().min(HOST_MAX)];
    let mut out = Vec::with_capacity(1 + name.len() + 16);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&stamp.0.to_be_bytes());
    out.extend_from_slice(&stamp.1.to_be_bytes());
    out
}

/// The announcement in `data`, which must be exactly one.
pub fn decode(data: &[u8]) -> Result<Announced, std::io::Error> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("state version: {what}"));
    let (&len, rest) = data.split_first().ok_or_else(|| bad("empty"))?;
    let len = usize::from(len);
    if len == 0 || len > HOST_MAX || rest.len() != len + 16 {
        return Err(bad("wrong length"));
    }
    let host = std::str::from_utf8(&rest[..len]).map_err(|_| bad("host name is not UTF-8"))?;
    let number = |at: usize| u64::from_be_bytes(rest[at..at + 8].try_into().expect("8 bytes"));
    Ok(Announced { host: host.to_ascii_lowercase(), stamp: (number(len), number(len + 8)) })
}

/// Is `stamp` news for a book that holds `known` for its host?
pub fn is_news(known: Option<Stamp>, stamp: Stamp) -> bool {
    known.is_none_or(|k| stamp > k)
}

/// The broadcast handler: keeps the book, spreads only news.
pub struct Handler {
    pub book: Arc<Mutex<Book>>,
    pub tx: watch::Sender<Book>,
}

impl<T> BroadcastHandler<T> for Handler {
    type Key = Announced;
    type Error = std::io::Error;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&T>) -> Result<Option<Announced>, std::io::Error> {
        let a = decode(data)?;
        let mut book = self.book.lock().expect("book");
        if !is_news(book.get(&a.host).copied(), a.stamp) {
            return Ok(None);
        }
        book.insert(a.host.clone(), a.stamp);
        self.tx.send_replace(book.clone());
        Ok(Some(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_round_trips_and_nothing_else_decodes() {
        let data = encode("Dragon-Lin", (7, 42));
        assert_eq!(decode(&data).unwrap(), Announced { host: "dragon-lin".into(), stamp: (7, 42) });
        assert!(decode(&[]).is_err());
        assert!(decode(&data[..data.len() - 1]).is_err(), "short");
        let mut long = data.clone();
        long.push(0);
        assert!(decode(&long).is_err(), "trailing bytes");
        let mut zero = data.clone();
        zero[0] = 0;
        assert!(decode(&zero).is_err(), "no host");
        let nameless: Vec<u8> = std::iter::once(0).chain([0; 16]).collect();
        assert!(decode(&nameless).is_err(), "no host, and the length adds up");
        let too_long: Vec<u8> = std::iter::once(64).chain([b'x'; 64]).chain([0; 16]).collect();
        assert!(decode(&too_long).is_err(), "a name longer than a label, and the length adds up");
        let longest: Vec<u8> = std::iter::once(63).chain([b'x'; 63]).chain([0; 16]).collect();
        assert_eq!(decode(&longest).unwrap().host.len(), 63);
        let mut bad = encode("ab", (1, 1));
        bad[1] = 0xff;
        assert!(decode(&bad).is_err(), "not UTF-8");
        let huge = encode(&"x".repeat(200), (1, 1));
        assert_eq!(decode(&huge).unwrap().host.len(), HOST_MAX, "a long name is cut to a label's length");
    }

    #[test]
    fn only_a_newer_stamp_is_news_and_replaces_the_older() {
        assert!(is_news(None, (1, 0)));
        assert!(is_news(Some((1, 4)), (1, 5)));
        assert!(!is_news(Some((1, 5)), (1, 5)), "the same again");
        assert!(!is_news(Some((1, 5)), (1, 4)));
        assert!(is_news(Some((1, 5)), (2, 0)), "a restart starts again from 0");
        assert!(!is_news(Some((2, 0)), (1, 9)), "an older run");
        let a = |h: &str, s| Announced { host: h.into(), stamp: s };
        assert!(a("b", (1, 5)).invalidates(&a("b", (1, 4))));
        assert!(!a("b", (1, 4)).invalidates(&a("b", (1, 5))));
        assert!(!a("b", (1, 5)).invalidates(&a("b", (1, 5))));
        assert!(!a("c", (1, 5)).invalidates(&a("b", (1, 4))), "another host");
    }

    #[test]
    fn the_handler_keeps_and_spreads_news_only() {
        let (tx, rx) = watch::channel(Book::new());
        let mut h = Handler { book: Arc::new(Mutex::new(Book::new())), tx };
        let mut recv = |data: &[u8]| BroadcastHandler::<u8>::receive_item(&mut h, data, None);
        assert_eq!(recv(&encode("b", (1, 2))).unwrap(), Some(Announced { host: "b".into(), stamp: (1, 2) }));
        assert_eq!(recv(&encode("b", (1, 2))).unwrap(), None, "not spread again");
        assert_eq!(recv(&encode("b", (1, 1))).unwrap(), None);
        assert!(recv(b"\x05ab").is_err());
        assert_eq!(rx.borrow().get("b"), Some(&(1, 2)));
        assert!(recv(&encode("c", (3, 0))).unwrap().is_some());
        assert_eq!(rx.borrow().len(), 2);
    }
}
