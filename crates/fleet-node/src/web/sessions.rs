//! Browser identities of the web door: one-time pairing codes and the sessions they become.
//!
//! A pairing code is 16 random bytes (ring's system RNG), shown once, kept only as its
//! SHA-256, compared in constant time, removed on first use and refused after its TTL. A
//! session token (the cookie) is 32 random bytes, also kept only as its SHA-256: the
//! sessions file (`$MOSAIC_HOME/fleet/web-sessions.json`, 0600, written atomically) lets
//! sessions survive a restart of the node without holding anything a thief could present.
//!
//! The store is plain state: every method takes `now` (ms since the Unix epoch), so the
//! rules are tested without clocks.

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a session may do: a viewer lists and watches; an operator also sends, starts, stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// The certificate kind whose rights this role has (fleet_tls::authz's table).
    pub fn kind(self) -> fleet_tls::Kind {
        match self {
            Role::Viewer => fleet_tls::Kind::Viewer,
            Role::Operator => fleet_tls::Kind::Operator,
        }
    }
}

type Hash = [u8; 32];

fn sha256(text: &str) -> Hash {
    digest(&SHA256, text.as_bytes()).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Equal digests, in time that does not depend on where they differ.
fn same(a: &Hash, b: &Hash) -> bool {
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn random_hex(rng: &SystemRandom, n: usize) -> String {
    let mut b = vec![0u8; n];
    rng.fill(&mut b).expect("the system random number generator failed");
    hex(&b)
}

/// One paired browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Short handle to list and revoke it by (the first 12 hex digits of the token's hash).
    pub id: String,
    pub label: String,
    pub role: Role,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub last_used_ms: i64,
    token: Hash,
}

struct Code {
    hash: Hash,
    label: String,
    role: Role,
    expires_ms: i64,
    session_ttl_ms: i64,
}

/// Why a pairing code was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("this pairing link is not valid (already used, or never issued): run `fleet web pair` for a new one")]
    Unknown,
    #[error("this pairing link expired: run `fleet web pair` for a new one")]
    Expired,
}

/// Pairing codes and sessions, with the file sessions are kept in.
pub struct Store {
    codes: Vec<Code>,
    sessions: Vec<Session>,
    file: Option<PathBuf>,
    rng: SystemRandom,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileForm {
    version: u32,
    sessions: Vec<FileSession>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FileSession {
    id: String,
    token_sha256: String,
    label: String,
    role: Role,
    created_unix_ms: i64,
    expires_unix_ms: i64,
    last_used_unix_ms: i64,
}

/// Codes stay this long past their expiry, so that a late click hears "expired", not "unknown".
const EXPIRED_KEPT_MS: i64 = 3_600_000;

impl Store {
    /// An empty store that keeps nothing on disk.
    pub fn in_memory() -> Store {
        Store { codes: Vec::new(), sessions: Vec::new(), file: None, rng: SystemRandom::new() }
    }

    /// The sessions kept in `file` (none when it does not exist), and what was wrong with it
    /// if it could not be read (the store then starts empty and overwrites it on the next change).
    pub fn load(file: &Path, now: i64) -> (Store, Option<String>) {
        let mut store = Store { file: Some(file.to_path_buf()), ..Store::in_memory() };
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (store, None),
            Err(e) => return (store, Some(format!("cannot read {}: {e}", file.display()))),
        };
        let form: FileForm = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(e) => return (store, Some(format!("{} is not a sessions file ({e}); starting empty", file.display()))),
        };
        store.sessions = form
            .sessions
            .into_iter()
            .filter(|s| s.expires_unix_ms > now)
            .filter_map(|s| {
                Some(Session {
                    token: unhex(&s.token_sha256)?,
                    id: s.id,
                    label: s.label,
                    role: s.role,
                    created_ms: s.created_unix_ms,
                    expires_ms: s.expires_unix_ms,
                    last_used_ms: s.last_used_unix_ms,
                })
            })
            .collect();
        (store, None)
    }

    fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let form = FileForm {
            version: 1,
            sessions: self
                .sessions
                .iter()
                .map(|s| FileSession {
                    id: s.id.clone(),
                    token_sha256: hex(&s.token),
                    label: s.label.clone(),
                    role: s.role,
                    created_unix_ms: s.created_ms,
                    expires_unix_ms: s.expires_ms,
                    last_used_unix_ms: s.last_used_ms,
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&form).map_err(std::io::Error::other)?;
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    }

    fn save_logged(&self) {
        if let Err(e) = self.save() {
            let file = self.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
            tracing::error!(file = %file, error = %e, "cannot write the web sessions file; sessions live until the node stops");
        }
    }

    /// A new pairing code for a browser `label` with `role`, valid until `now + link_ttl_ms`;
    /// the session it becomes lasts `session_ttl_ms`.
    pub fn pair(&mut self, role: Role, label: &str, link_ttl_ms: i64, session_ttl_ms: i64, now: i64) -> String {
        self.codes.retain(|c| c.expires_ms + EXPIRED_KEPT_MS > now);
        let code = random_hex(&self.rng, 16);
        self.codes.push(Code {
            hash: sha256(&code),
            label: label.to_string(),
            role,
            expires_ms: now + link_ttl_ms,
            session_ttl_ms,
        });
        code
    }

    /// Exchange a pairing code, once, for a session: its cookie token and the session.
    pub fn redeem(&mut self, code: &str, now: i64) -> Result<(String, Session), RedeemError> {
        let h = sha256(code);
        // Every code is compared, matched or not.
        let mut found = None;
        for (i, c) in self.codes.iter().enumerate() {
            if same(&c.hash, &h) {
                found = Some(i);
            }
        }
        let c = self.codes.remove(found.ok_or(RedeemError::Unknown)?);
        if c.expires_ms <= now {
            return Err(RedeemError::Expired);
        }
        let token = random_hex(&self.rng, 32);
        let hash = sha256(&token);
        let session = Session {
            id: hex(&hash[..6]),
            label: c.label,
            role: c.role,
            created_ms: now,
            expires_ms: now + c.session_ttl_ms,
            last_used_ms: now,
            token: hash,
        };
        self.sessions.push(session.clone());
        self.save_logged();
        Ok((token, session))
    }

    /// The live session whose cookie is `token`, marked used at `now`.
    pub fn check(&mut self, token: &str, now: i64) -> Option<Session> {
        let h = sha256(token);
        let mut found = None;
        for (i, s) in self.sessions.iter().enumerate() {
            if same(&s.token, &h) {
                found = Some(i);
            }
        }
        let s = &mut self.sessions[found?];
        if s.expires_ms <= now {
            return None;
        }
        s.last_used_ms = now;
        Some(s.clone())
    }

    /// The sessions that have not expired.
    pub fn list(&mut self, now: i64) -> Vec<Session> {
        let before = self.sessions.len();
        self.sessions.retain(|s| s.expires_ms > now);
        if self.sessions.len() != before {
            self.save_logged();
        }
        self.sessions.clone()
    }

    /// End the session with id `what`, or every session labelled `what`; the ended ones.
    pub fn revoke(&mut self, what: &str) -> Vec<Session> {
        let (gone, kept): (Vec<Session>, Vec<Session>) =
            self.sessions.drain(..).partition(|s| s.id == what || s.label == what);
        self.sessions = kept;
        if !gone.is_empty() {
            self.save_logged();
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn a_code_works_once_and_not_after_its_ttl() {
        let mut s = Store::in_memory();
        let code = s.pair(Role::Viewer, "laptop", 10 * MIN, 60 * MIN, 0);
        assert_eq!(code.len(), 32);
        assert_eq!(s.redeem("0123", 1), Err(RedeemError::Unknown));
        let (token, session) = s.redeem(&code, 1).unwrap();
        assert_eq!((session.label.as_str(), session.role, session.expires_ms), ("laptop", Role::Viewer, 1 + 60 * MIN));
        assert_eq!(s.redeem(&code, 2), Err(RedeemError::Unknown));
        assert_eq!(s.check(&token, 5).unwrap().last_used_ms, 5);
        assert!(s.check(&token, 1 + 60 * MIN).is_none(), "expired session");
        assert!(s.check("nope", 5).is_none());

        let late = s.pair(Role::Operator, "phone", 10 * MIN, 60 * MIN, 0);
        assert_eq!(s.redeem(&late, 10 * MIN), Err(RedeemError::Expired));
        assert_eq!(s.redeem(&late, 10 * MIN), Err(RedeemError::Unknown));
        assert_ne!(s.pair(Role::Viewer, "a", MIN, MIN, 0), s.pair(Role::Viewer, "a", MIN, MIN, 0));
    }

    #[test]
    fn revoke_by_id_or_label() {
        let mut s = Store::in_memory();
        let mut tokens = Vec::new();
        for label in ["a", "a", "b"] {
            let code = s.pair(Role::Operator, label, MIN, MIN, 0);
            tokens.push(s.redeem(&code, 0).unwrap());
        }
        assert_eq!(s.revoke(&tokens[2].1.id).len(), 1);
        assert!(s.check(&tokens[2].0, 1).is_none());
        assert_eq!(s.revoke("a").len(), 2);
        assert!(s.list(1).is_empty());
        assert!(s.revoke("a").is_empty());
    }

    #[test]
    fn sessions_survive_in_a_private_file_that_holds_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web-sessions.json");
        let (mut s, problem) = Store::load(&file, 0);
        assert!(problem.is_none());
        let code = s.pair(Role::Operator, "laptop", MIN, 10 * MIN, 0);
        let (token, _) = s.redeem(&code, 0).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&token) && text.contains(&hex(&sha256(&token))), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let (mut again, problem) = Store::load(&file, 1);
        assert!(problem.is_none());
        assert_eq!(again.check(&token, 1).unwrap().label, "laptop");
        // Expired sessions are not loaded.
        let (mut later, _) = Store::load(&file, 10 * MIN);
        assert!(later.check(&token, 10 * MIN).is_none());
        std::fs::write(&file, "{").unwrap();
        assert!(Store::load(&file, 0).1.unwrap().contains("is not a sessions file"));
    }
}
