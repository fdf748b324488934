//! framework/fleet/roster.schema.json is kept honest: every preset, the
//! documented examples, the rosters of the test harnesses and a list of
//! representative rosters (valid and invalid) are validated with a real JSON
//! Schema validator, and for each the schema and the parser
//! (`fleet_core::roster::Roster::parse`) must agree: valid by the schema
//! exactly when the parser accepts it.
//!
//! The YAML is turned into JSON with the same YAML reader the parser uses
//! (`fleet_core::yaml`), resolving plain scalars as YAML 1.2's core schema
//! does (null, booleans, integers, floats, else strings), as an editor's
//! YAML language server would.

use fleet_core::roster::Roster;
use fleet_core::yaml::{self, Node, Value};
use serde_json::{Map, Number, Value as Json};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema() -> Json {
    let text = std::fs::read_to_string(repo().join("framework/fleet/roster.schema.json")).expect("the schema");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("the schema compiles")
}

/// A plain YAML scalar as YAML 1.2's core schema resolves it.
fn plain_scalar(node: &Node, text: &str) -> Json {
    if node.is_null() {
        return Json::Null;
    }
    if let Some(b) = node.as_bool() {
        return Json::Bool(b);
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits(unsigned) {
        if let Ok(i) = text.parse::<i64>() {
            return Json::Number(i.into());
        }
        if let Ok(u) = text.trim_start_matches('+').parse::<u64>() {
            return Json::Number(u.into());
        }
    }
    // [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => (digits(a) && (b.is_empty() || digits(b))) || (a.is_empty() && digits(b)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    if mantissa_ok
        && exponent_ok
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Json::Number(n);
    }
    Json::String(text.to_string())
}

/// The JSON form of a YAML tree; `Err` for what JSON cannot hold (a key that
/// is not a text, a key given twice), which the YAML spec forbids too.
fn to_json(node: &Node) -> Result<Json, String> {
    Ok(match &node.value {
        Value::Scalar { text, quoted: true } => Json::String(text.clone()),
        Value::Scalar { text, quoted: false } => plain_scalar(node, text),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match (&k.value, k.is_null()) {
                    (Value::Scalar { text, .. }, false) => text.clone(),
                    _ => return Err(format!("{}: a key that is not a text", k.pos)),
                };
                if map.insert(key.clone(), to_json(v)?).is_some() {
                    return Err(format!("{}: key {key:?} given twice", k.pos));
                }
            }
            Json::Object(map)
        }
    })
}

/// What the schema and the parser say of one roster text.
struct Verdict {
    schema: Result<(), Vec<String>>,
    parser: Result<(), Vec<String>>,
}

fn judge(v: &jsonschema::Validator, text: &str) -> Verdict {
    let parser = Roster::parse(text).map(|_| ()).map_err(|e| e.problems.iter().map(|p| p.to_string()).collect());
    let schema = match yaml::parse(text) {
        Err(e) => Err(vec![format!("YAML syntax: {}", e.message)]),
        Ok(tree) => match to_json(&tree) {
            Err(e) => Err(vec![format!("not representable as JSON: {e}")]),
            Ok(json) => {
                let errors: Vec<String> = v.iter_errors(&json).map(|e| format!("{}: {e}", e.instance_path())).collect();
                if errors.is_empty() { Ok(()) } else { Err(errors) }
            }
        },
    };
    Verdict { schema, parser }
}

/// Schema and parser agree on `text`; returns whether it is valid.
#[track_caller]
fn agree(v: &jsonschema::Validator, what: &str, text: &str) -> bool {
    let verdict = judge(v, text);
    assert_eq!(
        verdict.schema.is_ok(),
        verdict.parser.is_ok(),
        "{what}: the schema says {:?}, the parser says {:?}\n--- roster:\n{text}",
        verdict.schema,
        verdict.parser
    );
    verdict.parser.is_ok()
}

#[test]
fn the_schema_is_a_valid_2020_12_schema() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    if let Err(e) = jsonschema::meta::validate(&s) {
        panic!("the schema does not validate against its meta-schema: {e}");
    }
}

#[test]
fn every_preset_is_valid_by_schema_and_parser() {
    let v = validator();
    let dir = repo().join("framework/fleet/presets");
    let mut names = vec![];
    for entry in std::fs::read_dir(&dir).expect("the presets dir") {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(agree(&v, &path.display().to_string(), &text), "{} is invalid", path.display());
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names, ["coding.yaml", "general.yaml", "hybrid.yaml", "minimal.yaml", "research.yaml"]);
}

/// The roster example of docs/protocol.md (the first yaml block after its
/// "### Roster" heading).
fn protocol_example() -> String {
    let doc = std::fs::read_to_string(repo().join("docs/protocol.md")).expect("docs/protocol.md");
    let section = &doc[doc.find("### Roster").expect("a Roster section")..];
    let block = &section[section.find("```yaml\n").expect("a yaml block") + 8..];
    block[..block.find("```").expect("the block ends")].to_string()
}

/// The example of CONTEXT.md (the roster format of existing hosts).
const CONTEXT_EXAMPLE: &str = "version: 1
transport: tmux
tmux: { socket_name: mosaic-fleet, holder_session: _holder }  # socket_name absent = default tmux server (no -L)
defaults: { working_directory: ~/src }
runtimes: { claude: { reset_command: /clear }, pi: { reset_command: /new } }
agents:
  - name: orchestrator            # the tmux session name
    runtime: claude               # required
    class: orchestrator
    persistent_persona: true      # bool or string
    model_hint: openai-codex/gpt-5.5:high
    working_directory: ~/src/app
    reset_between_tasks: false
    kickstart_template: ...
";

/// The rosters the test harnesses and the demo write (tests/util,
/// tests/netns_util.rs, crates/fleet-cli/src/demo.rs), with their paths.
const HARNESS_ROSTERS: &[&str] = &[
    "version: 1
tenant_id: acme
tmux: { socket_name: fleet-test-4242, holder_session: _holder }
runtimes:
  stub: { command: \"/work/target/debug/fleet stub-agent\", heartbeat: self }
  drafty: { command: \"/work/target/debug/fleet stub-agent --draft\", process_names: [fleet], heartbeat: self }
  deaf: { command: \"/work/target/debug/fleet stub-agent --deaf\", process_names: [fleet], heartbeat: self }
  quiet: { command: \"/work/target/debug/fleet stub-agent --no-heartbeat\", process_names: [fleet], heartbeat: self }
  claude: { command: \"sleep 1000\" }
  crashing: { command: \"sh -c 'exit 3'\" }
agents:
  - { name: orchestrator, runtime: stub, class: orchestrator }
  - { name: enhancer, runtime: claude, class: enhancer }
  - { name: crasher, runtime: crashing }
",
    "version: 1
tenant_id: acme
tmux: { socket_name: fleetnt-4242-0-a }
runtimes:
  stub: { command: \"/work/target/debug/fleet stub-agent\", heartbeat: self }
  drafty: { command: \"/work/target/debug/fleet stub-agent --draft\", process_names: [fleet], heartbeat: self }
  quiet: { command: \"/work/target/debug/fleet stub-agent --no-heartbeat\", process_names: [fleet], heartbeat: self }
agents:
  - { name: coder, runtime: stub }
  - { name: quiet, runtime: quiet }
",
    "tmux: { socket_path: \"/tmp/fleet-test/tmux-0/s\" }
runtimes: { r: { command: \"sleep 1000;\", heartbeat: self, reset_command: \"/clear;\" } }
agents:
  - { name: a, runtime: r, working_directory: /, model_hint: \"gpt;\" }
",
];

#[test]
fn documented_and_harness_rosters_are_valid_by_schema_and_parser() {
    let v = validator();
    assert!(agree(&v, "docs/protocol.md example", &protocol_example()));
    assert!(agree(&v, "CONTEXT.md example", CONTEXT_EXAMPLE));
    for (i, text) in HARNESS_ROSTERS.iter().enumerate() {
        assert!(agree(&v, &format!("harness roster {i}"), text));
    }
}

/// Rosters the parser accepts: the schema must accept them too.
const VALID: &[(&str, &str)] = &[
    ("the smallest roster", "agents: []\n"),
    ("no socket: the default server", "agents:\n  - { name: a, runtime: pi }\n"),
    (
        "camelCase everywhere",
        "tenantId: ops
tmux: { socketName: s1, holderSession: h }
defaults: { workingDirectory: ~/src, modelHint: m, resetBetweenTasks: true }
runtimes:
  pi: { resetCommand: /new, processNames: [pi, node], enterDelayMs: 0 }
agents:
  - { name: a, runtime: pi, workingDirectory: /x, resetBetweenTasks: true, persistentPersona: false, modelHint: m, kickstartTemplate: k }
",
    ),
    (
        "every key in snake_case",
        "version: 1
transport: tmux
tenant_id: Acme-2
tmux: { socket_path: /run/user/1000/fleet.sock, holder_session: _holder }
defaults: { working_directory: ~/src, runtime: claude, model_hint: x, reset_between_tasks: false }
runtimes:
  claude: { reset_command: /clear, command: \"claude --dangerously-skip-permissions\", process_names: [claude, node], heartbeat: launcher, enter_delay_ms: 10000 }
  stub: { command: fleet stub-agent, heartbeat: self }
agents:
  - name: orchestrator
    class: orchestrator
    persistent_persona: \"a calm planner\"
    model_hint: openai-codex/gpt-5.5:high
    working_directory: ~/src/app
    reset_between_tasks: false
    kickstart_template: |
      You are {name}.
    host: dragon-lin
    ssh: me@dragon-lin
    socket: other
  - { name: b, runtime: stub, socket: /tmp/s }
",
    ),
    ("defaults.runtime fills a missing runtime", "defaults: { runtime: pi }\nagents:\n  - name: a\n"),
    ("a null runtime falls back to defaults", "defaults: { runtime: pi }\nagents:\n  - { name: a, runtime: ~ }\n"),
    (
        "null values count as absent",
        "version:\ntransport: ~\ntenant_id:\ntmux:\ndefaults:\nruntimes:\n  claude:\n  pi: { command: ~, heartbeat: }\nagents:\n  - { name: a, runtime: claude, class: ~, host: }\n",
    ),
    ("empty tmux and defaults maps", "tmux: {}\ndefaults: {}\nruntimes: {}\nagents: []\n"),
    (
        "plain numbers and booleans where a text is expected",
        "tmux: { socket_name: 5 }\nagents:\n  - { name: 007, runtime: 5, class: true, model_hint: 4.5, working_directory: 2024, persistent_persona: yes }\n",
    ),
    ("a socket name with dots", "tmux: { socket_name: my.fleet }\nagents: []\n"),
    ("an empty per-agent socket is the default server", "agents:\n  - { name: a, runtime: pi, socket: \"\" }\n"),
    ("a name of 128 characters", "agents:\n  - { name: NAME128, runtime: pi }\n"),
    ("a tenant id of 63 characters", "tenant_id: LABEL63\nagents: []\n"),
    ("version 1 written 01", "version: 01\nagents: []\n"),
    ("an empty list of process names", "runtimes: { x: { process_names: [] } }\nagents: []\n"),
    (
        "an anchor and an alias",
        "runtimes: { claude: &r { reset_command: /clear }, pi: *r }\nagents:\n  - { name: a, runtime: pi }\n",
    ),
];

/// Rosters the parser refuses: the schema must refuse them too.
const INVALID: &[(&str, &str)] = &[
    ("an empty file", ""),
    ("a comment only", "# nothing\n"),
    ("a list at the top", "- name: a\n"),
    ("no agents key", "version: 1\n"),
    ("agents: null", "agents:\n"),
    ("agents as a map", "agents: { a: 1 }\n"),
    ("an agent that is a scalar", "agents:\n  - orchestrator\n"),
    ("an agent that is null", "agents:\n  - ~\n"),
    ("an unknown top-level key", "bogus: 1\nagents: []\n"),
    ("an unknown agent key", "agents:\n  - { name: a, runtime: pi, colour: red }\n"),
    ("a mixed-case key", "agents:\n  - { name: a, runtime: pi, working_Directory: x }\n"),
    ("a capitalised key", "Agents: []\n"),
    ("both spellings at the top", "tenant_id: a\ntenantId: a\nagents: []\n"),
    ("both spellings in tmux", "tmux: { socket_name: a, socketName: b }\nagents: []\n"),
    ("both spellings, one of them null", "tmux: { holder_session: h, holderSession: ~ }\nagents: []\n"),
    ("both spellings in defaults", "defaults: { model_hint: a, modelHint: b }\nagents: []\n"),
    ("both spellings in a runtime", "runtimes: { x: { enter_delay_ms: 1, enterDelayMs: 2 } }\nagents: []\n"),
    ("both spellings in an agent", "agents:\n  - { name: a, runtime: pi, model_hint: a, modelHint: b }\n"),
    ("a name with a dot", "agents:\n  - { name: a.b, runtime: pi }\n"),
    ("a name with a space", "agents:\n  - { name: a b, runtime: pi }\n"),
    ("a name with a colon", "agents:\n  - { name: \"a:b\", runtime: pi }\n"),
    ("an empty name", "agents:\n  - { name: \"\", runtime: pi }\n"),
    ("a name of 129 characters", "agents:\n  - { name: NAME129, runtime: pi }\n"),
    ("a missing name", "agents:\n  - { runtime: pi }\n"),
    ("a null name", "agents:\n  - { name: ~, runtime: pi }\n"),
    ("a list as a name", "agents:\n  - { name: [a], runtime: pi }\n"),
    ("a missing runtime, no default", "agents:\n  - { name: a }\n"),
    ("a null runtime, no default", "agents:\n  - { name: a, runtime: ~ }\n"),
    ("a null default runtime", "defaults: { runtime: ~ }\nagents:\n  - { name: a }\n"),
    ("a list as a runtime", "agents:\n  - { name: a, runtime: [pi] }\n"),
    ("version 2", "version: 2\nagents: []\n"),
    ("version \"1\" quoted", "version: \"1\"\nagents: []\n"),
    ("transport ssh", "transport: ssh\nagents: []\n"),
    ("a tenant id with '_'", "tenant_id: a_b\nagents: []\n"),
    ("a tenant id starting with '-'", "tenant_id: -ab\nagents: []\n"),
    ("a tenant id of 64 characters", "tenant_id: LABEL64\nagents: []\n"),
    ("a host with '.'", "agents:\n  - { name: a, runtime: pi, host: dragon.lan }\n"),
    ("an empty socket name", "tmux: { socket_name: \"\" }\nagents: []\n"),
    ("an empty socket path", "tmux: { socketPath: '' }\nagents: []\n"),
    ("a socket name with '/'", "tmux: { socket_name: a/b }\nagents: []\n"),
    ("a socket name and a path", "tmux: { socket_name: a, socket_path: /tmp/s }\nagents: []\n"),
    ("a socket name and a path in camelCase", "tmux: { socketName: a, socketPath: /tmp/s }\nagents: []\n"),
    ("a holder session with '.'", "tmux: { holder_session: a.b }\nagents: []\n"),
    ("tmux as a list", "tmux: [a]\nagents: []\n"),
    ("an unknown tmux key", "tmux: { socket: a }\nagents: []\n"),
    ("defaults as a scalar", "defaults: x\nagents: []\n"),
    ("an unknown defaults key", "defaults: { class: x }\nagents: []\n"),
    ("runtimes as a list", "runtimes: [claude]\nagents: []\n"),
    ("runtimes as a scalar", "runtimes: claude\nagents: []\n"),
    ("a runtime as a list", "runtimes: { x: [a] }\nagents: []\n"),
    ("an unknown runtime key", "runtimes: { x: { model: y } }\nagents: []\n"),
    ("heartbeat: sometimes", "runtimes: { x: { heartbeat: sometimes } }\nagents: []\n"),
    ("enter_delay_ms over 10000", "runtimes: { x: { enter_delay_ms: 10001 } }\nagents: []\n"),
    ("enter_delay_ms negative", "runtimes: { x: { enter_delay_ms: -1 } }\nagents: []\n"),
    ("enter_delay_ms quoted", "runtimes: { x: { enter_delay_ms: \"5\" } }\nagents: []\n"),
    ("enter_delay_ms a word", "runtimes: { x: { enter_delay_ms: soon } }\nagents: []\n"),
    ("enter_delay_ms a fraction", "runtimes: { x: { enter_delay_ms: 1.5 } }\nagents: []\n"),
    ("process_names a scalar", "runtimes: { x: { process_names: node } }\nagents: []\n"),
    ("process_names nested", "runtimes: { x: { process_names: [node, [bun]] } }\nagents: []\n"),
    ("process_names with a null", "runtimes: { x: { process_names: [node, ~] } }\nagents: []\n"),
    ("persistent_persona a list", "agents:\n  - { name: a, runtime: pi, persistent_persona: [x] }\n"),
    ("persistent_persona a map", "agents:\n  - { name: a, runtime: pi, persistent_persona: { a: 1 } }\n"),
    ("reset_between_tasks maybe", "agents:\n  - { name: a, runtime: pi, reset_between_tasks: maybe }\n"),
    ("reset_between_tasks quoted", "agents:\n  - { name: a, runtime: pi, reset_between_tasks: \"true\" }\n"),
    ("reset_between_tasks yes", "defaults: { reset_between_tasks: yes }\nagents: []\n"),
    ("a map as a working directory", "agents:\n  - { name: a, runtime: pi, working_directory: { a: 1 } }\n"),
    ("a YAML syntax error", "agents: [\n"),
    ("a key that is a list", "? [a, b]\n: 1\nagents: []\n"),
    ("a null key", "~: 1\nagents: []\n"),
    ("a key given twice", "agents: []\nagents: []\n"),
];

fn expand(text: &str) -> String {
    text.replace("NAME128", &"n".repeat(128))
        .replace("NAME129", &"n".repeat(129))
        .replace("LABEL63", &format!("a{}", "b".repeat(62)))
        .replace("LABEL64", &format!("a{}", "b".repeat(63)))
}

#[test]
fn schema_and_parser_agree_on_valid_rosters() {
    let v = validator();
    for (what, text) in VALID {
        assert!(agree(&v, what, &expand(text)), "{what}: expected valid");
    }
}

#[test]
fn schema_and_parser_agree_on_invalid_rosters() {
    let v = validator();
    for (what, text) in INVALID {
        assert!(!agree(&v, what, &expand(text)), "{what}: expected invalid");
    }
}

/// What a JSON Schema cannot say: agent names are unique across the list (a
/// property of items, not of whole items). The parser refuses duplicates; the
/// schema states the rule in its `$comment` and cannot check it.
#[test]
fn unique_agent_names_are_the_parsers_alone() {
    let v = validator();
    let text = "agents:\n  - { name: a, runtime: pi }\n  - { name: a, runtime: claude }\n";
    let verdict = judge(&v, text);
    assert!(verdict.schema.is_ok(), "{:?}", verdict.schema);
    let problems = verdict.parser.unwrap_err();
    assert!(problems[0].contains("duplicate agent name \"a\""), "{problems:?}");
    assert!(schema()["$comment"].as_str().unwrap().contains("agent names must be unique"));
}

#[test]
fn schema_errors_name_the_place() {
    let v = validator();
    let verdict = judge(&v, "agents:\n  - { name: a, runtime: pi }\n  - { name: bad name, runtime: pi }\n");
    let errors = verdict.schema.unwrap_err();
    assert!(errors.iter().any(|e| e.starts_with("/agents/1/name")), "{errors:?}");
}
