//! `fleet verify`: what is wrong with one host's fleet, each problem with
//! its next step. A pure function of what the node already knows (its
//! roster, its probe's rows, whether the holder session exists).

use crate::heartbeat::Health;
use crate::names::DnsLabel;
use crate::record::{AgentRecord, PaneState};
use crate::roster::Roster;

/// Whether the roster's holder session exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    Present,
    Missing,
    /// The roster names none.
    NotConfigured,
    /// tmux could not be asked.
    Unknown(String),
}

/// One problem: the agent it is about (empty: the host), what, and the next step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub agent: String,
    pub problem: String,
    pub next_step: String,
}

fn finding(agent: &str, problem: String, next_step: String) -> Finding {
    Finding { agent: agent.into(), problem, next_step }
}

/// Unit file states that start the unit at boot (or need no enabling).
fn starts_at_boot(state: Option<&str>) -> bool {
    matches!(state, Some("enabled" | "enabled-runtime" | "static" | "linked" | "linked-runtime" | "alias" | "indirect"))
}

/// The problems of host `host`: its roster (`None`: no valid one, `problem`
/// says why), the probe's `rows`, the holder session. `systemd`: a user
/// manager runs there (units are checked only then).
pub fn findings(
    host: &DnsLabel,
    roster: Option<&Roster>,
    roster_problem: Option<&str>,
    rows: &[AgentRecord],
    holder: &Holder,
    systemd: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(p) = roster_problem {
        out.push(finding(
            "",
            format!("the roster is not valid: {p}"),
            "fix it (`fleet roster check` names each problem's line and column)".into(),
        ));
    }
    let Some(roster) = roster else { return out };
    let socket = roster.socket.clone();
    match holder {
        Holder::Present => {}
        Holder::Missing => {
            let name = roster.holder_session.as_deref().unwrap_or("_holder");
            out.push(finding(
                "",
                format!("the holder session {name} does not exist on {socket}"),
                format!(
                    "`systemctl --user start mosaic-tmux-holder.service`, or `tmux {}new-session -d -s {name} 'sleep infinity'`",
                    match &socket {
                        crate::roster::TmuxSocket::Default => String::new(),
                        crate::roster::TmuxSocket::Name(n) => format!("-L {n} "),
                        crate::roster::TmuxSocket::Path(p) => format!("-S {p} "),
                    }
                ),
            ))
        }
        Holder::NotConfigured => out.push(finding(
            "",
            "the roster names no holder session (tmux.holder_session)".into(),
            "add `holder_session: _holder` under `tmux:` in the roster (and run mosaic-tmux-holder.service)".into(),
        )),
        Holder::Unknown(why) => out.push(finding(
            "",
            format!("cannot tell whether the holder session exists: {why}"),
            format!("check tmux on {socket} (`fleet doctor`)"),
        )),
    }
    for agent in roster.agents_on(host) {
        let name = agent.name.as_str();
        let addr = format!("{name}@{host}");
        let Some(row) = rows.iter().find(|r| r.managed && r.name == name) else {
            out.push(finding(
                name,
                format!("{addr} was not probed (its tmux socket did not answer)"),
                "see the host row of `fleet ps`".into(),
            ));
            continue;
        };
        match row.pane {
            PaneState::Missing => {
                out.push(finding(name, format!("{addr} has no session"), format!("`fleet start {addr}`")))
            }
            PaneState::Dead => out.push(finding(
                name,
                format!("{addr}'s program exited (its pane is dead)"),
                format!("`fleet tail {addr}` shows why; then `fleet restart {addr}`"),
            )),
            PaneState::Alive => match row.heartbeat.health {
                Health::Healthy => {}
                Health::Stale => out.push(finding(
                    name,
                    format!(
                        "{addr}'s heartbeat is stale (last {} s ago, interval {} s)",
                        row.heartbeat.age_seconds.unwrap_or(-1),
                        row.heartbeat.interval_seconds
                    ),
                    format!("`fleet tail {addr}` to see whether it hangs; `fleet restart {addr}`"),
                )),
                Health::Unknown => out.push(finding(
                    name,
                    format!(
                        "{addr} has no heartbeat ({})",
                        row.heartbeat.reason.as_deref().unwrap_or("no heartbeat file")
                    ),
                    format!("`fleet restart {addr}` (its launcher writes heartbeats); `fleet explain {addr}`"),
                )),
            },
        }
        if systemd && row.systemd.available && !starts_at_boot(row.systemd.unit_file_state.as_deref()) {
            let unit = format!("mosaic-agent@{name}.service");
            out.push(finding(
                name,
                format!(
                    "{unit} is not enabled ({}): {addr} will not come back after a reboot",
                    row.systemd.unit_file_state.as_deref().filter(|s| !s.is_empty()).unwrap_or("no unit file")
                ),
                format!("on {host}: `systemctl --user enable {unit}` (after `fleet install`)"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::HealthReport;
    use crate::record::SystemdState;

    fn row(name: &str, pane: PaneState, health: Health, unit: Option<&str>) -> AgentRecord {
        AgentRecord {
            tenant_id: "t".into(),
            host: "h1".into(),
            name: name.into(),
            class: None,
            runtime: Some("stub".into()),
            managed: true,
            socket: String::new(),
            systemd: match unit {
                Some(u) => SystemdState {
                    available: true,
                    active_state: Some("active".into()),
                    unit_file_state: Some(u.into()),
                },
                None => SystemdState::unavailable(),
            },
            pane,
            pane_pid: None,
            current_command: None,
            idle_seconds: None,
            in_copy_mode: false,
            heartbeat: HealthReport { health, age_seconds: Some(99), ..HealthReport::unknown("missing", 1) },
            drift: false,
            boot_enable: false,
            activity: crate::activity::Activity::unknown("test", 0),
        }
    }

    #[test]
    fn one_line_per_problem_with_a_next_step() {
        let host = DnsLabel::parse_as("host", "h1").unwrap();
        let r = Roster::parse(
            "tmux: { socket_name: s, holder_session: _holder }\nagents:\n  - { name: a, runtime: stub }\n  - { name: b, runtime: stub }\n  - { name: c, runtime: stub }\n  - { name: d, runtime: stub }\n  - { name: e, runtime: stub, host: h2 }\n",
        )
        .unwrap();
        let rows = [
            row("a", PaneState::Alive, Health::Healthy, Some("enabled")),
            row("b", PaneState::Missing, Health::Unknown, Some("disabled")),
            row("c", PaneState::Alive, Health::Stale, None),
            row("d", PaneState::Dead, Health::Unknown, None),
        ];
        let f = findings(&host, Some(&r), None, &rows, &Holder::Missing, true);
        let shown: Vec<String> = f.iter().map(|f| format!("{}: {} -> {}", f.agent, f.problem, f.next_step)).collect();
        assert_eq!(f.len(), 5, "{shown:#?}");
        assert!(shown[0].starts_with(": the holder session _holder does not exist on tmux socket -L s"), "{shown:#?}");
        assert!(shown[0].contains("tmux -L s new-session -d -s _holder"));
        assert_eq!(shown[1], "b: b@h1 has no session -> `fleet start b@h1`");
        assert!(shown[2].starts_with("b: mosaic-agent@b.service is not enabled (disabled)"), "{shown:#?}");
        assert!(shown[3].starts_with("c: c@h1's heartbeat is stale (last 99 s ago"), "{shown:#?}");
        assert!(shown[4].starts_with("d: d@h1's program exited"), "{shown:#?}");
        // Without a user manager, units are not checked.
        assert_eq!(findings(&host, Some(&r), None, &rows, &Holder::Present, false).len(), 3);
        let healthy = [
            row("a", PaneState::Alive, Health::Healthy, Some("enabled")),
            row("b", PaneState::Alive, Health::Healthy, Some("static")),
            row("c", PaneState::Alive, Health::Healthy, None),
            row("d", PaneState::Alive, Health::Healthy, None),
        ];
        assert_eq!(findings(&host, Some(&r), None, &healthy, &Holder::Present, true), vec![]);
        let f = findings(&host, Some(&r), Some("1:1: bad"), &healthy[..3], &Holder::NotConfigured, true);
        assert_eq!(f.len(), 3, "{f:#?}");
        assert!(f[0].problem.contains("1:1: bad") && f[1].problem.contains("no holder session"));
        assert!(f[2].problem.contains("d@h1 was not probed"));
        assert_eq!(findings(&host, None, Some("x"), &[], &Holder::Present, true).len(), 1);
    }
}
