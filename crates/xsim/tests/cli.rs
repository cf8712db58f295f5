//! xsim's command line: help for every command that does nothing else,
//! extra arguments and bad values refused with a clear error.

use std::process::{Command, Output};

fn xsim(state: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xsim")).env("XSIM_STATE", state).args(args).output().unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xsim-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn every_command_has_help_that_does_nothing_else() {
    let state = scratch("help");
    for command in ["up", "down", "env", "create", "list", "console", "unpause", "pause", "shutdown", "destroy"] {
        let out = xsim(&state, &[command, "--help"]);
        assert!(out.status.success(), "{command} --help: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("Usage: xsim {command}")), "{command}: {text}");
    }
    assert!(!state.exists(), "`xsim up --help` started nothing");
    let out = xsim(&state, &["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("xsim "), "{out:?}");
}

#[test]
fn extra_arguments_and_bad_values_are_refused() {
    let state = scratch("bad");
    for (args, says) in [
        (&["list", "extra"][..], "unexpected argument 'extra'"),
        (&["create", "123", "--", "/bin/true"], "all digits"),
        (&["create", "guest"], "PROGRAM"),
        (&["shutdown", "-r", "bogus", "guest"], "valid: poweroff"),
        (&["frobnicate"], "unrecognized subcommand"),
    ] {
        let out = xsim(&state, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!state.exists());
}
