//! The cfdr commands: where their binaries are, what each is for (read from
//! the binary's own help, so the list cannot drift from it), and running one.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The commands this workspace builds (`bins/cfdr-*`), in the order a new
/// operator meets them. `cfdr-NAME` binaries not listed here still run
/// (`cfdr NAME`), as git and cargo run their external commands.
pub(crate) const COMMANDS: &[&str] = &[
    "backup", "restore", "verify", "wal", "replica", "prune", "repo", "secrets", "incident",
    "status", "drill", "copy",
];

/// Why `cfdr` itself could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A known command whose binary is not installed.
    #[error(
        "{program} is not installed: there is no {program} next to {beside} or on PATH. \
         Build it with `cargo build --release --bin {program}` (every command: `cargo build --release`) \
         and put it next to cfdr or on PATH"
    )]
    Missing { program: String, beside: String },
    /// A name that is neither a cfdr command nor an installed `cfdr-NAME`.
    #[error(
        "cfdr has no command {command}: there is no {program} next to {beside} or on PATH. \
         cfdr --help lists the commands"
    )]
    Unknown {
        command: String,
        program: String,
        beside: String,
    },
    /// The binary was found but could not be started.
    #[error("cannot run {path}: {source}")]
    Exec {
        path: String,
        source: std::io::Error,
    },
    /// Bad use of cfdr's own arguments.
    #[error("{0}. cfdr --help lists the commands")]
    Usage(String),
}

/// The binary of `command`: `cfdr-COMMAND`.
pub(crate) fn program(command: &str) -> String {
    format!("cfdr-{command}")
}

/// The folder of the running cfdr (symlinks resolved, so an installed link
/// finds the binaries it was built with).
fn own_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
}

fn beside_text() -> String {
    own_dir().map_or_else(
        || "cfdr".to_owned(),
        |d| d.join("cfdr").display().to_string(),
    )
}

/// `cfdr-COMMAND` beside the running cfdr, else in the first PATH folder
/// that has it as an executable file.
pub(crate) fn locate(command: &str) -> Option<PathBuf> {
    let program = program(command);
    let path = std::env::var_os("PATH").unwrap_or_default();
    own_dir()
        .into_iter()
        // An empty PATH entry would mean the working directory: not searched.
        .chain(std::env::split_paths(&path).filter(|d| !d.as_os_str().is_empty()))
        .map(|d| d.join(&program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Replaces this process with `cfdr-COMMAND ARGS`: same process id, so the
/// exit status and every signal (Ctrl-C, kill, a timeout of cron or
/// systemd) are the command's own. Returns only on failure.
pub(crate) fn run(command: &str, args: Vec<OsString>) -> Error {
    let Some(path) = locate(command) else {
        let (program, beside) = (program(command), beside_text());
        return if COMMANDS.contains(&command) {
            Error::Missing { program, beside }
        } else {
            Error::Unknown {
                command: command.to_owned(),
                program,
                beside,
            }
        };
    };
    let source = Command::new(&path).args(args).exec();
    Error::Exec {
        path: path.display().to_string(),
        source,
    }
}

/// What `path` says it is for: the first sentence of the first line of its
/// `-h` (clap prints the command's about there), without the final period.
pub(crate) fn purpose(path: &Path) -> Option<String> {
    let out = Command::new(path)
        .arg("-h")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    let sentence = line.find(". ").map_or(line, |end| &line[..end]);
    let sentence = sentence.trim_end_matches('.').trim();
    (out.status.success() && !sentence.is_empty()).then(|| sentence.to_owned())
}

/// Width of the command list, for wrapping purposes.
const WIDTH: usize = 100;

/// The text of `cfdr --help`: every command with its purpose.
pub(crate) fn listing() -> String {
    let mut rows: Vec<(String, String)> = COMMANDS
        .iter()
        .map(|&c| {
            let purpose = match locate(c) {
                Some(path) => purpose(&path)
                    .unwrap_or_else(|| format!("({} gives no description)", path.display())),
                None => format!(
                    "(not installed: cargo build --release --bin {})",
                    program(c)
                ),
            };
            (c.to_owned(), purpose)
        })
        .collect();
    rows.push((
        "help".to_owned(),
        "The help of a command: cfdr help COMMAND is cfdr COMMAND --help".to_owned(),
    ));
    let name_width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
    let mut out = String::from(
        "The CryptoFunk disaster-recovery toolkit behind one command: cfdr COMMAND ARGS... runs\n\
         cfdr-COMMAND ARGS... (the binary next to cfdr, else on PATH). Cron, Kubernetes and\n\
         archive_command call the cfdr-COMMAND binaries directly.\n\n\
         Usage: cfdr COMMAND [ARGS]...\n       cfdr COMMAND --help\n\nCommands:\n",
    );
    for (name, purpose) in rows {
        let lines = wrap(&purpose, WIDTH - 2 - name_width);
        for (i, line) in lines.iter().enumerate() {
            let label = if i == 0 { name.as_str() } else { "" };
            out.push_str(&format!("  {label:name_width$}{line}\n"));
        }
    }
    out.push_str(
        "\nOptions:\n  -h, --help     Print the commands and their purposes\n  \
         -V, --version  Print version\n",
    );
    out
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().map_or(0, |l| l.chars().count());
        if last > 0 && last + 1 + word.chars().count() > width {
            lines.push(String::new());
        }
        if let Some(line) = lines.last_mut() {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_purposes_wrap_at_spaces() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("short", 40), ["short"]);
    }
}
