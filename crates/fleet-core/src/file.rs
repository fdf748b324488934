//! The one way fleet reads a file: bounded, and only a regular file.
//!
//! This is the single piece of I/O in the domain crate, on purpose: every
//! crate that reads a file (fleet-tls its certificates and CRL, fleet-tmux the
//! heartbeats, fleet-node the roster and node.yaml, fleet-cli the roster and
//! message files) depends on fleet-core and on nothing else they share, and a
//! crate of its own for one function would cost more than it separates. It
//! decides nothing: it hands the bytes to the pure parsers here.
//!
//! A file that is a symlink to `/dev/zero` or `/dev/urandom` would be read
//! forever, a FIFO would block its reader until someone writes, and merely
//! opening some devices does something (`/dev/watchdog` arms the watchdog,
//! opening a FIFO wakes a writer waiting for a reader). So the path is
//! `stat`ed first and a device, FIFO, socket or directory is refused without
//! being opened; a regular file is then opened with `O_NONBLOCK` (should it
//! have been swapped for a FIFO meanwhile, the open does not block) and the
//! open file is `fstat`ed again, so that what is read is a regular file
//! whatever was renamed in between; and at most `cap + 1` bytes are read: a
//! larger file is refused, never truncated. A symlink to a regular file is
//! read as that file.

use rustix::fs::{FileType, Mode, OFlags};
use std::io::{self, Read};
use std::path::Path;

/// The limit for a roster (`roster.yaml`): real ones are a few KiB.
pub const ROSTER_MAX: u64 = 1024 * 1024;
/// The limit for `node.yaml`.
pub const CONFIG_MAX: u64 = 1024 * 1024;
/// The limit for a heartbeat file (three short lines).
pub const HEARTBEAT_MAX: u64 = 4 * 1024;
/// The limit for a PEM certificate or key file.
pub const PEM_MAX: u64 = 1024 * 1024;
/// The limit for the mesh CRL (grows with every revocation: ~40 bytes each).
pub const CRL_MAX: u64 = 16 * 1024 * 1024;

/// What a file that is not a regular file is, for the error.
fn kind_of(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "not a regular file",
    }
}

/// Read `path` whole if it is a regular file of at most `cap` bytes.
///
/// Errors are `io::Error`s that callers wrap with the path: `NotFound` stays
/// `NotFound`; a non-regular file is `InvalidInput` ("is a FIFO (named pipe),
/// not a regular file ..."); a larger file is `FileTooLarge`.
pub fn read(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    // Never open what is not a regular file: the open itself can act.
    regular(rustix::fs::stat(path)?.st_mode)?;
    let fd =
        rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())?;
    // The path may name another file by now (a rename): check what was opened.
    let stat = rustix::fs::fstat(&fd)?;
    regular(stat.st_mode)?;
    let mut file = std::fs::File::from(fd);
    let mut out = Vec::with_capacity((stat.st_size.max(0) as u64).min(cap) as usize + 1);
    (&mut file).take(cap.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("it is larger than {} (the limit for this file)", human(cap)),
        ));
    }
    Ok(out)
}

/// `Ok` for a regular file's mode, else the error that says what it is.
fn regular(mode: rustix::fs::RawMode) -> io::Result<()> {
    let kind = FileType::from_raw_mode(mode);
    if kind == FileType::RegularFile {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "it is {}, not a regular file (fleet reads only regular files; a symlink to one is fine)",
            kind_of(kind)
        ),
    ))
}

/// [`read`], as UTF-8 text (`InvalidData` if it is not).
pub fn read_to_string(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read(path, cap)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("it is not UTF-8 text ({e})")))
}

/// A byte count for messages: `4 KiB`, `1 MiB`, `100 bytes`.
fn human(n: u64) -> String {
    match n {
        n if n >= 1024 * 1024 && n % (1024 * 1024) == 0 => format!("{} MiB", n / (1024 * 1024)),
        n if n >= 1024 && n % 1024 == 0 => format!("{} KiB", n / 1024),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fleet-core-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Run `f` on a thread; fail (instead of hanging the suite) if it takes over 5 s.
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("the read blocked for 5 s")
    }

    #[test]
    fn a_regular_file_and_a_symlink_to_one_are_read() {
        let d = dir();
        std::fs::write(d.join("r"), "abc").unwrap();
        std::os::unix::fs::symlink(d.join("r"), d.join("l")).unwrap();
        assert_eq!(read(&d.join("r"), 3).unwrap(), b"abc");
        assert_eq!(read_to_string(&d.join("l"), 3).unwrap(), "abc");
        assert_eq!(read(&d.join("missing"), 3).unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_over_the_cap_is_refused_not_truncated() {
        let d = dir();
        std::fs::write(d.join("r"), "abcd").unwrap();
        let e = read(&d.join("r"), 3).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("larger than 3 bytes"), "{e}");
        assert!(human(4096).contains("4 KiB") && human(1 << 20).contains("1 MiB"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn devices_fifos_sockets_and_dirs_are_refused_at_once() {
        let d = dir();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero")).unwrap();
        std::os::unix::fs::symlink("/dev/urandom", d.join("urandom")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, d.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        let cases = [
            ("zero", "character device"),
            ("urandom", "character device"),
            ("fifo", "FIFO"),
            ("sock", "socket"),
            (".", "directory"),
        ];
        for (name, what) in cases {
            let p = d.join(name);
            let start = Instant::now();
            let e = within_5s(move || read(&p, 1 << 20)).unwrap_err();
            assert!(start.elapsed() < Duration::from_secs(1), "{name} took {:?}", start.elapsed());
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name}: {e}");
            assert!(e.to_string().contains(what) && e.to_string().contains("not a regular file"), "{name}: {e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn what_is_not_a_regular_file_is_never_opened() {
        // Opening a FIFO for reading wakes a writer blocked in open(2): an
        // observable side effect of an open, as arming /dev/watchdog is.
        let d = dir();
        let fifo = d.join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let w = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(std::fs::OpenOptions::new().write(true).open(&w).map(drop));
        });
        // Give the writer time to block in its open.
        std::thread::sleep(Duration::from_millis(100));
        let e = read(&fifo, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let woken = rx.recv_timeout(Duration::from_millis(500));
        // Release the writer (a reader of our own), whatever happened.
        let _unblock = rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
        assert!(woken.is_err(), "read opened the FIFO: its writer's open returned {woken:?}");
        rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
