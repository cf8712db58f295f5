//! The harness of the tests that need Debian's packages (`harness = false`
//! in their `[[test]]`): libtest's command line and output, but a test whose
//! [`Need`]s are missing is reported *ignored*, with the package to install
//! as the reason, instead of passing or failing. With `XS_REQUIRE_PEERS=1`
//! (set by `.ci/run`) such a test fails, naming the package, so CI can never
//! skip one silently (unless the test says another variable requires it,
//! [`Test::required_by`], as the Xen 4.20 tests do). `--include-ignored`
//! runs nothing more: a test ignored for a missing package cannot run.
//!
//! ```no_run
//! use xs_peers::harness::{run, Test};
//!
//! fn talks_to_the_c_daemon() { /* assertions; a panic fails the test */ }
//!
//! fn main() -> std::process::ExitCode {
//!     run(vec![Test::new("talks_to_the_c_daemon", talks_to_the_c_daemon).needs(xs_peers::C_XENSTORED)])
//! }
//! ```

use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Trial};

use crate::{missing, required_by, Need};

/// One test: a name, what it needs, and a body that panics on failure.
pub struct Test {
    name: String,
    needs: Vec<Need>,
    required_by: &'static str,
    body: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Test {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Test")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .field("required_by", &self.required_by)
            .finish_non_exhaustive()
    }
}

impl Test {
    /// The test `name` running `body`.
    pub fn new(name: &str, body: impl FnOnce() + Send + 'static) -> Test {
        Test { name: name.to_owned(), needs: Vec::new(), required_by: "XS_REQUIRE_PEERS", body: Box::new(body) }
    }

    /// Makes a missing need fail the test only when the environment
    /// variable `var` is `1`, instead of `XS_REQUIRE_PEERS`: for a test
    /// whose needs CI does not provide by default, such as the Xen 4.20
    /// references' Debian 13 root ([`crate::XEN_420_READY`], a download of
    /// a few hundred megabytes that CI should not start on its own), so
    /// that `.ci/run`'s `XS_REQUIRE_PEERS=1` reports it ignored rather than
    /// failing, and a machine that has the root and wants it checked sets
    /// `var` (`XS_REQUIRE_PEERS_420=1`).
    pub fn required_by(mut self, var: &'static str) -> Test {
        self.required_by = var;
        self
    }

    /// Adds to what the test needs (checked when it is about to run).
    pub fn needs(mut self, needs: &[Need]) -> Test {
        self.needs.extend_from_slice(needs);
        self
    }

    fn trial(self) -> Trial {
        let Test { name, needs, required_by: var, body } = self;
        Trial::ignorable_test(name, move || {
            if let Some(need) = missing(&needs) {
                if required_by(var) {
                    return Err(format!("{need} ({var}=1: a missing peer is a failure)").into());
                }
                return Ok(Completion::ignored_with(need));
            }
            body();
            Ok(Completion::Completed)
        })
    }
}

/// Runs `tests` with the command line's filters and options; the exit code
/// is the test binary's.
pub fn run(tests: Vec<Test>) -> ExitCode {
    let args = Arguments::from_args();
    libtest_mimic::run(&args, tests.into_iter().map(Test::trial).collect()).exit_code()
}
