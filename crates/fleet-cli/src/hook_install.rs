//! `fleet install --hooks claude|codex`: put `fleet hook` into a runtime's
//! own configuration, from the templates in `framework/hooks/`.
//!
//! - claude: the template's hook entries (one `fleet hook --claude` command
//!   per event) merged into `settings.json`, keeping every other key (in its
//!   order) and every other hook;
//! - codex: the template's top-level `notify = [...]` line put at the top of
//!   `config.toml` (there is no TOML parser here: the file is scanned, not
//!   rewritten); an existing `notify` with another value is refused.
//!
//! Both are idempotent, write atomically, keep a `.fleet-bak` copy of the file
//! before their first change, and with `--dry-run` print and write nothing.

use crate::exit::{self, CliResult};
use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

const CLAUDE_TEMPLATE: &str = include_str!("../../../framework/hooks/claude-settings.json");
const CODEX_TEMPLATE: &str = include_str!("../../../framework/hooks/codex-config.toml");
/// Where the templates name `fleet`; replaced by the running binary's path.
const TEMPLATE_FLEET: &str = "/usr/local/bin/fleet";
/// The largest configuration file read.
const CONFIG_MAX: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HookRuntime {
    /// Claude Code: hooks in ~/.claude/settings.json.
    Claude,
    /// Codex: `notify` in ~/.codex/config.toml.
    Codex,
}

/// `$CLAUDE_CONFIG_DIR/settings.json`, else `~/.claude/settings.json`;
/// `$CODEX_HOME/config.toml`, else `~/.codex/config.toml`.
pub fn config_path(rt: HookRuntime, home: &Path, env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let (var, dflt, file) = match rt {
        HookRuntime::Claude => ("CLAUDE_CONFIG_DIR", ".claude", "settings.json"),
        HookRuntime::Codex => ("CODEX_HOME", ".codex", "config.toml"),
    };
    match env(var).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join(file),
        None => home.join(dflt).join(file),
    }
}

/// The command line Claude Code runs (through a shell): the path quoted when
/// it needs to be.
fn claude_command(exe: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._+-,:@%=".contains(c);
    if !exe.is_empty() && exe.chars().all(plain) {
        format!("{exe} hook --claude")
    } else {
        format!("'{}' hook --claude", exe.replace('\'', r"'\''"))
    }
}

fn is_claude_hook(command: &str) -> bool {
    command.trim_end().ends_with(" hook --claude")
}

/// What an installer would do to a file: its new text (`None`: nothing to
/// change) and what changes, for people.
#[derive(Debug)]
pub struct Plan {
    pub text: Option<String>,
    pub changes: Vec<String>,
}

/// Merge the Claude hooks into `existing` (the file's text; `None`: no file).
pub fn plan_claude(existing: Option<&str>, exe: &str, shown: &str) -> CliResult<Plan> {
    let command = claude_command(exe);
    let template = CLAUDE_TEMPLATE.replace(&format!("{TEMPLATE_FLEET} hook --claude"), &command);
    let template: J = serde_json::from_str(&template).expect("framework/hooks/claude-settings.json is JSON");
    let refuse = |what: String| {
        exit::usage(anyhow!("{shown}: {what}; nothing was changed: fix the file (or move it away) and run again"))
    };
    let mut settings: J = match existing {
        Some(t) if !t.trim().is_empty() => {
            serde_json::from_str(t).map_err(|e| refuse(format!("not valid JSON ({e})")))?
        }
        _ => J::Obj(vec![]),
    };
    let J::Obj(_) = &settings else { return Err(refuse("not a JSON object".into())) };
    let hooks = settings.entry("hooks", || J::Obj(vec![]));
    let J::Obj(_) = hooks else { return Err(refuse("`hooks` is not an object".into())) };
    let mut changes = Vec::new();
    let J::Obj(wanted) = template.get("hooks").expect("the template has hooks") else { unreachable!() };
    for (event, entries) in wanted {
        let list = hooks.entry(event, || J::Arr(vec![]));
        let J::Arr(list) = list else { return Err(refuse(format!("`hooks.{event}` is not a list"))) };
        let (mut found, mut repointed) = (false, false);
        for h in list.iter_mut().filter_map(|e| e.get_mut("hooks")).filter_map(J::as_arr_mut).flatten() {
            let Some(J::Str(c)) = h.get_mut("command") else { continue };
            if *c == command {
                found = true;
            } else if is_claude_hook(c) {
                *c = command.clone();
                repointed = true;
            }
        }
        if repointed {
            changes.push(format!("pointed the {event} hook at {exe}"));
        } else if !found {
            let J::Arr(add) = entries else { unreachable!("template entries are lists") };
            list.extend(add.iter().cloned());
            changes.push(format!("added the {event} hook"));
        }
    }
    if changes.is_empty() {
        return Ok(Plan { text: None, changes });
    }
    let mut text = serde_json::to_string_pretty(&settings).map_err(|e| exit::failed(anyhow!(e)))?;
    text.push('\n');
    Ok(Plan { text: Some(text), changes })
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Put `notify = [FLEET, "hook", "--codex"]` at the top level of `existing`.
pub fn plan_codex(existing: Option<&str>, exe: &str, shown: &str) -> CliResult<Plan> {
    let snippet = CODEX_TEMPLATE.replace(&toml_string(TEMPLATE_FLEET), &toml_string(exe));
    let want = [exe.to_string(), "hook".into(), "--codex".into()];
    let line = snippet.lines().find(|l| l.starts_with("notify")).expect("the template has notify").to_string();
    let text = existing.unwrap_or("");
    match find_top_level_notify(text) {
        Some((lineno, value)) => {
            if parse_string_array(&value).as_deref() == Some(&want[..]) {
                return Ok(Plan { text: None, changes: vec![] });
            }
            Err(exit::usage(anyhow!(
                "{shown}:{lineno}: `notify = {}` is already set, and Codex runs one notify program; nothing was changed. \
                 Replace it with `{line}`, or call `{} hook --codex \"$1\"` from the program it runs (Codex passes one JSON argument)",
                value.split_whitespace().collect::<Vec<_>>().join(" "),
                exe
            )))
        }
        None => {
            let sep = if text.is_empty() { "" } else { "\n" };
            Ok(Plan { text: Some(format!("{snippet}{sep}{text}")), changes: vec![format!("added `{line}`")] })
        }
    }
}

/// The top-level `notify` key of a TOML text: its line number (1-based) and
/// its value's text. Only lines above the first `[table]` header are top
/// level; values may span lines (arrays).
fn find_top_level_notify(text: &str) -> Option<(usize, String)> {
    let mut depth = 0i32;
    let mut capture: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if depth == 0 && capture.is_none() {
            if trimmed.starts_with('[') {
                return None;
            }
            let key = trimmed.split('=').next().unwrap_or("").trim().trim_matches(['"', '\'']);
            if key == "notify" && trimmed.contains('=') {
                let value = trimmed.split_once('=').map_or("", |(_, v)| v).to_string();
                depth = bracket_depth(&value);
                if depth <= 0 {
                    return Some((i + 1, strip_comment(&value)));
                }
                capture = Some((i + 1, strip_comment(&value)));
                continue;
            }
        }
        depth += bracket_depth(line);
        if let Some((_, v)) = &mut capture {
            v.push('\n');
            v.push_str(&strip_comment(line));
            if depth <= 0 {
                return capture;
            }
        }
    }
    capture
}

/// What a line's `[` and `]` (outside strings and comments) add to the depth.
fn bracket_depth(line: &str) -> i32 {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in line.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' => break,
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}

/// A line without its `# comment` (outside strings), trimmed.
fn strip_comment(line: &str) -> String {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return line[..i].trim().to_string(),
            None => {}
        }
    }
    line.trim().to_string()
}

/// A TOML array of strings (`["a", 'b']`); `None` for anything else.
fn parse_string_array(value: &str) -> Option<Vec<String>> {
    let inner = value.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(q) = chars.next() else { return Some(out) };
        let mut s = String::new();
        match q {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => s.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'u' => {
                            let hex: String = (0..4).map(|_| chars.next()).collect::<Option<_>>()?;
                            s.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        c => s.push(c),
                    },
                    c => s.push(c),
                }
            },
            _ => return None,
        }
        out.push(s);
    }
}

/// Install `rt`'s hooks into `path` for the `fleet` at `exe`. Returns what to
/// tell the operator.
pub fn install_to(rt: HookRuntime, path: &Path, exe: &Path, dry_run: bool) -> CliResult<Vec<String>> {
    let shown = path.display().to_string();
    let exe =
        exe.to_str().ok_or_else(|| exit::usage(anyhow!("the fleet binary's path {} is not UTF-8", exe.display())))?;
    // A symlinked file (a dotfiles checkout) is changed where it lives.
    let target = match path.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|e| {
            exit::usage(anyhow!("{shown} is a symlink whose target cannot be read ({e}): fix it and run again"))
        })?,
        _ => path.to_path_buf(),
    };
    let existing = match fleet_core::file::read_to_string(&target, CONFIG_MAX) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(exit::usage(anyhow!("cannot read {shown}: {e}"))),
    };
    let plan = match rt {
        HookRuntime::Claude => plan_claude(existing.as_deref(), exe, &shown)?,
        HookRuntime::Codex => plan_codex(existing.as_deref(), exe, &shown)?,
    };
    let Some(text) = plan.text else {
        return Ok(vec![format!("unchanged {shown}: the {} hook is already installed", name(rt))]);
    };
    let mut out = Vec::new();
    if dry_run {
        out.push(format!("would write {shown} ({}):", plan.changes.join("; ")));
        out.push(text.trim_end().to_string());
        out.push("(dry run: nothing was written)".into());
        return Ok(out);
    }
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| exit::failed(anyhow!("cannot create {}: {e}", dir.display())))?;
    let mode = std::fs::metadata(&target).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    if let Some(old) = &existing {
        let mut bak = target.clone().into_os_string();
        bak.push(".fleet-bak");
        let bak = PathBuf::from(bak);
        // The file as it was before fleet's first change: never overwritten.
        match stage(dir, old.as_bytes(), mode).map_err(exit::failed)?.persist_noclobber(&bak) {
            Ok(_) => out.push(format!("saved {} (the file before this change)", bak.display())),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(exit::failed(anyhow!("cannot write {}: {}", bak.display(), e.error))),
        }
    }
    stage(dir, text.as_bytes(), mode)
        .map_err(exit::failed)?
        .persist(&target)
        .map_err(|e| exit::failed(anyhow!("cannot write {shown}: {}", e.error)))?;
    out.insert(0, format!("updated {shown}: {}", plan.changes.join("; ")));
    Ok(out)
}

fn name(rt: HookRuntime) -> &'static str {
    match rt {
        HookRuntime::Claude => "Claude Code",
        HookRuntime::Codex => "Codex",
    }
}

fn stage(dir: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".fleet-install-")
        .tempfile_in(dir)
        .map_err(|e| anyhow!("cannot create a temp file in {}: {e}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// `fleet install --hooks RUNTIME`.
pub fn install(rt: HookRuntime, home: &Path, dry_run: bool) -> CliResult {
    let exe =
        std::env::current_exe().map_err(|e| exit::failed(anyhow!("cannot find the running fleet binary: {e}")))?;
    let path = config_path(rt, home, |k| std::env::var(k).ok());
    for line in install_to(rt, &path, &exe, dry_run)? {
        println!("{line}");
    }
    println!(
        "{} reads this file at start: restart running sessions. The hooks record activity for agents started by fleet (MOSAIC_AGENT_NAME); elsewhere they write nothing.",
        name(rt)
    );
    Ok(())
}

/// A JSON value that keeps its objects' key order (serde_json's own `Value`
/// sorts keys unless the workspace turns on `preserve_order`, which would
/// reorder every `--json` output too): an operator's settings file comes back
/// in the order it was written.
#[derive(Clone, Debug, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut J> {
        match self {
            J::Obj(kv) => kv.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_arr_mut(&mut self) -> Option<&mut Vec<J>> {
        match self {
            J::Arr(a) => Some(a),
            _ => None,
        }
    }

    /// The value at `key` of an object, inserted at the end when missing.
    /// Panics on a non-object (callers check).
    fn entry(&mut self, key: &str, new: impl FnOnce() -> J) -> &mut J {
        let J::Obj(kv) = self else { panic!("entry on a non-object") };
        let i = match kv.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                kv.push((key.to_string(), new()));
                kv.len() - 1
            }
        };
        &mut kv[i].1
    }
}

impl Serialize for J {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::Num(n) => n.serialize(s),
            J::Str(v) => s.serialize_str(v),
            J::Arr(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            J::Obj(kv) => {
                let mut map = s.serialize_map(Some(kv.len()))?;
                for (k, v) in kv {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<J, E> {
                Ok(serde_json::Number::from_f64(n).map_or(J::Null, J::Num))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<J, E> {
                Ok(J::Str(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut kv = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, J>()? {
                    kv.push((k, v));
                }
                Ok(J::Obj(kv))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/opt/fleet/bin/fleet";

    fn claude_hooks(text: &str) -> Vec<(String, Vec<String>)> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["hooks"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(event, list)| {
                let commands = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|e| e["hooks"].as_array().unwrap().iter())
                    .map(|h| h["command"].as_str().unwrap().to_string())
                    .collect();
                (event.clone(), commands)
            })
            .collect()
    }

    #[test]
    fn claude_hooks_are_merged_keeping_everything_else_in_its_order() {
        let before = r#"{
  "model": "opus",
  "env": { "B": "2", "A": "1" },
  "hooks": {
    "Stop": [ { "matcher": "", "hooks": [ { "type": "command", "command": "notify-send done" } ] } ],
    "PreToolUse": [ { "matcher": "Bash", "hooks": [ { "type": "command", "command": "audit.sh" } ] } ]
  },
  "permissions": { "allow": ["Bash(ls:*)"] },
  "cleanupPeriodDays": 30,
  "ratio": 0.5
}"#;
        let plan = plan_claude(Some(before), EXE, "s.json").unwrap();
        let after = plan.text.unwrap();
        assert_eq!(plan.changes.len(), 4, "{:?}", plan.changes);
        let keys: Vec<&str> =
            after.lines().filter(|l| l.starts_with("  \"")).map(|l| l.split('"').nth(1).unwrap()).collect();
        assert_eq!(keys, ["model", "env", "hooks", "permissions", "cleanupPeriodDays", "ratio"], "{after}");
        assert!(after.find("\"B\"").unwrap() < after.find("\"A\"").unwrap(), "nested order kept: {after}");
        assert!(after.contains("\"ratio\": 0.5") && after.contains("\"cleanupPeriodDays\": 30"), "{after}");
        let ours = format!("{EXE} hook --claude");
        let hooks = claude_hooks(&after);
        let of = |e: &str| hooks.iter().find(|(k, _)| k == e).map(|(_, c)| c.clone()).unwrap();
        assert_eq!(of("Stop"), ["notify-send done".to_string(), ours.clone()], "other hooks stay");
        assert_eq!(of("PreToolUse"), ["audit.sh"]);
        for e in ["UserPromptSubmit", "Notification", "SessionEnd"] {
            assert_eq!(of(e), vec![ours.clone()], "{e}");
        }
        // Idempotent: a second run changes nothing.
        let again = plan_claude(Some(&after), EXE, "s.json").unwrap();
        assert!(again.text.is_none() && again.changes.is_empty(), "{:?}", again.changes);
    }

    #[test]
    fn claude_hooks_of_another_fleet_path_are_repointed_not_doubled() {
        let old = plan_claude(None, "/old/fleet", "s").unwrap().text.unwrap();
        let plan = plan_claude(Some(&old), EXE, "s").unwrap();
        assert!(plan.changes.iter().all(|c| c.starts_with("pointed the")), "{:?}", plan.changes);
        for (_, commands) in claude_hooks(&plan.text.unwrap()) {
            assert_eq!(commands, [format!("{EXE} hook --claude")]);
        }
    }

    #[test]
    fn a_claude_command_path_is_quoted_for_the_shell() {
        assert_eq!(claude_command("/usr/bin/fleet"), "/usr/bin/fleet hook --claude");
        assert_eq!(claude_command("/my apps/it's/fleet"), r"'/my apps/it'\''s/fleet' hook --claude");
    }

    #[test]
    fn a_broken_settings_file_is_refused_naming_it() {
        for (text, why) in [
            ("{ \"model\": ", "not valid JSON"),
            ("[1, 2]", "not a JSON object"),
            ("{\"hooks\": []}", "`hooks` is not an object"),
            ("{\"hooks\": {\"Stop\": {}}}", "`hooks.Stop` is not a list"),
        ] {
            let e = plan_claude(Some(text), EXE, "/h/.claude/settings.json").unwrap_err();
            assert_eq!(e.code, exit::Code::Usage);
            let msg = format!("{:#}", e.error);
            assert!(msg.starts_with("/h/.claude/settings.json: ") && msg.contains(why), "{msg}");
            assert!(msg.contains("nothing was changed"), "{msg}");
        }
        // An empty file is an empty object.
        assert_eq!(claude_hooks(&plan_claude(Some("\n"), EXE, "s").unwrap().text.unwrap()).len(), 4);
    }

    #[test]
    fn codex_notify_goes_at_the_top_level_once() {
        let before = "model = \"o3\"\n\n[tui]\nnotifications = true\n";
        let plan = plan_codex(Some(before), EXE, "c.toml").unwrap();
        let after = plan.text.unwrap();
        let notify = format!("notify = [\"{EXE}\", \"hook\", \"--codex\"]");
        assert!(after.ends_with(&format!("\n{before}")), "the rest stays as it was: {after}");
        let at = after.lines().position(|l| l == notify).expect("the line");
        assert!(at < after.lines().position(|l| l == "[tui]").unwrap(), "above the first table");
        assert_eq!(
            find_top_level_notify(&after).map(|(_, v)| parse_string_array(&v)),
            Some(Some(vec![EXE.into(), "hook".into(), "--codex".into()]))
        );
        assert!(plan_codex(Some(&after), EXE, "c.toml").unwrap().text.is_none(), "idempotent");
        // Written by hand, multi-line, with comments and literal strings: still ours.
        let by_hand = format!("# mine\nnotify = [ # the hook\n  '{EXE}',\n  \"hook\", \"--codex\",\n]\n[x]\n");
        assert!(plan_codex(Some(&by_hand), EXE, "c.toml").unwrap().text.is_none());
        // No file: just the snippet.
        assert!(plan_codex(None, EXE, "c.toml").unwrap().text.unwrap().contains(&notify));
    }

    #[test]
    fn another_codex_notify_is_refused_saying_what_to_change() {
        let text = "model = \"o3\"\nnotify = [\"notify-send\", \"codex\"]\n";
        let e = plan_codex(Some(text), EXE, "/h/.codex/config.toml").unwrap_err();
        assert_eq!(e.code, exit::Code::Usage);
        let msg = format!("{:#}", e.error);
        assert!(
            msg.starts_with("/h/.codex/config.toml:2: `notify = [\"notify-send\", \"codex\"]` is already set"),
            "{msg}"
        );
        assert!(msg.contains(&format!("Replace it with `notify = [\"{EXE}\", \"hook\", \"--codex\"]`")), "{msg}");
        // A `notify` inside a table is not the top-level key.
        let in_table = "[profiles.x]\nnotify = [\"other\"]\n";
        assert!(plan_codex(Some(in_table), EXE, "c").unwrap().text.unwrap().starts_with("# fleet mesh"));
        // A key that merely starts with notify is another key.
        assert!(plan_codex(Some("notify_other = 1\n"), EXE, "c").unwrap().text.is_some());
        // The path of fleet is escaped as TOML wants.
        let odd = r#"/x/"q"\fleet"#;
        let t = plan_codex(None, odd, "c").unwrap().text.unwrap();
        let (_, v) = find_top_level_notify(&t).unwrap();
        assert_eq!(parse_string_array(&v).unwrap()[0], odd);
        assert!(plan_codex(Some(&t), odd, "c").unwrap().text.is_none());
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn installing_backs_up_once_keeps_the_mode_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let path = config_path(HookRuntime::Claude, home, |_| None);
        assert_eq!(path, home.join(".claude/settings.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let original = "{\"model\": \"opus\"}\n";
        std::fs::write(&path, original).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let bak = home.join(".claude/settings.json.fleet-bak");

        // Dry run: prints the result, writes nothing.
        let out = install_to(HookRuntime::Claude, &path, Path::new(EXE), true).unwrap();
        assert!(out[0].starts_with("would write"), "{out:?}");
        assert!(out[1].contains("hook --claude") && out[1].contains("\"model\": \"opus\""), "{out:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
        assert!(!bak.exists());

        let out = install_to(HookRuntime::Claude, &path, Path::new(EXE), false).unwrap();
        assert!(out[0].starts_with("updated"), "{out:?}");
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), original);
        assert_eq!((mode(&path), mode(&bak)), (0o600, 0o600));
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(claude_hooks(&first).len(), 4);

        let out = install_to(HookRuntime::Claude, &path, Path::new(EXE), false).unwrap();
        assert!(out[0].starts_with("unchanged"), "{out:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

        // A later change (fleet moved) keeps the first backup.
        install_to(HookRuntime::Claude, &path, Path::new("/new/fleet"), false).unwrap();
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), original, "the backup is the file before the first change");
        let names: Vec<_> = std::fs::read_dir(home.join(".claude")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    }

    #[test]
    fn installing_into_no_file_a_symlink_or_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        // No file, no dir: both made, no backup.
        let path = config_path(HookRuntime::Codex, dir.path(), |_| None);
        install_to(HookRuntime::Codex, &path, Path::new(EXE), false).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("\"hook\", \"--codex\""));
        assert!(!dir.path().join(".codex/config.toml.fleet-bak").exists());
        // $CODEX_HOME / $CLAUDE_CONFIG_DIR win.
        let env = |k: &str| (k == "CODEX_HOME").then(|| "/c".to_string());
        assert_eq!(config_path(HookRuntime::Codex, dir.path(), env), Path::new("/c/config.toml"));

        // A symlink is followed: the target changes, the link stays.
        let real = dir.path().join("dotfiles/settings.json");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        install_to(HookRuntime::Claude, &link, Path::new(EXE), false).unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(claude_hooks(&std::fs::read_to_string(&real).unwrap()).len(), 4);

        // An unparsable file: refused, untouched, no backup.
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{ nope").unwrap();
        let e = install_to(HookRuntime::Claude, &bad, Path::new(EXE), false).unwrap_err();
        assert!(format!("{:#}", e.error).contains(&format!("{}: not valid JSON", bad.display())));
        assert_eq!(std::fs::read_to_string(&bad).unwrap(), "{ nope");
        assert!(!dir.path().join("bad.json.fleet-bak").exists());
    }
}
