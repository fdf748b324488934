//! Heartbeat protocol v1 (CONTEXT.md): `<run_dir>/<agent>.hb`, three lines
//! `ts=`, `pid=`, `status=`, rewritten atomically every interval by the
//! agent's launcher. Health is `healthy` when `now - ts <= 3 x interval`,
//! `stale` when older, `unknown` when there is no readable file.
//!
//! Everything here is pure: the caller reads the file and the clock.

use crate::record::PaneState;
use std::fmt;
use std::path::{Path, PathBuf};

/// Default heartbeat interval, seconds.
pub const DEFAULT_INTERVAL_SECS: u64 = 15;

/// A parsed heartbeat file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub ts: Timestamp,
    pub pid: u32,
    pub status: BeatStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BeatStatus {
    Ok,
    Busy,
}

impl BeatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BeatStatus::Ok => "ok",
            BeatStatus::Busy => "busy",
        }
    }
}

/// A point in time as written in a heartbeat: Unix seconds plus the offset
/// the writer used, so it can be shown as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    pub unix: i64,
    /// Offset from UTC in minutes.
    pub offset_min: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Stale,
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Stale => "stale",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of one agent, as `fleet ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    pub health: Health,
    /// Seconds since the heartbeat's ts (negative if it is in the future).
    pub age_seconds: Option<i64>,
    /// The ts in RFC 3339.
    pub ts: Option<String>,
    pub pid: Option<u32>,
    pub status: Option<BeatStatus>,
    /// Why the health is unknown.
    pub reason: Option<String>,
    pub interval_seconds: u64,
}

impl HealthReport {
    pub fn unknown(reason: impl Into<String>, interval_seconds: u64) -> Self {
        HealthReport {
            health: Health::Unknown,
            age_seconds: None,
            ts: None,
            pid: None,
            status: None,
            reason: Some(reason.into()),
            interval_seconds,
        }
    }
}

/// Why a heartbeat text could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty heartbeat file")]
    Empty,
    #[error("line {line}: expected key=value, found {text:?}")]
    NotKeyValue { line: usize, text: String },
    #[error("missing {0}= line (half-written file?)")]
    Missing(&'static str),
    #[error("bad ts {0:?}: expected ISO-8601 like 2026-06-21T18:31:19-0500")]
    BadTs(String),
    #[error("bad pid {0:?}")]
    BadPid(String),
    #[error("bad status {0:?}: expected ok or busy")]
    BadStatus(String),
}

impl Heartbeat {
    /// Parse the text of a `.hb` file. Unknown keys are ignored (a newer
    /// writer may add some); the three v1 keys are required.
    pub fn parse(text: &str) -> Result<Heartbeat, ParseError> {
        if text.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        let (mut ts, mut pid, mut status) = (None, None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(ParseError::NotKeyValue { line: i + 1, text: truncate(line) });
            };
            let v = v.trim();
            match k.trim() {
                "ts" => ts = Some(Timestamp::parse(v).ok_or_else(|| ParseError::BadTs(truncate(v)))?),
                "pid" => pid = Some(v.parse::<u32>().map_err(|_| ParseError::BadPid(truncate(v)))?),
                "status" => {
                    status = Some(match v {
                        "ok" => BeatStatus::Ok,
                        "busy" => BeatStatus::Busy,
                        _ => return Err(ParseError::BadStatus(truncate(v))),
                    })
                }
                _ => {}
            }
        }
        Ok(Heartbeat {
            ts: ts.ok_or(ParseError::Missing("ts"))?,
            pid: pid.ok_or(ParseError::Missing("pid"))?,
            status: status.ok_or(ParseError::Missing("status"))?,
        })
    }

    /// The file text, as a writer of protocol v1 writes it.
    pub fn render(&self) -> String {
        format!("ts={}\npid={}\nstatus={}\n", self.ts.to_iso_compact(), self.pid, self.status.as_str())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Judge health from a file's text (or its absence) at `now` (Unix seconds).
pub fn assess(text: Option<&str>, now_unix: i64, interval_secs: u64) -> HealthReport {
    let Some(text) = text else {
        return HealthReport::unknown("no heartbeat file", interval_secs);
    };
    match Heartbeat::parse(text) {
        Err(e) => HealthReport::unknown(e.to_string(), interval_secs),
        Ok(hb) => assess_parsed(hb.ts, hb.pid, hb.status, now_unix, interval_secs),
    }
}

/// Judge a parsed heartbeat at `now` (Unix seconds): the 3x rule. A `ts`
/// more than one interval in the future is `unknown` (a skewed clock would
/// otherwise keep a dead agent healthy for as long as the skew); a smaller
/// lead is healthy, since writer and reader clocks never agree exactly.
pub fn assess_parsed(ts: Timestamp, pid: u32, status: BeatStatus, now_unix: i64, interval_secs: u64) -> HealthReport {
    let age = now_unix.saturating_sub(ts.unix);
    let interval = i64::try_from(interval_secs).unwrap_or(i64::MAX);
    let limit = interval.saturating_mul(3);
    let (health, reason) = if age < -interval {
        (Health::Unknown, Some(FUTURE_TS_REASON.to_string()))
    } else if age <= limit {
        (Health::Healthy, None)
    } else {
        (Health::Stale, None)
    };
    HealthReport {
        health,
        age_seconds: Some(age),
        ts: Some(ts.to_rfc3339()),
        pid: Some(pid),
        status: Some(status),
        reason,
        interval_seconds: interval_secs,
    }
}

/// The reason of a heartbeat whose `ts` is more than one interval ahead of now.
pub const FUTURE_TS_REASON: &str = "ts is in the future (clock skew?)";

/// A heartbeat only counts for a pane that is there:
/// - a beat that would be healthy beside a missing or dead pane is `unknown`
///   (it was written by a program that is gone: a stopped agent, a writer's
///   last beat); an old one stays `stale`;
/// - with `check_pid` (runtimes with launcher heartbeats: protocol v1 writes
///   the pane's pid), a beat whose pid is not the live pane's is an earlier
///   run's or a foreign writer's: `unknown`.
///
/// Such a report carries no `ts`/`pid`/`status` (the reason names what was
/// read), so re-judging a record from those fields as time passes can never
/// make it healthy again.
pub fn judge_with_pane(hb: HealthReport, pane: PaneState, pane_pid: Option<u32>, check_pid: bool) -> HealthReport {
    let age = hb.age_seconds.map(|a| format!("{a}s ago")).unwrap_or_else(|| "at an unknown time".into());
    let reason = match pane {
        PaneState::Missing | PaneState::Dead if hb.health == Health::Healthy => {
            Some(format!("the pane is {} (last beat {age})", pane.as_str()))
        }
        PaneState::Alive if check_pid && hb.health != Health::Unknown => match (hb.pid, pane_pid) {
            (Some(pid), Some(pane_pid)) if pid != pane_pid => {
                Some(format!("heartbeat pid {pid} is not the pane's pid {pane_pid} (an earlier or foreign writer)"))
            }
            _ => None,
        },
        _ => None,
    };
    match reason {
        Some(reason) => HealthReport::unknown(reason, hb.interval_seconds),
        None => hb,
    }
}

/// The environment that decides where heartbeats live.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatEnv {
    pub run_dir: Option<String>,
    pub mosaic_home: Option<String>,
    pub home: Option<String>,
    pub interval: Option<String>,
}

impl HeartbeatEnv {
    /// Read the four variables through `get` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        HeartbeatEnv {
            run_dir: nonempty("MOSAIC_HEARTBEAT_RUN_DIR"),
            mosaic_home: nonempty("MOSAIC_HOME"),
            home: nonempty("HOME"),
            interval: nonempty("MOSAIC_HEARTBEAT_INTERVAL"),
        }
    }

    /// `$MOSAIC_HOME`, default `~/.config/mosaic`.
    pub fn mosaic_home(&self) -> PathBuf {
        match (&self.mosaic_home, &self.home) {
            (Some(m), _) => PathBuf::from(m),
            (None, Some(h)) => Path::new(h).join(".config/mosaic"),
            (None, None) => PathBuf::from(".config/mosaic"),
        }
    }

    /// `$MOSAIC_HEARTBEAT_RUN_DIR`, else `$MOSAIC_HOME/fleet/run`.
    pub fn run_dir(&self) -> PathBuf {
        match &self.run_dir {
            Some(d) => PathBuf::from(d),
            None => self.mosaic_home().join("fleet/run"),
        }
    }

    /// `$MOSAIC_HEARTBEAT_INTERVAL` seconds, default 15. A value that is not a
    /// positive integer is an error naming the variable.
    pub fn interval_secs(&self) -> Result<u64, String> {
        match &self.interval {
            None => Ok(DEFAULT_INTERVAL_SECS),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("MOSAIC_HEARTBEAT_INTERVAL={v:?} is not a positive number of seconds")),
            },
        }
    }
}

/// `<run_dir>/<agent>.hb`.
pub fn heartbeat_path(run_dir: &Path, agent: &str) -> PathBuf {
    run_dir.join(format!("{agent}.hb"))
}

// ---------------------------------------------------------------- time

impl Timestamp {
    /// Parse `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|+HHMM|+HH)`; a space may
    /// stand for the `T`.
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
            return None;
        }
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            rest = &frac[digits..];
        }
        let offset_min = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let o = &rest[1..];
                // Byte offsets below: a non-ASCII byte would split a character.
                if !o.is_ascii() {
                    return None;
                }
                let (h, m) = match o.len() {
                    2 => (o, "00"),
                    4 => (&o[..2], &o[2..]),
                    5 if o.as_bytes()[2] == b':' => (&o[..2], &o[3..]),
                    _ => return None,
                };
                let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
                if h > 23 || m > 59 || !o.bytes().all(|c| c.is_ascii_digit() || c == b':') {
                    return None;
                }
                sign * (h * 60 + m)
            }
        };
        let days = days_from_civil(year, month, day);
        let local = days * 86_400 + hour * 3600 + min * 60 + sec.min(59);
        Some(Timestamp { unix: local - i64::from(offset_min) * 60, offset_min })
    }

    /// A UTC timestamp.
    pub fn from_unix(unix: i64) -> Timestamp {
        Timestamp { unix, offset_min: 0 }
    }

    fn parts(&self) -> (i64, i64, i64, i64, i64, i64) {
        let local = self.unix + i64::from(self.offset_min) * 60;
        let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
    }

    fn offset(&self, colon: bool) -> String {
        if self.offset_min == 0 && colon {
            return "Z".into();
        }
        let sign = if self.offset_min < 0 { '-' } else { '+' };
        let o = self.offset_min.abs();
        if colon { format!("{sign}{:02}:{:02}", o / 60, o % 60) } else { format!("{sign}{:02}{:02}", o / 60, o % 60) }
    }

    /// RFC 3339, e.g. `2026-06-21T18:31:19-05:00`.
    pub fn to_rfc3339(&self) -> String {
        let (y, mo, d, h, mi, s) = self.parts();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}", self.offset(true))
    }

    /// The form the existing launchers write: `2026-06-21T18:31:19-0500`.
    pub fn to_iso_compact(&self) -> String {
        let (y, mo, d, h, mi, s) = self.parts();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}", self.offset(false))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_782_084_679; // 2026-06-21T23:31:19Z

    #[test]
    fn timestamps_in_every_offset_form_agree() {
        for s in [
            "2026-06-21T18:31:19-0500",
            "2026-06-21T18:31:19-05:00",
            "2026-06-21T23:31:19Z",
            "2026-06-21T23:31:19.123456Z",
            "2026-06-22T01:01:19+0130",
            "2026-06-21 23:31:19+00",
        ] {
            assert_eq!(Timestamp::parse(s).map(|t| t.unix), Some(T0), "{s}");
        }
        let t = Timestamp::parse("2026-06-21T18:31:19-0500").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-06-21T18:31:19-05:00");
        assert_eq!(t.to_iso_compact(), "2026-06-21T18:31:19-0500");
        assert_eq!(Timestamp::from_unix(T0).to_rfc3339(), "2026-06-21T23:31:19Z");
        assert_eq!(Timestamp::from_unix(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_unix(0).to_iso_compact(), "1970-01-01T00:00:00+0000", "UTC is +0000, never -0000");
        assert_eq!(Timestamp::parse("2024-02-29T00:00:00Z").unwrap().to_rfc3339(), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn bad_timestamps_are_refused() {
        for s in [
            "",
            "2026-06-21",
            "2026-06-21T18:31:19",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-06-21T24:00:00Z",
            "2026-06-21T18:31:19+5",
            "2026-06-21T18:31:19-05:0",
            "2026-06-21T18:31:19 -0500",
            "yesterday at noon, really",
            // Separators, each on its own.
            "2026/06-21T23:31:19Z",
            "2026-06/21T23:31:19Z",
            "2026-06-21X23:31:19Z",
            "2026-06-21T23-31:19Z",
            "2026-06-21T23:31-19Z",
            // Each field's bounds.
            "2026-00-21T23:31:19Z",
            "2026-06-00T23:31:19Z",
            "2026-06-31T23:31:19Z",
            "2026-06-21T23:60:19Z",
            "2026-06-21T23:31:61Z",
            // Offsets: the colon form only with its colon, hours and minutes in range,
            // digits only (a sign in the hours or minutes parses as a number).
            "2026-06-21T18:31:19-05500",
            "2026-06-21T18:31:19+24:00",
            "2026-06-21T18:31:19+05:60",
            "2026-06-21T18:31:19-+5",
            "2026-06-21T18:31:19--5",
            "2026-06-21T18:31:19-05+5",
        ] {
            assert_eq!(Timestamp::parse(s), None, "{s}");
        }
        // The edges that hold.
        for (s, unix) in [
            ("2026-06-21t23:31:19Z", T0),
            ("2026-06-30T23:31:19Z", T0 + 9 * 86_400),
            ("2026-06-21T23:59:19Z", T0 + 28 * 60),
            ("2026-06-21T23:31:60Z", T0 + 40),
            ("2026-06-21T23:31:19+23:59", T0 - (23 * 60 + 59) * 60),
        ] {
            assert_eq!(Timestamp::parse(s).map(|t| t.unix), Some(unix), "{s}");
        }
    }

    /// The health words are a contract (`--json`, web UIs).
    #[test]
    fn health_words_are_fixed() {
        for (h, word) in [(Health::Healthy, "healthy"), (Health::Stale, "stale"), (Health::Unknown, "unknown")] {
            assert_eq!(h.as_str(), word);
            assert_eq!(h.to_string(), word);
        }
    }

    #[test]
    fn parse_a_v1_file() {
        let hb = Heartbeat::parse("ts=2026-06-21T18:31:19-0500\npid=4242\nstatus=busy\n").unwrap();
        assert_eq!(hb.pid, 4242);
        assert_eq!(hb.status, BeatStatus::Busy);
        assert_eq!(hb.ts.unix, T0);
        assert_eq!(Heartbeat::parse(&hb.render()).unwrap(), hb);
        // Unknown keys from a newer writer are ignored.
        assert!(Heartbeat::parse("ts=2026-06-21T23:31:19Z\npid=1\nstatus=ok\nextra=1\n").is_ok());
    }

    #[test]
    fn garbled_empty_and_half_written_files_are_unknown_with_a_reason() {
        let cases = [
            ("", "empty heartbeat file"),
            ("   \n", "empty heartbeat file"),
            ("ts=2026-06-21T23:31:19Z\npid=1\n", "missing status= line (half-written file?)"),
            ("ts=2026-06-21T23:31:19Z\npid=", "bad pid \"\""),
            ("ts=2026-06-21T23:3", "bad ts \"2026-06-21T23:3\": expected ISO-8601 like 2026-06-21T18:31:19-0500"),
            ("\u{0}\u{1}garbage", "line 1: expected key=value, found \"\\0\\u{1}garbage\""),
            ("ts=2026-06-21T23:31:19Z\npid=1\nstatus=sleepy\n", "bad status \"sleepy\": expected ok or busy"),
            // Multi-byte characters where the offset is read by byte position.
            (
                "ts=2026-06-21T23:31:19+1é3\npid=1\nstatus=ok\n",
                "bad ts \"2026-06-21T23:31:19+1é3\": expected ISO-8601 like 2026-06-21T18:31:19-0500",
            ),
            (
                "ts=2026-06-21T23:31:19-0é\npid=1\nstatus=ok\n",
                "bad ts \"2026-06-21T23:31:19-0é\": expected ISO-8601 like 2026-06-21T18:31:19-0500",
            ),
            (
                "ts=2026-06-21T23:31:19+é:00\npid=1\nstatus=ok\n",
                "bad ts \"2026-06-21T23:31:19+é:00\": expected ISO-8601 like 2026-06-21T18:31:19-0500",
            ),
        ];
        for (text, reason) in cases {
            let r = assess(Some(text), T0, 15);
            assert_eq!(r.health, Health::Unknown, "{text:?}");
            assert_eq!(r.reason.as_deref(), Some(reason), "{text:?}");
        }
        assert_eq!(assess(None, T0, 15).reason.as_deref(), Some("no heartbeat file"));
    }

    #[test]
    fn the_three_times_interval_boundary() {
        let text = "ts=2026-06-21T23:31:19Z\npid=7\nstatus=ok\n";
        let at = |age: i64, interval: u64| assess(Some(text), T0 + age, interval);
        assert_eq!(at(0, 15).health, Health::Healthy);
        assert_eq!(at(45, 15).health, Health::Healthy);
        assert_eq!(at(45, 15).age_seconds, Some(45));
        assert_eq!(at(46, 15).health, Health::Stale);
        assert_eq!(at(46, 15).age_seconds, Some(46));
        assert_eq!(at(6, 2).health, Health::Healthy);
        assert_eq!(at(7, 2).health, Health::Stale);
        // A clock slightly behind the writer's is still healthy: up to one interval.
        assert_eq!(at(-3, 15).health, Health::Healthy);
        assert_eq!(at(-15, 15).health, Health::Healthy);
        assert_eq!(at(-15, 15).reason, None);
        assert_eq!(at(0, 15).ts.as_deref(), Some("2026-06-21T23:31:19Z"));
    }

    #[test]
    fn a_ts_more_than_one_interval_ahead_is_unknown() {
        let text = "ts=2026-06-21T23:31:19Z\npid=7\nstatus=ok\n";
        let at = |age: i64, interval: u64| assess(Some(text), T0 + age, interval);
        let r = at(-16, 15);
        assert_eq!(r.health, Health::Unknown);
        assert_eq!(r.reason.as_deref(), Some("ts is in the future (clock skew?)"));
        assert_eq!((r.age_seconds, r.pid), (Some(-16), Some(7)), "what was read is still shown");
        assert_eq!(at(-2, 1).health, Health::Unknown);
        assert_eq!(at(-1, 1).health, Health::Healthy);
        // A far-future year does not overflow.
        let far = assess(Some("ts=9999-12-31T23:59:59Z\npid=7\nstatus=ok\n"), i64::MIN + 1, u64::MAX);
        assert_eq!(far.health, Health::Unknown);
    }

    /// Truncations and byte mutations of valid lines never panic the parsers.
    #[test]
    fn mangled_heartbeats_never_panic() {
        let valid = [
            "ts=2026-06-21T18:31:19-0500\npid=4242\nstatus=busy\n",
            "ts=2026-06-21T18:31:19.123456-05:00\npid=1\nstatus=ok\n",
            "ts=2026-06-21 23:31:19+00\npid=1\nstatus=ok\n",
            "ts=2026-06-21T23:31:19Z\npid=1\nstatus=ok\n",
        ];
        let inserts = ["é", "€", "😀", "\u{0}", ":", "+", "-", "9", "", "\n", "=", " ", "T", "Z", "."];
        let mut checked = 0;
        for text in valid {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            for (i, _) in &chars {
                let (head, tail) = text.split_at(*i);
                let _ = Heartbeat::parse(head);
                let _ = assess(Some(head), T0, 15);
                let ts_line = head.lines().next().unwrap_or("");
                let _ = Timestamp::parse(ts_line.trim_start_matches("ts="));
                for ins in inserts {
                    // Insert, and replace the character at i.
                    let skip = tail.chars().next().map_or(0, char::len_utf8);
                    for mutated in [format!("{head}{ins}{tail}"), format!("{head}{ins}{}", &tail[skip..])] {
                        let _ = Heartbeat::parse(&mutated);
                        let _ = assess(Some(&mutated), T0, 15);
                        let ts = mutated.lines().next().unwrap_or("").trim_start_matches("ts=");
                        let _ = Timestamp::parse(ts);
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn a_heartbeat_counts_only_beside_its_live_pane() {
        let beat = |pid: u32, age: i64| assess_parsed(Timestamp::from_unix(T0), pid, BeatStatus::Ok, T0 + age, 15);
        let j = judge_with_pane;
        let r = j(beat(7, 3), PaneState::Missing, None, true);
        assert_eq!((r.health, r.reason.as_deref()), (Health::Unknown, Some("the pane is missing (last beat 3s ago)")));
        assert_eq!((r.ts, r.pid, r.age_seconds), (None, None, None), "nothing left to re-judge as healthy");
        let r = j(beat(7, 3), PaneState::Dead, None, false);
        assert_eq!((r.health, r.reason.as_deref()), (Health::Unknown, Some("the pane is dead (last beat 3s ago)")));
        assert_eq!(j(beat(7, 100), PaneState::Missing, None, true).health, Health::Stale, "an old beat stays stale");
        assert_eq!(j(beat(7, 100), PaneState::Dead, None, true).health, Health::Stale);
        let r = j(beat(7, 3), PaneState::Alive, Some(8), true);
        assert_eq!(r.health, Health::Unknown);
        assert_eq!(r.reason.as_deref(), Some("heartbeat pid 7 is not the pane's pid 8 (an earlier or foreign writer)"));
        assert_eq!(j(beat(7, 100), PaneState::Alive, Some(8), true).health, Health::Unknown);
        assert_eq!(j(beat(7, 3), PaneState::Alive, Some(8), false).health, Health::Healthy, "no pid check asked");
        assert_eq!(j(beat(8, 3), PaneState::Alive, Some(8), true), beat(8, 3));
        assert_eq!(j(beat(8, 3), PaneState::Alive, None, true).health, Health::Healthy);
        let none = HealthReport::unknown("no heartbeat file", 15);
        assert_eq!(j(none.clone(), PaneState::Missing, None, true), none);
        let future = beat(7, -100);
        assert_eq!(j(future.clone(), PaneState::Alive, Some(7), true), future, "the future rule keeps its fields");
    }

    /// The node re-judges rows as time passes (`event::reassess`): a pane-rule
    /// unknown must stay unknown there.
    #[test]
    fn re_judging_a_record_keeps_the_pane_rule() {
        use crate::record::{AgentRecord, SystemdState};
        let hb = assess_parsed(Timestamp::from_unix(T0), 7, BeatStatus::Ok, T0 + 1, 15);
        let mut rows = [AgentRecord {
            tenant_id: "t".into(),
            host: "h".into(),
            name: "a".into(),
            class: None,
            runtime: None,
            managed: true,
            socket: String::new(),
            systemd: SystemdState::unavailable(),
            pane: PaneState::Missing,
            pane_pid: None,
            current_command: None,
            idle_seconds: None,
            in_copy_mode: false,
            heartbeat: judge_with_pane(hb, PaneState::Missing, None, true),
            drift: false,
            boot_enable: false,
            activity: crate::activity::Activity::of_pane(PaneState::Alive, 0),
        }];
        crate::event::reassess(&mut rows, T0 + 2);
        assert_eq!(rows[0].heartbeat.health, Health::Unknown);
        assert!(rows[0].heartbeat.reason.as_deref().unwrap().starts_with("the pane is missing"));
    }

    #[test]
    fn paths_and_interval_from_the_environment() {
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            HeartbeatEnv::from_lookup(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        };
        let e = env(&[("HOME", "/home/u")]);
        assert_eq!(e.run_dir(), PathBuf::from("/home/u/.config/mosaic/fleet/run"));
        assert_eq!(e.interval_secs(), Ok(15));
        let e = env(&[("HOME", "/home/u"), ("MOSAIC_HOME", "/m")]);
        assert_eq!(e.run_dir(), PathBuf::from("/m/fleet/run"));
        let e = env(&[("MOSAIC_HOME", "/m"), ("MOSAIC_HEARTBEAT_RUN_DIR", "/r"), ("MOSAIC_HEARTBEAT_INTERVAL", "5")]);
        assert_eq!(e.run_dir(), PathBuf::from("/r"));
        assert_eq!(e.interval_secs(), Ok(5));
        assert_eq!(heartbeat_path(&e.run_dir(), "a"), PathBuf::from("/r/a.hb"));
        let e = env(&[("MOSAIC_HEARTBEAT_INTERVAL", "0")]);
        assert!(e.interval_secs().unwrap_err().contains("MOSAIC_HEARTBEAT_INTERVAL=\"0\""));
        let e = env(&[("MOSAIC_HEARTBEAT_RUN_DIR", ""), ("MOSAIC_HOME", "/m")]);
        assert_eq!(e.run_dir(), PathBuf::from("/m/fleet/run"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn beat() -> impl Strategy<Value = Heartbeat> {
            // Years 0001-9999, offsets within a day, on whole minutes.
            (-62_135_596_800i64..253_402_214_400, -(23 * 60 + 59)..(23 * 60 + 60), any::<u32>(), any::<bool>())
                .prop_map(|(unix, offset_min, pid, busy)| Heartbeat {
                    ts: Timestamp { unix, offset_min },
                    pid,
                    status: if busy { BeatStatus::Busy } else { BeatStatus::Ok },
                })
        }

        fn line_strategy() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                (0i64..10_000, 0i64..99, 0i64..99, 0i64..99, 0i64..99, 0i64..99, "[-+Z ]", 0i64..9999).prop_map(
                    |(y, mo, d, h, mi, s, sign, off)| format!(
                        "ts={y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{sign}{off:04}"
                    )
                ),
                any::<i64>().prop_map(|p| format!("pid={p}")),
                prop::sample::select(vec!["status=ok", "status=busy", "status=", "=", "ts=", "x=y", ""])
                    .prop_map(String::from),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn render_then_parse_is_the_same_beat(hb in beat()) {
                prop_assert_eq!(Heartbeat::parse(&hb.render()), Ok(hb.clone()));
                // The RFC 3339 form (colon offset or Z) reads back as the same instant.
                let again = Timestamp::parse(&hb.ts.to_rfc3339()).unwrap();
                prop_assert_eq!(again.unix, hb.ts.unix);
            }

            #[test]
            fn a_valid_beat_is_judged_at_any_time_and_interval(hb in beat(), now in any::<i64>(), interval in any::<u64>()) {
                let r = assess(Some(&hb.render()), now, interval);
                prop_assert_eq!(r.pid, Some(hb.pid));
            }

            #[test]
            fn any_text_is_judged_without_panic(text in any::<String>(), now in any::<i64>(), interval in any::<u64>()) {
                let r = assess(Some(&text), now, interval);
                prop_assert!(r.health != Health::Unknown || r.reason.is_some());
            }

            #[test]
            fn near_valid_files_are_judged_and_bad_lines_positioned(
                lines in prop::collection::vec(line_strategy(), 0..6),
                now in any::<i64>(),
                interval in any::<u64>(),
            ) {
                let text = lines.join("\n");
                let _ = assess(Some(&text), now, interval);
                if let Err(ParseError::NotKeyValue { line, .. }) = Heartbeat::parse(&text) {
                    prop_assert!(line >= 1 && line <= text.lines().count(), "line {line} of {text:?}");
                }
            }
        }
    }
}
