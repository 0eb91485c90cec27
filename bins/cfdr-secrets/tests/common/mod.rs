//! Running cfdr-secrets as a user does: a key, a repository folder, and a
//! clean environment.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) repo: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) recipient: String,
}

pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cfdr-secrets"));
    for var in [
        "CFDR_CONFIG",
        "CFDR_REPOSITORY",
        "CFDR_AGE_RECIPIENTS",
        "CFDR_AGE_RECIPIENTS_FILE",
        "CFDR_AGE_IDENTITY",
        "CFDR_AGE_IDENTITY_FILE",
        "CFDR_SECRETS_BUNDLE",
        "CFDR_SECRETS_PASSPHRASE",
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_NAMESPACE",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c
}

pub(crate) use cfdr_testing::output_text as text;

impl Setup {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.txt");
        let out = bin().args(["keygen", "-o"]).arg(&key).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(recipient.starts_with("age1"), "{recipient}");
        let repo = dir.path().join("repo");
        Self {
            dir,
            repo,
            key,
            recipient,
        }
    }

    /// cfdr-secrets with this repository, key and recipient configured.
    pub(crate) fn cmd(&self) -> Command {
        let mut c = bin();
        c.env("CFDR_REPOSITORY", format!("file://{}", self.repo.display()))
            .env("CFDR_AGE_IDENTITY_FILE", &self.key)
            .env("CFDR_AGE_RECIPIENTS", &self.recipient);
        c
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with(self.cmd(), args, stdin)
    }

    pub(crate) fn write(&self, name: &str, body: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    }
}

pub(crate) fn run_with(mut c: Command, args: &[&str], stdin: Option<&[u8]>) -> Output {
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Written from a thread so that a large output cannot block the writer.
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input))
    });
    let out = child.wait_with_output().unwrap();
    if let Some(w) = writer {
        w.join().unwrap().unwrap();
    }
    out
}

/// Every file below `dir`, recursively.
pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
