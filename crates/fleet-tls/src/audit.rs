//! The audit log: one JSON object per line, appended to a file only its owner can read.
//!
//! ```json
//! {"time":"2026-05-01T12:00:00Z","principal":"operator:alice@acme","peer":"10.0.0.7:51234","verb":"send","target":"coder0-0@h1","outcome":"delivered"}
//! ```
//!
//! Fields: `time` (RFC 3339, UTC, whole seconds), `principal`, `peer` (the remote address,
//! or e.g. `local` for the Unix socket), `verb`, `target`, `outcome` (`denied` for a denial,
//! else the request's result) and, when there is one, `detail`.
//!
//! **Why lines never interleave.** The file is opened with `O_APPEND`, and each line,
//! newline included, is built in one buffer and handed to the kernel in one `write(2)`.
//! With `O_APPEND` the kernel moves the offset to the end and writes the buffer as one
//! step under the inode lock, so concurrent writers, threads or processes, each land
//! whole lines one after another (this holds for regular files on Linux whatever the
//! length; PIPE_BUF only concerns pipes). A line is short, so a regular file takes it in
//! one call; should the kernel ever accept only part of it (a full disk), `write_all`
//! continues it and the failure, if any, is reported.
//!
//! **Failures are never silent.** [`AuditLog::append`] returns the error and counts it in
//! [`AuditLog::failures`], which the node logs and exposes as a metric.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use time::OffsetDateTime;

use crate::authz::{Denied, Verb};
use crate::show::rfc3339;

/// The `outcome` of a denied request.
pub const DENIED: &str = "denied";

/// One audited event. `time` is added when it is written.
#[derive(Clone, Copy, Debug)]
pub struct AuditEvent<'a> {
    /// Who asked: a principal (`operator:alice@acme`), or the local door's caller.
    pub principal: &'a str,
    /// Where from: the peer's address.
    pub peer: &'a str,
    pub verb: Verb,
    /// What it was aimed at: `agent@host`, a host, or empty.
    pub target: &'a str,
    /// `denied`, or the result of the request (`delivered`, `started`, `failed`, ...).
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    principal: &'a str,
    peer: &'a str,
    verb: &'a str,
    target: &'a str,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// Why the audit log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit log {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot write audit log {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An append-only JSON-lines audit log, shared by all request handlers (`&self`).
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    appended: AtomicU64,
    failures: AtomicU64,
}

impl AuditLog {
    /// Open (or create, mode 0600 from the first byte) the log at `path` for appending; its
    /// dir must exist. An existing log that others may read is narrowed to 0600.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let open_err = |source| AuditError::Open { path: path.to_path_buf(), source };
        let file = OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if !meta.is_file() {
            return Err(AuditError::NotAFile { path: path.to_path_buf() });
        }
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(open_err)?;
        }
        Ok(AuditLog::from_file(file, path.to_path_buf()))
    }

    /// Wrap an already open file (opened for appending). Tests use it to write to a device
    /// that fails.
    pub fn from_file(file: File, path: PathBuf) -> AuditLog {
        AuditLog { file, path, appended: AtomicU64::new(0), failures: AtomicU64::new(0) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines written since open.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Lines that could not be written since open.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Append one line, in one write. On failure the error is returned and counted.
    pub fn append(&self, event: &AuditEvent<'_>) -> Result<(), AuditError> {
        let buf = line(event, OffsetDateTime::now_utc());
        match (&self.file).write_all(&buf) {
            Ok(()) => {
                self.appended.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(source) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(AuditError::Write { path: self.path.clone(), source })
            }
        }
    }

    /// Append a denial: principal and verb from `denied`, its message as `detail`.
    pub fn append_denied(&self, denied: &Denied, peer: &str, target: &str) -> Result<(), AuditError> {
        let principal = denied.principal.to_string();
        let detail = denied.to_string();
        self.append(&AuditEvent {
            principal: &principal,
            peer,
            verb: denied.verb,
            target,
            outcome: DENIED,
            detail: Some(&detail),
        })
    }
}

/// One line, newline included.
pub fn line(event: &AuditEvent<'_>, time: OffsetDateTime) -> Vec<u8> {
    let l = Line {
        time: rfc3339(time),
        principal: event.principal,
        peer: event.peer,
        verb: event.verb.as_str(),
        target: event.target,
        outcome: event.outcome,
        detail: event.detail,
    };
    // Serializing a struct of strings into a Vec cannot fail; JSON escapes any newline
    // inside a field, so the only newline is the last byte.
    let mut buf = serde_json::to_vec(&l).unwrap_or_default();
    buf.push(b'\n');
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::authorize;
    use crate::principal::{Kind, Principal};
    use fleet_core::names::DnsLabel;
    use std::sync::Arc;

    fn event<'a>(principal: &'a str, target: &'a str) -> AuditEvent<'a> {
        AuditEvent { principal, peer: "127.0.0.1:1", verb: Verb::Send, target, outcome: "delivered", detail: None }
    }

    #[test]
    fn created_0600_and_lines_are_json() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        log.append(&AuditEvent { detail: Some("two\nlines"), ..event("operator:a@acme", "c@h1") }).unwrap();
        let p = Principal::new(DnsLabel::parse_as("t", "acme").unwrap(), Kind::Viewer, "v").unwrap();
        let denied = authorize(&DnsLabel::parse_as("t", "acme").unwrap(), &p, Verb::Start).unwrap_err();
        log.append_denied(&denied, "127.0.0.1:2", "c@h1").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["verb"], "send");
        assert_eq!(lines[0]["detail"], "two\nlines");
        assert_eq!(lines[1]["outcome"], "denied");
        assert_eq!(lines[1]["principal"], "viewer:v@acme");
        assert_eq!(lines[1]["verb"], "start");
        assert!(lines[1]["detail"].as_str().unwrap().contains("may not start"));
        let t = lines[0]["time"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
        assert_eq!(log.appended(), 2);

        // Reopen appends; a log others could read is narrowed to 0600.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        log.append(&event("x", "y")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        assert!(matches!(AuditLog::open(tmp.path()), Err(AuditError::NotAFile { .. } | AuditError::Open { .. })));
    }

    #[test]
    fn concurrent_writers_never_interleave() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.log");
        // Two handles on one file, as two processes would have, plus threads on each.
        let logs = [Arc::new(AuditLog::open(&path).unwrap()), Arc::new(AuditLog::open(&path).unwrap())];
        let (threads, per_thread) = (8, 250);
        let long = "x".repeat(3000);
        std::thread::scope(|s| {
            for t in 0..threads {
                let log = logs[t % 2].clone();
                let long = &long;
                s.spawn(move || {
                    for i in 0..per_thread {
                        let target = format!("agent{t}-{i}");
                        log.append(&AuditEvent { detail: Some(long), ..event("operator:a@acme", &target) }).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen = std::collections::HashSet::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
            assert_eq!(v["detail"].as_str().unwrap().len(), 3000);
            assert!(seen.insert(v["target"].as_str().unwrap().to_string()));
        }
        assert_eq!(seen.len(), threads * per_thread);
        assert_eq!(logs[0].appended() + logs[1].appended(), (threads * per_thread) as u64);
        assert_eq!(logs[0].failures() + logs[1].failures(), 0);
    }

    #[test]
    fn a_failed_write_is_returned_and_counted() {
        // /dev/full fails every write with ENOSPC.
        let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let log = AuditLog::from_file(file, "/dev/full".into());
        let e = log.append(&event("a", "b")).unwrap_err();
        assert!(matches!(&e, AuditError::Write { source, .. } if source.raw_os_error() == Some(28)), "{e:?}");
        assert!(log.append(&event("a", "b")).is_err());
        assert_eq!(log.failures(), 2);
        assert_eq!(log.appended(), 0);
    }
}
