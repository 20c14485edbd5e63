//! Questions at the terminal, or, with `--yes`, none: then a value that no
//! flag gave is an error naming the flag.
//!
//! `dialoguer` rather than `inquire`: it draws with `console` (a handful of
//! small crates), where `inquire` brings `crossterm` with its signal and
//! event machinery; we need four plain prompts, not a TUI toolkit, and
//! every byte counts against the binary's size target.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use dialoguer::{Confirm, Input, Password, Select};

/// Asks the person at the terminal, or refuses when nobody may be asked.
pub struct Ask {
    interactive: bool,
}

impl Ask {
    /// `--yes` asks nothing. Without it, questions need a terminal.
    pub fn new(yes: bool) -> Ask {
        Ask { interactive: !yes }
    }

    pub fn interactive(&self) -> bool {
        self.interactive
    }

    /// Refuse a question that cannot be asked: the flag to pass instead.
    fn can_ask(&self, flag: &str) -> anyhow::Result<()> {
        if !self.interactive {
            bail!("{flag} is needed with --yes");
        }
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            bail!("{flag} is needed: there is no terminal to ask on (pass the flags, and --yes)");
        }
        Ok(())
    }

    /// A line of text; `default` is taken on a bare Enter.
    pub fn text(&self, prompt: &str, flag: &str, default: Option<&str>) -> anyhow::Result<String> {
        self.can_ask(flag)?;
        let mut input = Input::<String>::new().with_prompt(prompt);
        if let Some(d) = default {
            input = input.default(d.to_owned());
        }
        let text = input.interact_text().context("reading the answer")?;
        Ok(text.trim().to_owned())
    }

    /// A secret, not echoed.
    pub fn secret(&self, prompt: &str, flag: &str) -> anyhow::Result<String> {
        self.can_ask(flag)?;
        let text = Password::new()
            .with_prompt(prompt)
            .interact()
            .context("reading the answer")?;
        Ok(text.trim().to_owned())
    }

    /// One of `items`; returns its index.
    pub fn choose(&self, prompt: &str, flag: &str, items: &[String]) -> anyhow::Result<usize> {
        self.can_ask(flag)?;
        Select::new()
            .with_prompt(prompt)
            .items(items)
            .default(0)
            .interact()
            .context("reading the answer")
    }

    /// Yes or no; `--yes` is yes.
    pub fn confirm(&self, prompt: &str) -> anyhow::Result<bool> {
        if !self.interactive {
            return Ok(true);
        }
        self.can_ask("--yes")?;
        Confirm::new()
            .with_prompt(prompt)
            .default(true)
            .interact()
            .context("reading the answer")
    }
}
