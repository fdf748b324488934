//! `fleet context add|use|list|current|remove`: saved remote targets,
//! kubectl style, so that reaching another host's node is not two
//! environment variables every time.
//!
//! Kept in `$MOSAIC_HOME/fleet/contexts.json` (written atomically):
//! `{"current": "lab", "contexts": {"lab": {"node": "https://h:7420",
//! "certs": "/path"}}}`. Which node a command talks to, first match wins:
//! `FLEET_NODE` (with `FLEET_CERTS_DIR`), `FLEET_CONTEXT=NAME`, the current
//! context, the local socket. The name `local` is the local socket.

use crate::context::Paths;
use crate::exit::{self, CliResult};
use crate::table;
use anyhow::anyhow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum ContextCmd {
    /// Save a remote node and the certs dir to reach it with (ca.pem,
    /// client.pem, client.key).
    Add {
        name: String,
        /// The node: https://HOST:PORT.
        #[arg(long)]
        node: String,
        /// The certs dir with an operator or viewer certificate.
        #[arg(long)]
        certs: PathBuf,
    },
    /// Make NAME the current context (`local`: this host's node by its socket).
    Use { name: String },
    /// The saved contexts, the current one marked.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The current context's name.
    Current,
    /// Forget a context.
    Remove { name: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    pub node: String,
    pub certs: PathBuf,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Contexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Saved>,
}

fn file(paths: &Paths) -> PathBuf {
    paths.mosaic_home.join("fleet/contexts.json")
}

impl Contexts {
    pub fn load(path: &Path) -> Result<Contexts, String> {
        match fleet_core::file::read_to_string(path, fleet_core::file::CONFIG_MAX) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn save(&self, path: &Path) -> CliResult {
        let dir = path.parent().ok_or_else(|| exit::failed(anyhow!("{} has no directory", path.display())))?;
        std::fs::create_dir_all(dir).map_err(|e| exit::failed(anyhow!("cannot create {}: {e}", dir.display())))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(exit::failed)?;
        let text = serde_json::to_string_pretty(self).map_err(exit::failed)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(exit::failed)?;
        tmp.persist(path).map_err(|e| exit::failed(anyhow!("cannot write {}: {e}", path.display())))?;
        Ok(())
    }

    /// The context a command uses: `FLEET_CONTEXT`, else the current one;
    /// `None` for the local socket.
    pub fn chosen(&self, env: Option<&str>) -> Result<Option<(&str, &Saved)>, String> {
        let name = env.filter(|n| !n.is_empty()).or(self.current.as_deref());
        match name {
            None | Some("local") => Ok(None),
            Some(n) => self.contexts.get_key_value(n).map(|(k, v)| Some((k.as_str(), v))).ok_or_else(|| {
                let names: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
                format!("no context {n} ({}): `fleet context list`", fleet_core::names::known(n, &names))
            }),
        }
    }
}

/// The saved target `node::target` should use, if any; a broken file or a
/// missing context is an error for the caller to print.
pub fn chosen(paths: &Paths) -> Result<Option<Saved>, String> {
    let c = Contexts::load(&file(paths))?;
    let env = std::env::var("FLEET_CONTEXT").ok();
    Ok(c.chosen(env.as_deref())?.map(|(_, s)| s.clone()))
}

pub fn run(cmd: ContextCmd) -> CliResult {
    let paths = Paths::from_env();
    let path = file(&paths);
    let mut c = Contexts::load(&path).map_err(|e| exit::failed(anyhow!(e)))?;
    match cmd {
        ContextCmd::Add { name, node, certs } => {
            fleet_core::names::DnsLabel::parse_as("context name", &name).map_err(exit::usage)?;
            if name == "local" {
                return Err(exit::usage(anyhow!("`local` is the local socket; choose another name")));
            }
            if !node.starts_with("https://") {
                return Err(exit::usage(anyhow!("--node {node:?}: expected https://HOST:PORT")));
            }
            let certs = std::path::absolute(&certs).map_err(exit::failed)?;
            let missing: Vec<&str> =
                ["ca.pem", "client.pem", "client.key"].into_iter().filter(|f| !certs.join(f).exists()).collect();
            if !missing.is_empty() {
                return Err(exit::usage(anyhow!(
                    "{} lacks {}: issue an operator or viewer certificate with `fleet certs issue operator --name NAME --out {}` on the CA's host",
                    certs.display(),
                    missing.join(", "),
                    certs.display()
                )));
            }
            c.contexts.insert(name.clone(), Saved { node, certs });
            c.save(&path)?;
            println!("Context {name} saved; `fleet context use {name}` makes it current.");
        }
        ContextCmd::Use { name } => {
            if name != "local" && !c.contexts.contains_key(&name) {
                let names: Vec<&str> = c.contexts.keys().map(String::as_str).collect();
                return Err(exit::usage(anyhow!("no context {name} ({})", fleet_core::names::known(&name, &names))));
            }
            c.current = (name != "local").then(|| name.clone());
            c.save(&path)?;
            println!("Now using {name}.");
        }
        ContextCmd::List { json } => {
            let current = c.current.clone().unwrap_or_else(|| "local".into());
            if json {
                crate::out::line(serde_json::json!({"current": current, "contexts": c.contexts}))?;
            } else {
                let mut rows =
                    vec![vec![mark(&current, "local"), "local".into(), "this host's node socket".into(), "-".into()]];
                for (name, s) in &c.contexts {
                    rows.push(vec![mark(&current, name), name.clone(), s.node.clone(), s.certs.display().to_string()]);
                }
                crate::out::print(&table::render(&["", "NAME", "NODE", "CERTS"], &rows))?;
            }
        }
        ContextCmd::Current => println!("{}", c.current.as_deref().unwrap_or("local")),
        ContextCmd::Remove { name } => {
            if c.contexts.remove(&name).is_none() {
                return Err(exit::usage(anyhow!("no context {name}")));
            }
            if c.current.as_deref() == Some(name.as_str()) {
                c.current = None;
            }
            c.save(&path)?;
            println!("Context {name} removed.");
        }
    }
    Ok(())
}

fn mark(current: &str, name: &str) -> String {
    if current == name { "*".into() } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins_then_the_current_context_then_local() {
        let mut c = Contexts::default();
        let lab = Saved { node: "https://h:1".into(), certs: "/c".into() };
        c.contexts.insert("lab".into(), lab.clone());
        assert_eq!(c.chosen(None), Ok(None), "no current: local");
        c.current = Some("lab".into());
        assert_eq!(c.chosen(None), Ok(Some(("lab", &lab))));
        assert_eq!(c.chosen(Some("local")), Ok(None));
        assert_eq!(c.chosen(Some("")), Ok(Some(("lab", &lab))), "an empty FLEET_CONTEXT is unset");
        let e = c.chosen(Some("lap")).unwrap_err();
        assert!(e.contains("no context lap (known: lab; did you mean lab?)"), "{e}");
    }
}
