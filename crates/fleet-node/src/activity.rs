//! Agent activity on this host, for the live view: the probe thread reads
//! the screens ([`Looker`], through control-mode clients it keeps), the
//! live loop judges ([`Judge`]): after each probe, when a hook file changes
//! (at once: inotify), and at each sweep (a hook expires, an interrupted
//! turn's idle prompt stays unchanged long enough).

use fleet_core::activity::{Activity, HookState, ScreenRules};
use fleet_core::record::AgentRecord;
use fleet_core::roster::Roster;
use fleet_tmux::screen::{self, ScreenSeen, Screens, Seen};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a probe saw beyond its rows.
pub struct Looked {
    pub screens: BTreeMap<String, Result<ScreenSeen, String>>,
    pub rules: Arc<ScreenRules>,
    /// Why `$MOSAIC_HOME/fleet/activity.yaml` is not in use, if it is not.
    pub rules_problem: Option<String>,
}

/// The probe thread's side: the rules in force (read again at every probe,
/// so an edited rules file counts without a restart) and the screens.
pub struct Looker {
    screens: Screens,
    mosaic_home: PathBuf,
}

impl Looker {
    pub fn new(mosaic_home: PathBuf) -> Looker {
        Looker { screens: Screens::default(), mosaic_home }
    }

    pub fn look(&mut self, roster: &Roster, rows: &[AgentRecord]) -> Looked {
        let (rules, rules_problem) = screen::load_rules(&self.mosaic_home);
        let screens = self.screens.read(roster, rows, &rules);
        Looked { screens, rules: Arc::new(rules), rules_problem }
    }
}

/// The live loop's side: the screens as last seen, and the judgement.
pub struct Judge {
    seen: BTreeMap<String, Seen>,
    /// Each roster agent's hook file as last read (`Err`: none, or why not).
    hooks: BTreeMap<String, Result<HookState, String>>,
    rules: Arc<ScreenRules>,
    rules_problem: Option<String>,
    run_dir: PathBuf,
}

impl Judge {
    pub fn new(run_dir: PathBuf) -> Judge {
        let rules = ScreenRules::parse(screen::BUILTIN_RULES).unwrap_or_default();
        Judge { seen: BTreeMap::new(), hooks: BTreeMap::new(), rules: Arc::new(rules), rules_problem: None, run_dir }
    }

    /// Take in what a probe saw at `now_ms`.
    pub fn looked(&mut self, looked: Looked, now_ms: i64) {
        if looked.rules_problem != self.rules_problem {
            match &looked.rules_problem {
                Some(p) => tracing::warn!(problem = %p, "activity screen rules"),
                None => tracing::info!("activity screen rules: the rules file is in use again"),
            }
        }
        self.rules = looked.rules;
        self.rules_problem = looked.rules_problem;
        screen::remember(&mut self.seen, looked.screens, now_ms);
    }

    /// Read the hook files of `rows`' roster agents again (after a probe).
    pub fn read_hooks(&mut self, rows: &[AgentRecord]) {
        self.hooks = rows
            .iter()
            .filter(|r| r.managed)
            .map(|r| (r.name.clone(), screen::read_hook(&self.run_dir, &r.name)))
            .collect();
    }

    /// Read `agent`'s hook file again (it changed).
    pub fn read_hook(&mut self, agent: &str) {
        self.hooks.insert(agent.to_string(), screen::read_hook(&self.run_dir, agent));
    }

    /// Judge every row of `rows`, `since` carried over from `prev`'s rows.
    pub fn judge_all(&self, rows: &mut [AgentRecord], prev: &[AgentRecord], now_ms: i64) {
        let before: BTreeMap<&str, &Activity> = prev.iter().map(|r| (r.name.as_str(), &r.activity)).collect();
        for row in rows {
            let prev = before.get(row.name.as_str()).copied();
            row.activity = self.judge(row, prev, now_ms);
        }
    }

    /// The activity of one row, `since` carried over from `prev`.
    pub fn judge(&self, row: &AgentRecord, prev: Option<&Activity>, now_ms: i64) -> Activity {
        let none = Err("none".to_string());
        let hook = if row.managed { self.hooks.get(&row.name).unwrap_or(&none) } else { &none };
        screen::judge_with(row, hook, self.seen.get(&row.name), &self.rules, prev, now_ms)
    }
}
