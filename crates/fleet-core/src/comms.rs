//! The comms block: what each agent reads to reach its peers ("Fleet Comms:
//! reach your peers"): who it is, and a table of every other agent of the
//! mesh with how to reach it (`fleet send NAME@HOST -m "..."`: no ssh, no
//! socket flags). Written into the agent's context file (CLAUDE.md,
//! AGENTS.md) between two markers that name the agent; a rewrite replaces
//! only that agent's region (agents that share a working directory share the
//! file, one region each).

use crate::roster_edit::ORCHESTRATOR;

/// The first line of `agent@host`'s region (also how a file is known to hold one).
pub fn begin(host: &str, agent: &str) -> String {
    format!("<!-- fleet-comms:begin {agent}@{host} (written by `fleet comms`; replaced on every rewrite) -->")
}

/// The last line of `agent@host`'s region.
pub fn end(host: &str, agent: &str) -> String {
    format!("<!-- fleet-comms:end {agent}@{host} -->")
}

/// An agent of the mesh, as the block shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub host: String,
    pub name: String,
    pub class: Option<String>,
}

/// The block for agent `me` on `host`, with every agent of `mesh` but itself.
pub fn render(host: &str, me: &str, mesh: &[Peer]) -> String {
    let mut peers: Vec<&Peer> = mesh.iter().filter(|p| !(p.name == me && p.host.eq_ignore_ascii_case(host))).collect();
    // The point of contact first, then this host's agents, then the others by host.
    peers.sort_by_key(|p| {
        (p.class.as_deref() != Some(ORCHESTRATOR), !p.host.eq_ignore_ascii_case(host), p.host.clone(), p.name.clone())
    });
    peers.dedup();
    let mut out = String::new();
    out.push_str(&begin(host, me));
    out.push('\n');
    out.push_str("## Fleet Comms: reach your peers\n\n");
    out.push_str(&format!(
        "You are `[{host}:{me}]`: agent {me} on host {host}. Messages to you start with `[SRC_HOST:SRC -> {host}:{me}]`; \
         answer the sender with `fleet send SRC@SRC_HOST -m \"...\"`.\n\n"
    ));
    let orchestrators: Vec<&&Peer> = peers.iter().filter(|p| p.class.as_deref() == Some(ORCHESTRATOR)).collect();
    let me_orchestrates = mesh
        .iter()
        .any(|p| p.name == me && p.host.eq_ignore_ascii_case(host) && p.class.as_deref() == Some(ORCHESTRATOR));
    if me_orchestrates {
        out.push_str("You are the fleet's orchestrator: the operator's point of contact.\n\n");
    } else if orchestrators.is_empty() {
        out.push_str("The fleet has no orchestrator (no point of contact): ask the operator whom to report to.\n\n");
    }
    if peers.is_empty() {
        out.push_str("No other agent is in the fleet yet.\n");
    } else {
        out.push_str("| Agent | Role | Reach |\n|---|---|---|\n");
        for p in &peers {
            let class = p.class.as_deref().unwrap_or("agent");
            let mut role =
                if p.host.eq_ignore_ascii_case(host) { class.to_string() } else { format!("{class} on {}", p.host) };
            if p.class.as_deref() == Some(ORCHESTRATOR) {
                role.push_str(" (point of contact)");
            }
            out.push_str(&format!("| {} | {role} | `fleet send {}@{} -m \"...\"` |\n", p.name, p.name, p.host));
        }
    }
    out.push_str(&end(host, me));
    out.push('\n');
    out
}

/// `file` with `agent@host`'s comms region replaced by `block` (or `block`
/// appended, after a blank line, when there is none); the rest is untouched.
pub fn replace_region(file: &str, host: &str, agent: &str, block: &str) -> String {
    let (begin, end) = (begin(host, agent), end(host, agent));
    if let Some(start) = file.find(&begin) {
        let after = &file[start..];
        if let Some(stop) = after.find(&end) {
            let mut stop = start + stop + end.len();
            if file[stop..].starts_with("\r\n") {
                stop += 2;
            } else if file[stop..].starts_with('\n') {
                stop += 1;
            }
            return format!("{}{block}{}", &file[..start], &file[stop..]);
        }
    }
    let mut out = file.to_string();
    if !out.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(block);
    out
}

/// Whether `file` holds `agent@host`'s comms region (the node keeps those fresh).
pub fn has_region(file: &str, host: &str, agent: &str) -> bool {
    file.contains(&begin(host, agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(host: &str, name: &str, class: &str) -> Peer {
        Peer { host: host.into(), name: name.into(), class: Some(class.into()) }
    }

    #[test]
    fn the_table_lists_every_other_agent() {
        let mesh = [
            p("h1", "coder", "implementer"),
            p("h2", "orchestrator", "orchestrator"),
            p("h1", "enhancer", "enhancer"),
            p("h3", "rev", "reviewer"),
        ];
        let b = render("h1", "coder", &mesh);
        assert!(b.starts_with(&begin("h1", "coder")) && b.ends_with(&format!("{}\n", end("h1", "coder"))));
        assert!(b.contains("## Fleet Comms: reach your peers\n"));
        assert!(b.contains("You are `[h1:coder]`"));
        let rows: Vec<&str> = b.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| Agent")).collect();
        assert_eq!(
            rows,
            [
                "| orchestrator | orchestrator on h2 (point of contact) | `fleet send orchestrator@h2 -m \"...\"` |",
                "| enhancer | enhancer | `fleet send enhancer@h1 -m \"...\"` |",
                "| rev | reviewer on h3 | `fleet send rev@h3 -m \"...\"` |",
            ]
        );
        assert!(!b.contains("ssh") && !b.contains(" -L ") && !b.contains("no orchestrator"));
        let none = render("h1", "coder", &mesh[..1]);
        assert!(none.contains("No other agent") && none.contains("The fleet has no orchestrator"));
        let boss = render("h2", "orchestrator", &mesh);
        assert!(boss.contains("You are the fleet's orchestrator") && !boss.contains("| orchestrator |"));
    }

    #[test]
    fn the_region_is_replaced_and_the_rest_kept() {
        let b1 = render("h", "a", &[p("h", "b", "worker")]);
        let b2 = render("h", "a", &[p("h", "b", "worker"), p("g", "c", "worker")]);
        let once = replace_region("# Notes\nmine", "h", "a", &b1);
        assert_eq!(once, format!("# Notes\nmine\n\n{b1}"));
        let twice = replace_region(&format!("{once}more of mine\n"), "h", "a", &b2);
        assert_eq!(twice, format!("# Notes\nmine\n\n{b2}more of mine\n"));
        assert_eq!(replace_region("", "h", "a", &b1), b1);
        assert!(has_region(&twice, "h", "a") && !has_region("# Notes", "h", "a") && !has_region(&twice, "h", "b"));
        // Another agent's region in the same file is its own.
        let other = render("h", "b", &[p("h", "a", "worker")]);
        let shared = replace_region(&twice, "h", "b", &other);
        assert_eq!(shared, format!("{twice}\n{other}"));
        assert_eq!(replace_region(&shared, "h", "a", &b1), format!("# Notes\nmine\n\n{b1}more of mine\n\n{other}"));
    }
}
