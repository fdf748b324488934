//! `fleet web`: where the local node's web door is (its dashboard), and `fleet web pair` and
//! `fleet web sessions`: browser identities of that door (docs/security.md "Browser identity").
//!
//! The door lives in the node (it calls the node's services in process as the browser's
//! principal), so its address is node configuration (`web_listen`, `FLEET_WEB_LISTEN`), not an
//! option of this command: `fleet web` reports it rather than running a second listener.

use crate::exit::{self, CliResult};
use crate::{node, table};
use anyhow::anyhow;
use fleet_proto::v1;
use fleet_proto::v1::web_client::WebClient;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WebArgs {
    #[command(subcommand)]
    pub cmd: Option<WebCmd>,
    /// Print the door as JSON (`tenant_id`, `host`, `web_url`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum WebCmd {
    /// Print a one-time link that pairs a browser with the node's web door.
    Pair(PairArgs),
    /// List the web door's browser sessions, or end them.
    Sessions(SessionsArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Viewer,
    Operator,
}

#[derive(Debug, clap::Args)]
pub struct PairArgs {
    /// What the browser may do: list and watch (viewer), or also send, start, stop (operator).
    #[arg(long, value_enum, default_value = "viewer")]
    pub role: RoleArg,
    /// Names the browser in the audit log (`web:LABEL@TENANT`) and in `fleet web sessions`.
    #[arg(long, value_name = "NAME", default_value = "browser")]
    pub label: String,
    /// How long the link may be opened (once): 90s, 10m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub ttl: u64,
    /// How long the session lasts once paired: 8h, 1d.
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = parse_duration)]
    pub session_ttl: u64,
    /// Print the link as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    /// End the session with this id, or every session with this label.
    #[arg(long, value_name = "ID|LABEL")]
    pub revoke: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `90s`, `10m`, `12h`, `2d`, or seconds: in seconds.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a duration such as 90s, 10m, 12h or 1d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{s:?}: expected a duration above zero")),
        Some(v) => Ok(v),
    }
}

fn role_word(r: i32) -> &'static str {
    match v1::WebRole::try_from(r) {
        Ok(v1::WebRole::Operator) => "operator",
        Ok(v1::WebRole::Viewer) => "viewer",
        _ => "unknown",
    }
}

fn session_json(s: &v1::WebSession) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": s.tenant_id, "host": s.host, "id": s.id, "label": s.label, "role": role_word(s.role),
        "created_unix_ms": s.created_unix_ms, "expires_unix_ms": s.expires_unix_ms,
        "last_used_unix_ms": s.last_used_unix_ms,
    })
}

/// With `web_tls` the door's URL names the node by its certificate's DNS name: say what a
/// browser needs for it.
fn tls_hint(url: &str) {
    let Some(name) = url.strip_prefix("https://").and_then(|u| u.split([':', '/']).next()) else { return };
    eprintln!(
        "fleet: the browser must reach {name} (the node certificate's name; a hosts line `<node address> {name}` \
         or DNS) and trust the mesh CA (ca.pem in the certs dir)"
    );
}

/// `fleet web`: the local node's door and how to pair a browser with it.
async fn door(channel: tonic::transport::Channel, json: bool) -> CliResult {
    let mut mesh = fleet_proto::v1::mesh_client::MeshClient::new(channel);
    let info = mesh.node_info(v1::NodeInfoRequest {}).await.map_err(node::status)?.into_inner();
    if info.web_url.is_empty() {
        return Err(exit::failed(anyhow!(
            "the web door of {} is off (web: false in node.yaml or FLEET_WEB=false, or its default address \
             127.0.0.1:7421 was taken by another node: see the node's log); set web: true and web_listen \
             (FLEET_WEB_LISTEN) and restart the node",
            info.host
        )));
    }
    if json {
        let v = serde_json::json!({"tenant_id": info.tenant_id, "host": info.host, "web_url": info.web_url});
        println!("{v}");
    } else {
        println!("{}/", info.web_url);
        tls_hint(&info.web_url);
        eprintln!(
            "fleet: the dashboard of {} (tenant {}) for the whole mesh; pair a browser with `fleet web pair` \
             (viewer) or `fleet web pair --role operator`, and open the link it prints",
            info.host, info.tenant_id
        );
    }
    Ok(())
}

pub fn run(args: WebArgs) -> CliResult {
    let rt = node::runtime()?;
    rt.block_on(async {
        let channel = fleet_node::client::connect(&node::target()).await.map_err(node::unreachable)?;
        let Some(cmd) = args.cmd else { return door(channel, args.json).await };
        let mut client = WebClient::new(channel);
        match cmd {
            WebCmd::Pair(a) => {
                let req = v1::PairRequest {
                    role: match a.role {
                        RoleArg::Viewer => v1::WebRole::Viewer,
                        RoleArg::Operator => v1::WebRole::Operator,
                    } as i32,
                    label: a.label.clone(),
                    link_ttl_ms: u32::try_from(a.ttl.saturating_mul(1000))
                        .map_err(|_| exit::usage(anyhow!("--ttl {} s is too long", a.ttl)))?,
                    session_ttl_s: u32::try_from(a.session_ttl)
                        .map_err(|_| exit::usage(anyhow!("--session-ttl {} s is too long", a.session_ttl)))?,
                };
                let r = client.pair(req).await.map_err(node::status)?.into_inner();
                if a.json {
                    let v = serde_json::json!({
                        "tenant_id": r.tenant_id, "host": r.host, "url": r.url, "label": r.label,
                        "role": role_word(r.role), "expires_unix_ms": r.expires_unix_ms,
                    });
                    println!("{v}");
                } else {
                    println!("{}", r.url);
                    tls_hint(&r.url);
                    eprintln!(
                        "fleet: open this link once, within {} s, in the browser to pair as web:{}@{} ({}); \
                         it works once. `fleet web sessions` lists sessions.",
                        a.ttl,
                        r.label,
                        r.tenant_id,
                        role_word(r.role)
                    );
                }
                Ok(())
            }
            WebCmd::Sessions(a) => {
                let rows = match &a.revoke {
                    Some(what) => {
                        let req = v1::RevokeWebSessionRequest { id_or_label: what.clone() };
                        client.revoke_web_session(req).await.map_err(node::status)?.into_inner().revoked
                    }
                    None => {
                        let req = v1::ListWebSessionsRequest {};
                        client.list_web_sessions(req).await.map_err(node::status)?.into_inner().sessions
                    }
                };
                if a.json {
                    let v: Vec<_> = rows.iter().map(session_json).collect();
                    return crate::out::line(serde_json::to_string_pretty(&v).map_err(exit::failed)?);
                }
                if a.revoke.is_some() {
                    let text: String = rows
                        .iter()
                        .map(|s| format!("revoked {} ({}, {})\n", s.id, s.label, role_word(s.role)))
                        .collect();
                    return crate::out::print(&text);
                }
                let now = fleet_node::live::now_ms();
                let ago = |ms: i64| format!("{}s", ((now - ms) / 1000).max(0));
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            s.label.clone(),
                            role_word(s.role).into(),
                            s.host.clone(),
                            ago(s.created_unix_ms),
                            ago(s.last_used_unix_ms),
                            format!("{}s", ((s.expires_unix_ms - now) / 1000).max(0)),
                        ]
                    })
                    .collect();
                crate::out::print(&table::render(
                    &["ID", "LABEL", "ROLE", "HOST", "CREATED", "LAST USED", "EXPIRES IN"],
                    &cells,
                ))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("1d"), Ok(86400));
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
    }
}
