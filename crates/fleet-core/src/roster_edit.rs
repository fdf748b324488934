//! Changing a roster: the fleet's guards (R5: exactly one orchestrator, at
//! least one enhancer unless the profile is `minimal`) and the edit of the
//! roster's *text*, so that comments, key order and style stay as the
//! operator wrote them.
//!
//! The edits are line-based on the positions the YAML tree remembers: a new
//! agent is appended to `agents:` in the style of the first one (a block map,
//! or a flow map `- { ... }`, or inside a flow list `[ ... ]`); a removed
//! agent's lines (or its `{ ... }` in a flow list) are cut. Every edit is
//! checked by parsing the result: it must hold exactly the old agents plus
//! (or minus) the one, and the rest of the roster unchanged; otherwise the
//! edit is refused ([`EditError::Unsafe`]) and nothing is written.

use crate::roster::{AgentSpec, Roster};
use crate::yaml::{self, Node, Pos, Value};
use std::fmt;

/// One agent of the fleet, as the guards see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub host: String,
    pub class: Option<String>,
}

/// A change to the fleet's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Add { name: String, host: String, class: String },
    Remove { name: String, host: String },
}

pub const ORCHESTRATOR: &str = "orchestrator";
pub const ENHANCER: &str = "enhancer";

/// Why a change is refused by a guard.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Cannot remove {name}: it is the sole orchestrator. Add another orchestrator first.")]
    SoleOrchestrator { name: String },
    #[error(
        "Cannot add {name} as an orchestrator: the fleet already has one ({existing}), and a fleet keeps exactly one. \
         To move the role, add {name} with --force, then remove {existing}."
    )]
    SecondOrchestrator { name: String, existing: String },
    #[error(
        "Cannot remove {name}: it is the sole enhancer, and every profile but minimal keeps at least one. Add another enhancer first."
    )]
    SoleEnhancer { name: String },
}

fn is_class(m: &Member, class: &str) -> bool {
    m.class.as_deref() == Some(class)
}

fn same(m: &Member, name: &str, host: &str) -> bool {
    m.name == name && m.host.eq_ignore_ascii_case(host)
}

/// The guards: may `change` be made to a fleet of `members` (every agent of
/// the mesh this node knows of, the changed host's own roster included)?
/// `minimal`: the fleet's profile is `minimal` (no enhancer needed).
/// `force` lets a second orchestrator in (to move the role: add, then remove).
pub fn guard(members: &[Member], change: &Change, minimal: bool, force: bool) -> Result<(), Refusal> {
    match change {
        Change::Add { name, host, class } => {
            if class == ORCHESTRATOR && !force {
                let mut existing = members.iter().filter(|m| is_class(m, ORCHESTRATOR) && !same(m, name, host));
                if let Some(m) = existing.next() {
                    return Err(Refusal::SecondOrchestrator {
                        name: name.clone(),
                        existing: format!("{}@{}", m.name, m.host),
                    });
                }
            }
            Ok(())
        }
        Change::Remove { name, host } => {
            let Some(gone) = members.iter().find(|m| same(m, name, host)) else { return Ok(()) };
            let others = |class: &str| members.iter().filter(|m| is_class(m, class) && !same(m, name, host)).count();
            if is_class(gone, ORCHESTRATOR) && others(ORCHESTRATOR) == 0 {
                return Err(Refusal::SoleOrchestrator { name: name.clone() });
            }
            if is_class(gone, ENHANCER) && !minimal && others(ENHANCER) == 0 {
                return Err(Refusal::SoleEnhancer { name: name.clone() });
            }
            Ok(())
        }
    }
}

/// An agent to add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAgent {
    pub name: String,
    pub runtime: String,
    pub class: String,
    pub model_hint: Option<String>,
    /// Written as `host:` (a roster that names hosts for its agents gets one).
    pub host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the roster does not parse: {0}; fix it first (`fleet roster check`)")]
    Invalid(String),
    #[error("agent {name} is already in the roster (line {line}); pick another name, or `fleet remove` it first")]
    Exists { name: String, line: usize },
    #[error("no agent {name} in the roster ({known})")]
    Missing { name: String, known: String },
    #[error("{0}")]
    BadAgent(String),
    #[error("cannot edit the roster's text safely ({0}); nothing was written: edit it by hand")]
    Unsafe(String),
}

/// A scalar as YAML text: plain when that reads back as the same string,
/// else double-quoted.
pub fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '~')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '~' | '@' | '+'))
        && !matches!(s, "true" | "True" | "TRUE" | "false" | "False" | "FALSE" | "null" | "Null" | "NULL" | "~")
        && !s.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '+');
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl NewAgent {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut p =
            vec![("name", scalar(&self.name)), ("runtime", scalar(&self.runtime)), ("class", scalar(&self.class))];
        if let Some(m) = &self.model_hint {
            p.push(("model_hint", scalar(m)));
        }
        if let Some(h) = &self.host {
            p.push(("host", scalar(h)));
        }
        p
    }

    fn flow(&self) -> String {
        let inner: Vec<String> = self.pairs().into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{ {} }}", inner.join(", "))
    }

    /// Block lines: `- name: x` then the other keys under it.
    fn block(&self, dash_indent: usize, key_offset: usize, eol: &str) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.pairs().into_iter().enumerate() {
            if i == 0 {
                out.push_str(&format!("{}-{}{k}: {v}{eol}", " ".repeat(dash_indent), " ".repeat(key_offset - 1)));
            } else {
                out.push_str(&format!("{}{k}: {v}{eol}", " ".repeat(dash_indent + key_offset)));
            }
        }
        out
    }
}

/// The text as lines with their byte offsets.
struct Lines<'a> {
    text: &'a str,
    /// Byte offset of each line's start; one more entry: the text's length.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        if *starts.last().expect("one") != text.len() {
            starts.push(text.len());
        }
        Lines { text, starts }
    }

    fn count(&self) -> usize {
        self.starts.len() - 1
    }

    /// Line `i` (0-based), without its line break.
    fn line(&self, i: usize) -> &'a str {
        self.text[self.starts[i]..self.starts[i + 1]].trim_end_matches(['\n', '\r'])
    }

    fn is_content(&self, i: usize) -> bool {
        let t = self.line(i).trim_start();
        !t.is_empty() && !t.starts_with('#')
    }

    fn indent(&self, i: usize) -> usize {
        let l = self.line(i);
        l.len() - l.trim_start_matches(' ').len()
    }

    /// The byte offset of a 1-based position (its column counted in characters).
    fn offset(&self, pos: Pos) -> usize {
        let start = self.starts[(pos.line - 1).min(self.count().saturating_sub(1))];
        let line = &self.text[start..];
        start + line.char_indices().nth(pos.col - 1).map_or(line.len(), |(i, _)| i)
    }

    fn eol(&self) -> &'static str {
        if self.text.contains("\r\n") { "\r\n" } else { "\n" }
    }
}

/// The end (exclusive byte offset) of the flow collection that opens at `start`.
fn flow_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\'' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'#' if i > 0 && matches!(bytes[i - 1], b' ' | b'\t') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The `agents:` key and its value in the root map.
fn agents_entry(root: &Node) -> Option<(&Node, &Node)> {
    match &root.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some("agents")).map(|(k, v)| (k, v)),
        _ => None,
    }
}

/// The 0-based line and column of the `-` that opens a block sequence item.
fn dash_line(lines: &Lines<'_>, item: &Node) -> Option<(usize, usize)> {
    // A block map's own position may be past its first key: look before the key.
    let item = match &item.value {
        Value::Map(entries) if !lines.text[lines.offset(item.pos)..].starts_with('{') => {
            entries.first().map_or(item.pos, |(k, _)| k.pos)
        }
        _ => item.pos,
    };
    let i = item.line - 1;
    let prefix: String = lines.line(i).chars().take(item.col - 1).collect();
    if let Some(col) = prefix.rfind('-') {
        return Some((i, col));
    }
    // `-` alone on a line above the item.
    (0..i).rev().find(|j| lines.is_content(*j)).and_then(|j| {
        let t = lines.line(j);
        (t.trim() == "-").then(|| (j, lines.indent(j)))
    })
}

/// The last content line (0-based) of the block item starting at line `from`
/// whose dash is at `dash_indent`, looking no further than line `limit` (exclusive).
fn item_last_line(lines: &Lines<'_>, from: usize, dash_indent: usize, limit: usize) -> usize {
    let mut last = from;
    for j in from + 1..limit {
        if !lines.is_content(j) {
            continue;
        }
        if lines.indent(j) <= dash_indent || lines.line(j).starts_with("---") || lines.line(j).starts_with("...") {
            break;
        }
        last = j;
    }
    last
}

fn parse(text: &str) -> Result<(Node, Roster), EditError> {
    let roster = Roster::parse(text).map_err(|e| EditError::Invalid(e.to_string()))?;
    let root = yaml::parse(text).map_err(|e| EditError::Invalid(e.message))?;
    Ok((root, roster))
}

/// An agent as compared by [`check`]: without its position.
fn unplaced(a: &AgentSpec) -> AgentSpec {
    AgentSpec { pos: Pos::default(), ..a.clone() }
}

/// The edited text holds `expected` agents (by name, in order) and the rest as `before`.
fn check(before: &Roster, after_text: &str, expected: &[AgentSpec]) -> Result<(), EditError> {
    let after = Roster::parse(after_text).map_err(|e| EditError::Unsafe(format!("the result does not parse: {e}")))?;
    let strip = |r: &Roster| Roster { agents: vec![], ..r.clone() };
    if strip(&after) != strip(before) {
        return Err(EditError::Unsafe("the result changes more than the agents".into()));
    }
    let a: Vec<AgentSpec> = after.agents.iter().map(unplaced).collect();
    let e: Vec<AgentSpec> = expected.iter().map(unplaced).collect();
    if a != e {
        return Err(EditError::Unsafe("the result's agents are not the expected ones".into()));
    }
    Ok(())
}

/// `text` with `agent` appended to `agents:`.
pub fn add_agent(text: &str, agent: &NewAgent) -> Result<String, EditError> {
    let (root, roster) = parse(text)?;
    if let Some(a) = roster.agent(&agent.name) {
        return Err(EditError::Exists { name: agent.name.clone(), line: a.pos.line });
    }
    let name = agent.name.parse::<crate::names::AgentName>().map_err(|e| EditError::BadAgent(e.to_string()))?;
    for (what, v) in [("runtime", &agent.runtime), ("class", &agent.class)] {
        if v.trim().is_empty() || v.chars().any(char::is_control) {
            return Err(EditError::BadAgent(format!("the {what} {v:?} is empty or holds a control character")));
        }
    }
    let lines = Lines::new(text);
    let eol = lines.eol();
    let (key, value) = agents_entry(&root).ok_or_else(|| EditError::Unsafe("no agents key".into()))?;
    let new_text = match &value.value {
        Value::Seq(items) if lines.text[lines.offset(value.pos)..].starts_with('[') => {
            let open = lines.offset(value.pos);
            let close = flow_end(text, open).ok_or_else(|| EditError::Unsafe("unclosed [".into()))?;
            match items.last() {
                Some(last) => {
                    let start = lines.offset(last.pos);
                    let end = if text[start..].starts_with(['{', '[']) {
                        flow_end(text, start).ok_or_else(|| EditError::Unsafe("unclosed {".into()))?
                    } else {
                        return Err(EditError::Unsafe("the last agent is not a { ... } map".into()));
                    };
                    format!("{}, {}{}", &text[..end], agent.flow(), &text[end..])
                }
                None => {
                    // `agents: []`: written as a block list from now on.
                    let mut t = String::new();
                    t.push_str(text[..open].trim_end_matches(' '));
                    let rest = &text[close..];
                    let (tail, after) = rest.split_once('\n').map_or((rest, ""), |(a, b)| (a, b));
                    t.push_str(tail.trim_end_matches('\r'));
                    t.push_str(eol);
                    t.push_str(&agent.block(2, 2, eol));
                    t.push_str(after);
                    t
                }
            }
        }
        Value::Seq(items) => {
            let first = items.first().ok_or_else(|| EditError::Unsafe("an empty block list".into()))?;
            let (_, dash_indent) =
                dash_line(&lines, first).ok_or_else(|| EditError::Unsafe("no '-' before the first agent".into()))?;
            let flow_items = text[lines.offset(first.pos)..].starts_with('{');
            let last = items.last().expect("not empty");
            let (last_dash, _) =
                dash_line(&lines, last).ok_or_else(|| EditError::Unsafe("no '-' before the last agent".into()))?;
            let end_line = item_last_line(&lines, last_dash, dash_indent, lines.count());
            let new_lines = if flow_items {
                format!("{}- {}{eol}", " ".repeat(dash_indent), agent.flow())
            } else {
                let key_col = match &first.value {
                    Value::Map(entries) => entries.first().map_or(first.pos.col, |(k, _)| k.pos.col),
                    _ => first.pos.col,
                };
                let key_offset = (key_col - 1).saturating_sub(dash_indent).max(2);
                agent.block(dash_indent, key_offset, eol)
            };
            let at = lines.starts[end_line + 1];
            let mut t = text[..at].to_string();
            if !t.ends_with('\n') {
                t.push_str(eol);
            }
            t.push_str(&new_lines);
            t.push_str(&text[at..]);
            t
        }
        _ => {
            // `agents:` with nothing: the list starts on the next line.
            let line = key.pos.line - 1;
            let at = lines.starts[line + 1];
            let mut t = text[..at].to_string();
            if !t.ends_with('\n') {
                t.push_str(eol);
            }
            t.push_str(&agent.block(2, 2, eol));
            t.push_str(&text[at..]);
            t
        }
    };
    let mut expected = roster.agents.clone();
    let probe = Roster::parse(&new_text).map_err(|e| EditError::Unsafe(format!("the result does not parse: {e}")))?;
    let added =
        probe.agent(name.as_str()).ok_or_else(|| EditError::Unsafe("the new agent is not in the result".into()))?;
    expected.push(added.clone());
    check(&roster, &new_text, &expected)?;
    Ok(new_text)
}

/// `text` without agent `name`.
pub fn remove_agent(text: &str, name: &str) -> Result<String, EditError> {
    let (root, roster) = parse(text)?;
    let index = roster.agents.iter().position(|a| a.name.as_str() == name).ok_or_else(|| {
        let known: Vec<&str> = roster.agents.iter().map(|a| a.name.as_str()).collect();
        EditError::Missing { name: name.into(), known: crate::names::known(name, &known) }
    })?;
    let lines = Lines::new(text);
    let (key, value) = agents_entry(&root).ok_or_else(|| EditError::Unsafe("no agents key".into()))?;
    let Value::Seq(items) = &value.value else { return Err(EditError::Unsafe("agents is not a list".into())) };
    // The item of that name (the parser's agents are the items in order, when every one parsed).
    if items.len() != roster.agents.len() {
        return Err(EditError::Unsafe("the agents list has items the parser skipped".into()));
    }
    let item = &items[index];
    let new_text = if lines.text[lines.offset(value.pos)..].starts_with('[') {
        let start = lines.offset(item.pos);
        if !text[start..].starts_with('{') {
            return Err(EditError::Unsafe("the agent is not a { ... } map".into()));
        }
        let end = flow_end(text, start).ok_or_else(|| EditError::Unsafe("unclosed {".into()))?;
        let after = &text[end..];
        let trimmed = after.trim_start_matches([' ', '\t', '\n', '\r']);
        if let Some(rest) = trimmed.strip_prefix(',') {
            // `{a}, {b}` -> `{b}`
            let rest = rest.trim_start_matches([' ', '\t']);
            format!("{}{}", &text[..start], rest)
        } else {
            // The last one: also the comma before it.
            let before = text[..start].trim_end_matches([' ', '\t', '\n', '\r']);
            let before = before.strip_suffix(',').unwrap_or(before);
            format!("{}{}", before, after)
        }
    } else {
        let (dash, dash_indent) =
            dash_line(&lines, item).ok_or_else(|| EditError::Unsafe("no '-' before the agent".into()))?;
        let limit = match items.get(index + 1) {
            Some(next) => dash_line(&lines, next).map(|(l, _)| l).unwrap_or(lines.count()),
            None => lines.count(),
        };
        let last = item_last_line(&lines, dash, dash_indent, limit);
        let mut t = text[..lines.starts[dash]].to_string();
        if items.len() == 1 {
            // The list becomes empty: `agents: []`.
            let key_line = key.pos.line - 1;
            let colon = lines.offset(key.pos) + "agents".len();
            if text.as_bytes().get(colon) != Some(&b':') || key_line >= dash {
                return Err(EditError::Unsafe("cannot find `agents:`".into()));
            }
            t = format!("{}: []{}", &text[..colon], &t[colon + 1..]);
        }
        t.push_str(&text[lines.starts[last + 1]..]);
        t
    };
    let mut expected = roster.agents.clone();
    expected.remove(index);
    check(&roster, &new_text, &expected)?;
    Ok(new_text)
}

/// The byte span of the scalar `node` in `text` (quoted or plain).
fn scalar_span(lines: &Lines<'_>, node: &Node) -> Option<(usize, usize)> {
    let text = lines.text;
    let start = lines.offset(node.pos);
    let rest = &text[start..];
    let len = match rest.chars().next()? {
        '"' => {
            let mut esc = false;
            let end = rest[1..].char_indices().find(|(_, c)| {
                let hit = *c == '"' && !esc;
                esc = *c == '\\' && !esc;
                hit
            })?;
            end.0 + 2
        }
        '\'' => rest[1..].find('\'').map(|i| i + 2)?,
        '|' | '>' | '[' | '{' | '&' | '*' | '!' => return None,
        _ => {
            let stop = rest
                .char_indices()
                .find(|(i, c)| matches!(c, ',' | '}' | ']' | '\n' | '\r') || (*c == '#' && rest[..*i].ends_with(' ')))
                .map_or(rest.len(), |(i, _)| i);
            rest[..stop].trim_end().len()
        }
    };
    Some((start, start + len))
}

/// What an answer of `fleet init` changes in a roster's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// A top-level key (`profile`, `tenant_id`): replaced, or added after `version`/`transport`.
    Top { key: &'static str, value: String },
    /// `tmux.socket_name`.
    Socket(String),
    /// The `runtime` of agent `agent` (an agent without its own `runtime:` is left alone).
    AgentRuntime { agent: String, runtime: String },
}

fn map_get<'a>(node: &'a Node, key: &str) -> Option<(&'a Node, &'a Node)> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, v)| (k, v)),
        _ => None,
    }
}

/// `text` with `setting` applied, everything else as it was; checked by parsing.
pub fn apply(text: &str, setting: &Setting) -> Result<String, EditError> {
    let (root, roster) = parse(text)?;
    let lines = Lines::new(text);
    let replace = |node: &Node, value: &str| -> Result<String, EditError> {
        let (a, b) =
            scalar_span(&lines, node).ok_or_else(|| EditError::Unsafe("the value is not a plain scalar".into()))?;
        Ok(format!("{}{}{}", &text[..a], scalar(value), &text[b..]))
    };
    let out = match setting {
        Setting::Top { key, value } => match map_get(&root, key) {
            Some((_, v)) if !v.is_null() => replace(v, value)?,
            Some((k, _)) => {
                // `key:` with no value: put it after the colon.
                let at = lines.offset(k.pos) + key.len();
                format!("{}: {}{}", &text[..at], scalar(value), &text[at + 1..])
            }
            None => {
                let Value::Map(entries) = &root.value else { return Err(EditError::Unsafe("not a map".into())) };
                let after = entries
                    .iter()
                    .filter(|(k, _)| {
                        matches!(k.as_str(), Some("version" | "transport" | "profile" | "tenant_id" | "tenantId"))
                    })
                    .map(|(k, _)| k.pos.line)
                    .max();
                let line = match after {
                    Some(l) => l,
                    None => entries.first().map(|(k, _)| k.pos.line - 1).unwrap_or(0),
                };
                let at = lines.starts[line.min(lines.count())];
                let mut t = text[..at].to_string();
                if !t.is_empty() && !t.ends_with('\n') {
                    t.push_str(lines.eol());
                }
                format!("{t}{key}: {}{}{}", scalar(value), lines.eol(), &text[at..])
            }
        },
        Setting::Socket(name) => {
            let tmux = map_get(&root, "tmux").map(|(_, v)| v);
            match tmux.and_then(|t| map_get(t, "socket_name").or_else(|| map_get(t, "socketName"))) {
                Some((_, v)) => replace(v, name)?,
                None => return Err(EditError::Unsafe("the roster has no tmux.socket_name to set".into())),
            }
        }
        Setting::AgentRuntime { agent, runtime } => {
            let index = roster
                .agents
                .iter()
                .position(|a| a.name.as_str() == agent.as_str())
                .ok_or_else(|| EditError::Missing { name: agent.clone(), known: String::new() })?;
            let items = match map_get(&root, "agents").map(|(_, v)| &v.value) {
                Some(Value::Seq(items)) if items.len() == roster.agents.len() => items,
                _ => return Err(EditError::Unsafe("the agents list has items the parser skipped".into())),
            };
            match map_get(&items[index], "runtime") {
                Some((_, v)) => replace(v, runtime)?,
                None => return Ok(text.to_string()),
            }
        }
    };
    let after = Roster::parse(&out).map_err(|e| EditError::Unsafe(format!("the result does not parse: {e}")))?;
    let holds = match setting {
        Setting::Top { key: "profile", value } => after.profile.as_deref() == Some(value.as_str()),
        Setting::Top { key: "tenant_id", value } => {
            after.tenant_id.as_ref().map(|t| t.as_str()) == Some(value.as_str())
        }
        Setting::Top { .. } => true,
        Setting::Socket(name) => after.socket == crate::roster::TmuxSocket::Name(name.clone()),
        Setting::AgentRuntime { agent, runtime } => after.agent(agent).is_some_and(|a| &a.runtime == runtime),
    };
    if !holds || after.agents.len() != roster.agents.len() {
        return Err(EditError::Unsafe(format!("the result does not hold {setting:?}")));
    }
    Ok(out)
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, host: &str, class: &str) -> Member {
        Member { name: name.into(), host: host.into(), class: Some(class.into()) }
    }

    fn add(name: &str, class: &str) -> Change {
        Change::Add { name: name.into(), host: "h1".into(), class: class.into() }
    }

    fn remove(name: &str, host: &str) -> Change {
        Change::Remove { name: name.into(), host: host.into() }
    }

    #[test]
    fn the_sole_orchestrator_stays() {
        let fleet = [m("o", "h1", "orchestrator"), m("e", "h1", "enhancer"), m("w", "h2", "worker")];
        let e = guard(&fleet, &remove("o", "h1"), false, false).unwrap_err();
        assert_eq!(e.to_string(), "Cannot remove o: it is the sole orchestrator. Add another orchestrator first.");
        assert_eq!(guard(&fleet, &remove("o", "H1"), true, true), Err(Refusal::SoleOrchestrator { name: "o".into() }));
        // Another host's agent of the same name is not it.
        assert_eq!(guard(&fleet, &remove("o", "h2"), false, false), Ok(()));
        let two = [m("o", "h1", "orchestrator"), m("o2", "h2", "orchestrator"), m("e", "h1", "enhancer")];
        assert_eq!(guard(&two, &remove("o", "h1"), false, false), Ok(()));
        assert_eq!(guard(&fleet, &remove("w", "h2"), false, false), Ok(()));
        assert_eq!(guard(&fleet, &remove("nobody", "h2"), false, false), Ok(()));
    }

    #[test]
    fn a_second_orchestrator_is_refused_unless_forced() {
        let fleet = [m("o", "h2", "orchestrator"), m("e", "h1", "enhancer")];
        let e = guard(&fleet, &add("o2", "orchestrator"), false, false).unwrap_err();
        assert_eq!(e, Refusal::SecondOrchestrator { name: "o2".into(), existing: "o@h2".into() });
        assert!(e.to_string().starts_with("Cannot add o2 as an orchestrator: the fleet already has one (o@h2)"));
        assert_eq!(guard(&fleet, &add("o2", "orchestrator"), false, true), Ok(()));
        assert_eq!(guard(&fleet, &add("w", "worker"), false, false), Ok(()));
        assert_eq!(guard(&[m("e", "h1", "enhancer")], &add("o", "orchestrator"), false, false), Ok(()));
        // Re-adding the same agent (the one already there) is not a second.
        assert_eq!(guard(&[m("o2", "h1", "orchestrator")], &add("o2", "orchestrator"), false, false), Ok(()));
    }

    #[test]
    fn the_last_enhancer_stays_unless_minimal() {
        let fleet = [m("o", "h1", "orchestrator"), m("e", "h2", "enhancer")];
        let e = guard(&fleet, &remove("e", "h2"), false, false).unwrap_err();
        assert_eq!(e, Refusal::SoleEnhancer { name: "e".into() });
        assert!(e.to_string().starts_with("Cannot remove e: it is the sole enhancer"));
        assert_eq!(guard(&fleet, &remove("e", "h2"), true, false), Ok(()));
        let two = [m("o", "h1", "orchestrator"), m("e", "h2", "enhancer"), m("e2", "h1", "enhancer")];
        assert_eq!(guard(&two, &remove("e", "h2"), false, false), Ok(()));
        let classless = [Member { name: "x".into(), host: "h1".into(), class: None }];
        assert_eq!(guard(&classless, &remove("x", "h1"), false, false), Ok(()));
    }

    const BLOCK: &str = "# my fleet\nversion: 1\ntmux: { socket_name: s }  # the socket\nagents:\n  # the boss\n  - name: orchestrator\n    runtime: claude   # keep\n    class: orchestrator\n\n  - name: enhancer\n    runtime: pi\n    class: enhancer\n    kickstart_template: |\n      line one\n      line two\n# after the agents\ndefaults: { working_directory: ~/src }\n";

    fn new(name: &str) -> NewAgent {
        NewAgent {
            name: name.into(),
            runtime: "codex".into(),
            class: "worker".into(),
            model_hint: Some("openai-codex/gpt-5.5:high".into()),
            host: None,
        }
    }

    #[test]
    fn add_to_a_block_list_keeps_comments_and_order() {
        let out = add_agent(BLOCK, &new("w1")).unwrap();
        let expected = BLOCK.replace(
            "      line two\n",
            "      line two\n  - name: w1\n    runtime: codex\n    class: worker\n    model_hint: \"openai-codex/gpt-5.5:high\"\n",
        );
        assert_eq!(out, expected);
        let r = Roster::parse(&out).unwrap();
        assert_eq!(r.agents[2].model_hint.as_deref(), Some("openai-codex/gpt-5.5:high"));
        assert_eq!(r.agents[1].kickstart_template.as_deref(), Some("line one\nline two\n"));
        let again = add_agent(&out, &new("w1")).unwrap_err();
        assert!(matches!(again, EditError::Exists { line: 16, .. }), "{again}");
    }

    #[test]
    fn remove_from_a_block_list_cuts_only_its_lines() {
        let out = remove_agent(BLOCK, "orchestrator").unwrap();
        assert_eq!(
            out,
            "# my fleet\nversion: 1\ntmux: { socket_name: s }  # the socket\nagents:\n  # the boss\n\n  - name: enhancer\n    runtime: pi\n    class: enhancer\n    kickstart_template: |\n      line one\n      line two\n# after the agents\ndefaults: { working_directory: ~/src }\n"
        );
        let out = remove_agent(&out, "enhancer").unwrap();
        assert!(out.contains("agents: []\n  # the boss\n\n# after the agents\n"), "{out}");
        assert_eq!(Roster::parse(&out).unwrap().agents.len(), 0);
        let back = add_agent(&out, &new("w")).unwrap();
        assert!(back.contains("agents:\n  - name: w\n    runtime: codex\n"), "{back}");
        let e = remove_agent(BLOCK, "nobody").unwrap_err();
        assert!(e.to_string().starts_with("no agent nobody in the roster (known: "), "{e}");
    }

    #[test]
    fn flow_items_and_flow_lists_keep_their_style() {
        let text =
            "agents:\n- { name: a, runtime: stub }\n- { name: b, runtime: stub, class: enhancer }\nruntimes: {}\n";
        let out = add_agent(text, &NewAgent { host: Some("h1".into()), ..new("c") }).unwrap();
        assert!(
            out.contains("class: enhancer }\n- { name: c, runtime: codex, class: worker, model_hint: \"openai-codex/gpt-5.5:high\", host: h1 }\nruntimes"),
            "{out}"
        );
        let out = remove_agent(&out, "a").unwrap();
        assert!(out.starts_with("agents:\n- { name: b,"), "{out}");
        let flow = "agents: [ { name: a, runtime: pi }, {name: b, runtime: pi} ]  # two\n";
        let out = add_agent(flow, &new("c")).unwrap();
        assert!(out.starts_with("agents: [ { name: a, runtime: pi }, {name: b, runtime: pi}, { name: c,"), "{out}");
        assert!(out.ends_with("} ]  # two\n"), "{out}");
        let out = remove_agent(&out, "b").unwrap();
        assert!(out.starts_with("agents: [ { name: a, runtime: pi }, { name: c,"), "{out}");
        let out = remove_agent(&out, "c").unwrap();
        assert_eq!(out, "agents: [ { name: a, runtime: pi } ]  # two\n");
        let out = remove_agent(&out, "a").unwrap();
        assert_eq!(out, "agents: [ ]  # two\n");
        let out = add_agent("agents: []\n", &new("x")).unwrap();
        assert_eq!(
            out,
            "agents:\n  - name: x\n    runtime: codex\n    class: worker\n    model_hint: \"openai-codex/gpt-5.5:high\"\n"
        );
    }

    #[test]
    fn zero_indent_lists_crlf_and_no_final_newline() {
        let text = "agents:\r\n- name: a\r\n  runtime: pi\r\nversion: 1";
        let out = add_agent(text, &NewAgent { model_hint: None, ..new("b") }).unwrap();
        assert_eq!(
            out,
            "agents:\r\n- name: a\r\n  runtime: pi\r\n- name: b\r\n  runtime: codex\r\n  class: worker\r\nversion: 1"
        );
        let out = remove_agent(&out, "a").unwrap();
        assert_eq!(out, "agents:\r\n- name: b\r\n  runtime: codex\r\n  class: worker\r\nversion: 1");
        let last =
            add_agent("agents:\n  - { name: a, runtime: pi }", &NewAgent { model_hint: None, ..new("b") }).unwrap();
        assert_eq!(last, "agents:\n  - { name: a, runtime: pi }\n  - { name: b, runtime: codex, class: worker }\n");
    }

    #[test]
    fn add_then_remove_gives_every_preset_back() {
        for text in [
            include_str!("../../../framework/fleet/presets/general.yaml"),
            include_str!("../../../framework/fleet/presets/coding.yaml"),
            include_str!("../../../framework/fleet/presets/research.yaml"),
            include_str!("../../../framework/fleet/presets/hybrid.yaml"),
            include_str!("../../../framework/fleet/presets/minimal.yaml"),
        ] {
            let added = add_agent(text, &new("extra-1")).unwrap();
            assert_eq!(remove_agent(&added, "extra-1").unwrap(), text);
            let first = Roster::parse(text).unwrap().agents[0].name.to_string();
            let removed = remove_agent(text, &first).unwrap();
            assert_eq!(Roster::parse(&removed).unwrap().agents.len(), Roster::parse(text).unwrap().agents.len() - 1);
            assert_eq!(
                removed.lines().filter(|l| l.starts_with('#')).count(),
                text.lines().filter(|l| l.starts_with('#')).count()
            );
        }
    }

    #[test]
    fn settings_change_one_value_and_keep_the_rest() {
        let text = include_str!("../../../framework/fleet/presets/coding.yaml");
        let t = apply(text, &Setting::Top { key: "tenant_id", value: "acme".into() }).unwrap();
        assert_eq!(t, text.replace("profile: coding\n", "profile: coding\ntenant_id: acme\n"));
        let t2 = apply(&t, &Setting::Top { key: "tenant_id", value: "ops".into() }).unwrap();
        assert_eq!(t2, t.replace("tenant_id: acme", "tenant_id: ops"));
        let t3 = apply(&t2, &Setting::Socket("my-fleet".into())).unwrap();
        assert_eq!(t3, t2.replace("socket_name: mosaic-fleet,", "socket_name: my-fleet,"));
        let t4 = apply(&t3, &Setting::AgentRuntime { agent: "coder0-0".into(), runtime: "pi".into() }).unwrap();
        assert_eq!(Roster::parse(&t4).unwrap().agent("coder0-0").unwrap().runtime, "pi");
        assert_eq!(t4.lines().count(), t3.lines().count());
        let t5 = apply(&t4, &Setting::Top { key: "profile", value: "mine".into() }).unwrap();
        assert!(t5.contains("profile: mine\n") && t5.starts_with("# Preset \"coding\""));
        assert_eq!(apply(&t5, &Setting::Top { key: "profile", value: "mine".into() }).unwrap(), t5, "idempotent");
        let bare = apply("agents: []\n", &Setting::Top { key: "profile", value: "minimal".into() }).unwrap();
        assert_eq!(bare, "profile: minimal\nagents: []\n");
        let quoted =
            apply("tenant_id: \"a\"  # x\nagents: []\n", &Setting::Top { key: "tenant_id", value: "b".into() })
                .unwrap();
        assert_eq!(quoted, "tenant_id: b  # x\nagents: []\n");
        assert!(matches!(apply("agents: []\n", &Setting::Socket("s".into())), Err(EditError::Unsafe(_))));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(add_agent("agents: [\n", &new("x")), Err(EditError::Invalid(_))));
        let e = add_agent("agents: []\n", &NewAgent { name: "a b".into(), ..new("x") }).unwrap_err();
        assert!(e.to_string().contains("contains ' '"), "{e}");
        let e = add_agent("agents: []\n", &NewAgent { runtime: " ".into(), ..new("x") }).unwrap_err();
        assert!(e.to_string().contains("runtime"), "{e}");
    }

    #[test]
    fn scalars_read_back_as_written() {
        for s in
            ["claude", "true", "1.5", "a: b", "x#y", "\"q\"", "back\\slash", "tab\there", "-lead", "", "~", "ok/x-1.2"]
        {
            let text = format!("agents:\n  - name: a\n    runtime: {}\n", scalar(s));
            match Roster::parse(&text) {
                Ok(r) => assert_eq!(r.agents[0].runtime, s, "{text}"),
                Err(e) => assert!(s.is_empty() || s == "~", "{s:?}: {e}"),
            }
        }
        assert_eq!(scalar("claude"), "claude");
        assert_eq!(scalar("true"), "\"true\"");
    }
}
