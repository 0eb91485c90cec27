//! The front command's own arguments: everything after the command name
//! belongs to that command and is passed on untouched.

use std::ffi::OsString;

/// What `cfdr ARGS` asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// `cfdr --help`, `cfdr -h`, `cfdr help`: every command and its purpose.
    List,
    /// `cfdr` alone: the same list, as a usage error.
    Usage,
    /// `cfdr --version`, `cfdr -V`.
    Version,
    /// `cfdr COMMAND ARGS...`; `cfdr help COMMAND` is `cfdr COMMAND --help`.
    Run {
        /// The command's short name (`backup` for `cfdr-backup`).
        command: String,
        /// Its arguments, unchanged.
        args: Vec<OsString>,
    },
    /// An option cfdr does not have, or a command name that cannot be one.
    Bad(String),
}

/// Reads `cfdr`'s arguments (without the program name).
pub(crate) fn parse(mut args: impl Iterator<Item = OsString>) -> Action {
    let Some(first) = args.next() else {
        return Action::Usage;
    };
    let Some(first) = first.to_str() else {
        return Action::Bad(format!(
            "{} is not a cfdr command (command names are ASCII)",
            first.to_string_lossy()
        ));
    };
    match first {
        "-h" | "--help" => Action::List,
        "-V" | "--version" => Action::Version,
        "help" => match args.next() {
            None => Action::List,
            Some(c) => run(&c.to_string_lossy(), vec!["--help".into()]),
        },
        option if option.starts_with('-') => Action::Bad(format!(
            "cfdr has no option {option}: options go after the command (cfdr COMMAND {option} ...)"
        )),
        command => run(command, args.collect()),
    }
}

fn run(command: &str, args: Vec<OsString>) -> Action {
    // The name becomes part of a file name: letters, digits and dashes only,
    // so `cfdr ../x` can never reach outside the folders searched.
    if command.is_empty()
        || command.starts_with('-')
        || !command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Action::Bad(format!(
            "{command:?} is not a cfdr command name (letters, digits and dashes)"
        ));
    }
    Action::Run {
        command: command.to_owned(),
        args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Action {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn commands_help_and_bad_input() {
        assert_eq!(p(&[]), Action::Usage);
        assert_eq!(p(&["--help"]), Action::List);
        assert_eq!(p(&["help"]), Action::List);
        assert_eq!(p(&["-V"]), Action::Version);
        assert_eq!(
            p(&["backup", "logical", "--summary"]),
            Action::Run {
                command: "backup".into(),
                args: vec!["logical".into(), "--summary".into()]
            }
        );
        assert_eq!(
            p(&["help", "wal"]),
            Action::Run {
                command: "wal".into(),
                args: vec!["--help".into()]
            }
        );
        assert!(matches!(p(&["--repo", "x"]), Action::Bad(m) if m.contains("--repo")));
        assert!(matches!(p(&["../bin/sh"]), Action::Bad(m) if m.contains("../bin/sh")));
    }
}
