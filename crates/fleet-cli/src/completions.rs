//! `fleet completions SHELL`: clap's script for the commands and flags, plus
//! the agent names of the mesh for every command that takes an agent
//! (`AGENT[@HOST]`), asked of the node when the user presses Tab
//! (`fleet __targets`, hidden).

use crate::context::{GlobalArgs, Paths};
use crate::exit::CliResult;
use crate::node;
use clap::CommandFactory;
use fleet_proto::v1;
use std::time::Duration;

/// How long Tab may wait for the node before it completes from the roster alone.
const ASK_NODE_FOR: Duration = Duration::from_millis(800);

/// The subcommands whose positional `target` is an agent address.
fn target_verbs(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands()
        .filter(|s| s.get_positionals().any(|a| a.get_id() == "target"))
        .map(|s| s.get_name().to_string())
        .collect()
}

/// The script for `shell`: clap's, with agent names completed where a command takes one
/// (bash, zsh, fish; elvish and powershell get clap's script as it is).
pub fn script(shell: clap_complete::Shell) -> String {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "fleet", &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    let verbs = target_verbs(&cmd).join(" ");
    match shell {
        clap_complete::Shell::Bash => format!("{script}{}", bash_targets(&verbs)),
        clap_complete::Shell::Zsh => zsh_targets(&script),
        clap_complete::Shell::Fish => format!(
            "{script}complete -c fleet -n \"__fish_seen_subcommand_from {verbs}\" -f -a \"(fleet __targets 2>/dev/null)\"\n"
        ),
        _ => script,
    }
}

/// bash: a wrapper that completes agent names for a target verb's positional
/// word and leaves everything else (flags, their values) to clap's `_fleet`.
fn bash_targets(verbs: &str) -> String {
    let cases = verbs.replace(' ', "|");
    format!(
        r#"
# Agent names of the mesh (`fleet __targets` asks the node; the roster without one).
_fleet_with_targets() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [[ $COMP_CWORD -ge 2 && "$cur" != -* && "$prev" != -* ]]; then
        case "${{COMP_WORDS[1]}}" in
            {cases})
                COMPREPLY=( $(compgen -W "$(fleet __targets 2>/dev/null)" -- "$cur") )
                return 0
                ;;
        esac
    fi
    _fleet "$@"
}}
complete -F _fleet_with_targets -o bashdefault -o default fleet
"#
    )
}

/// zsh: the `target` positionals complete with `_fleet_targets` instead of `_default`.
fn zsh_targets(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 256);
    for line in script.lines() {
        let is_target = line.starts_with("':target -- ") || line.starts_with("'::target -- ");
        match line.strip_suffix(":_default' \\") {
            Some(head) if is_target => out.push_str(&format!("{head}:_fleet_targets' \\")),
            _ => {
                if line.starts_with("if [ \"$funcstack[1]\" = \"_fleet\" ]") {
                    out.push_str(
                        "(( $+functions[_fleet_targets] )) ||\n_fleet_targets() {\n    local -a targets\n    \
                         targets=(${(f)\"$(fleet __targets 2>/dev/null)\"})\n    compadd -a targets\n}\n\n",
                    );
                }
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

/// The man pages: fleet(1), and fleet-VERB(1) for each command with its flags (as `git` has),
/// from the same definition as `--help`. (file name, roff)
pub fn man_pages() -> Vec<(String, String)> {
    let render = |cmd: clap::Command| {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = clap_mangen::Man::new(cmd).render(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut cmd = crate::Cli::command();
    cmd.build();
    let mut pages = vec![("fleet.1".to_string(), render(cmd.clone()))];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = format!("fleet-{}", sub.get_name());
        pages.push((format!("{name}.1"), render(sub.clone().display_name(name))));
    }
    pages
}

/// Where `fleet install` puts the completion scripts and the man page, under
/// `$XDG_DATA_HOME` (`~/.local/share`) and `$XDG_CONFIG_HOME` (`~/.config`),
/// where bash-completion, zsh (with this dir on `fpath`), fish and man look.
pub fn install_paths(home: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let xdg = |var: &str, default: &str| match std::env::var_os(var).map(std::path::PathBuf::from) {
        Some(x) if x.is_absolute() => x,
        _ => home.join(default),
    };
    let (data, config) = (xdg("XDG_DATA_HOME", ".local/share"), xdg("XDG_CONFIG_HOME", ".config"));
    let mut files = vec![
        (data.join("bash-completion/completions/fleet"), script(clap_complete::Shell::Bash)),
        (data.join("zsh/site-functions/_fleet"), script(clap_complete::Shell::Zsh)),
        (config.join("fish/completions/fleet.fish"), script(clap_complete::Shell::Fish)),
    ];
    files.extend(man_pages().into_iter().map(|(name, text)| (data.join("man/man1").join(name), text)));
    files
}

/// `fleet __targets`: one completion per line: this host's agents by bare
/// name (from the roster), and `NAME@HOST` for every agent the node lists
/// across the mesh. Silent: a failure only means fewer names.
pub fn print_targets(g: &GlobalArgs) -> CliResult {
    let mut names = std::collections::BTreeSet::new();
    let roster = g.roster.clone().unwrap_or_else(|| Paths::from_env().default_roster());
    let text = fleet_core::file::read_to_string(&roster, fleet_core::file::ROSTER_MAX).unwrap_or_default();
    if let Ok(r) = fleet_core::roster::Roster::parse(&text) {
        names.extend(r.agents.iter().map(|a| a.name.as_str().to_string()));
    }
    if let Ok(rt) = node::runtime() {
        let ask = async {
            let mut client = fleet_node::client::fleet(&node::target()).await.ok()?;
            let req = v1::ListAgentsRequest {
                scope: v1::Scope::Mesh as i32,
                hosts: vec![],
                deadline_ms: ASK_NODE_FOR.as_millis() as u32,
                fresh: false,
            };
            client.list_agents(req).await.ok().map(|r| r.into_inner().agents)
        };
        if let Ok(Some(agents)) = rt.block_on(async { tokio::time::timeout(ASK_NODE_FOR * 2, ask).await }) {
            names.extend(agents.into_iter().map(|a| format!("{}@{}", a.name, a.host)));
        }
    }
    let mut out = String::new();
    for n in names {
        out.push_str(&n);
        out.push('\n');
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roster_and_host_overrides_are_taken_only_by_commands_that_read_the_roster() {
        use clap::Parser;
        for args in
            [&["ps", "--local"][..], &["send", "a", "-m", "x"], &["start", "a"], &["doctor"], &["roster", "check"]]
        {
            let line = [&["fleet"][..], args, &["--roster", "r.yaml", "--hostname", "h"]].concat();
            assert!(crate::Cli::try_parse_from(&line).is_ok(), "{line:?}");
        }
        for args in [&["web", "pair"][..], &["peers"], &["watch", "a"], &["demo"], &["context", "list"]] {
            let line = [&["fleet"][..], args, &["--roster", "r.yaml"]].concat();
            assert!(crate::Cli::try_parse_from(&line).is_err(), "{line:?} takes --roster, which it never reads");
        }
    }

    #[test]
    fn every_command_that_takes_an_agent_completes_agent_names() {
        let verbs = target_verbs(&crate::Cli::command());
        for v in ["send", "tail", "watch", "attach", "start", "stop", "restart", "explain"] {
            assert!(verbs.iter().any(|x| x == v), "{v} not in {verbs:?}");
        }
        assert!(!verbs.iter().any(|x| x == "ps"), "{verbs:?}");
        let zsh = script(clap_complete::Shell::Zsh);
        assert!(!zsh.lines().any(|l| l.contains("target -- ") && l.ends_with(":_default' \\")), "{zsh}");
        assert_eq!(zsh.matches(":_fleet_targets' \\").count(), verbs.len(), "one per target verb");
        assert!(zsh.contains("_fleet_targets() {"));
    }
}
