//! Several checks of one scenario that share an expensive fixture (one
//! OpenCode): each step runs to its end, a failing one is recorded and the
//! next one still runs, so one run names every broken behaviour instead of
//! stopping at the first.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// The steps run so far and those that failed, with their messages.
#[derive(Debug, Default)]
pub struct Steps {
    ran: usize,
    failed: Vec<String>,
}

#[allow(clippy::print_stdout)]
impl Steps {
    pub fn new() -> Steps {
        Steps::default()
    }

    /// Runs one step; a panic inside it fails the step, not the run.
    pub async fn run(&mut self, name: &str, step: impl Future<Output = ()>) {
        println!("step: {name}");
        self.ran += 1;
        if let Err(panic) = AssertUnwindSafe(step).catch_unwind().await {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            println!("step failed: {name}: {why}");
            self.failed.push(format!("{name}: {why}"));
        }
    }

    /// Fails the test when any step failed, naming each.
    pub fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} steps failed:\n- {}",
            self.failed.len(),
            self.ran,
            self.failed.join("\n- ")
        );
    }
}
