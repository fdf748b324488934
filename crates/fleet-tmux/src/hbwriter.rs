//! Writing protocol-v1 heartbeats: atomically (tmp file + rename), for as
//! long as the watched process lives.

use fleet_core::heartbeat::{BeatStatus, Heartbeat, Timestamp};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Write one heartbeat. A reader sees the old file or the new one, never half.
pub fn write_heartbeat(path: &Path, pid: u32, status: BeatStatus) -> std::io::Result<()> {
    let hb = Heartbeat { ts: Timestamp::from_unix(now_unix()), pid, status };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".hb-").tempfile_in(dir)?;
    tmp.write_all(hb.render().as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The start time of a live process (clock ticks since boot), to tell a
/// process from a later one that reuses its pid. `None` for a process that is
/// gone or a zombie (exited, not yet reaped).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Write a heartbeat for `pid` every `interval` until that process is gone
/// (checked every second, so the writer ends promptly with its pane).
pub fn run_writer(path: &Path, pid: u32, interval: Duration) -> std::io::Result<()> {
    let born = process_start_time(pid);
    let alive = || born.is_some() && process_start_time(pid) == born;
    let tick = Duration::from_secs(1).min(interval);
    // The first beat only once the program has lived a tick: a runtime that
    // fails at start must never look healthy.
    let mut next = std::time::Instant::now() + tick;
    loop {
        std::thread::sleep(tick);
        if !alive() {
            return Ok(());
        }
        if std::time::Instant::now() >= next {
            write_heartbeat(path, pid, BeatStatus::Ok)?;
            next += interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::heartbeat::{Health, assess};

    #[test]
    fn written_heartbeats_read_back_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/a.hb");
        write_heartbeat(&path, 42, BeatStatus::Busy).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let r = assess(Some(&text), now_unix(), 15);
        assert_eq!(r.health, Health::Healthy);
        assert_eq!(r.pid, Some(42));
        assert_eq!(std::fs::read_dir(dir.path().join("run")).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn the_writer_stops_with_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.hb");
        let mut child = std::process::Command::new("sleep").arg("1.5").spawn().unwrap();
        let pid = child.id();
        let t = std::time::Instant::now();
        run_writer(&path, pid, Duration::from_millis(200)).unwrap();
        child.wait().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(path.exists());
        assert!(process_start_time(std::process::id()).is_some());
    }
}
