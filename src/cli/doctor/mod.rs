//! `opencode-mattermost doctor`: every check a misconfiguration needs, in
//! the order a setup goes (the file, the server, the bot, the owner, the
//! socket, OpenCode, the store, the clock). Each check is a small function
//! that gives one [`Check`]: passed or not, what it found and, when it
//! failed, the fix. A check whose premise failed (no server, no bot) is
//! skipped with the reason; the first failure names the cause.
//!
//! It reads the same configuration as the agent, talks to Mattermost with
//! the agent's REST client, and never prints the token.

mod jsonc;
mod local;
mod server;

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::Config;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Works, but something deserves attention (it does not fail the run).
    Warn,
    Fail,
    /// Not run: its premise failed or the thing it checks is absent.
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it (failures and warnings).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Warn,
            ..Check::fail(name, detail, fix)
        }
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            status: Status::Skip,
            ..Check::pass(name, detail)
        }
    }
}

/// What the command line may change about the checks.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The OpenCode executable; else `opencode` on `PATH`.
    pub opencode: Option<PathBuf>,
    /// The project whose `opencode.json` may register the plugin; else the
    /// working directory.
    pub project: Option<PathBuf>,
}

/// Runs every check in order.
pub async fn run(config: &Config, options: &Options) -> Vec<Check> {
    let mut checks = vec![local::config_file(config), local::settings(config)];
    // The clock is read from the server's first answer, and reported last.
    let (server, clock) = server::checks(config).await;
    checks.extend(server);
    checks.push(local::opencode_version(options.opencode.as_deref()).await);
    checks.push(local::plugin_registered(options.project.as_deref()));
    checks.push(local::state_database(config).await);
    checks.push(clock);
    checks
}

/// The report: one aligned line per check, the fix indented below it, and
/// a summary.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        let detail = super::one_line(&c.detail);
        writeln!(out, "[{tag}] {:<width$}  {detail}", c.name).ok();
        if let Some(fix) = &c.fix {
            writeln!(out, "       {:<width$}  fix: {}", "", super::one_line(fix)).ok();
        }
    }
    let failed = failures(checks);
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let skipped = checks.iter().filter(|c| c.status == Status::Skip).count();
    writeln!(
        out,
        "\n{} checks: {} passed, {failed} failed, {warned} warnings, {skipped} skipped",
        checks.len(),
        checks.iter().filter(|c| c.status == Status::Pass).count(),
    )
    .ok();
    out
}

/// How many checks failed.
pub fn failures(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.status == Status::Fail).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_aligns_names_puts_fixes_below_and_counts() {
        let checks = vec![
            Check::pass("token", "valid"),
            Check::fail("bot account", "@alice is\na person", "use a bot"),
            Check::warn("TLS", "plain http", "use https"),
            Check::skip("OpenCode", "not installed"),
        ];
        let text = render(&checks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "[pass] token        valid");
        assert_eq!(lines[1], "[FAIL] bot account  @alice is\\na person");
        assert_eq!(lines[2], "                    fix: use a bot");
        assert_eq!(lines[3], "[warn] TLS          plain http");
        assert_eq!(lines[5], "[skip] OpenCode     not installed");
        assert_eq!(
            lines.last().copied(),
            Some("4 checks: 1 passed, 1 failed, 1 warnings, 1 skipped")
        );
        assert_eq!(failures(&checks), 1);
    }
}
