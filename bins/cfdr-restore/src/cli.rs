//! Command-line flags of cfdr-restore.

use cfdr_pg::physical::RecoveryTarget;
use clap::{Parser, Subcommand};

/// Restore a logical backup into a NEW database (verified against the
/// manifest; only --swap makes it live, keeping the old one renamed), or a
/// physical base backup plus archived WAL to a point in time.
///
/// Exit codes: 0 restored within the RTO, 1 restored but over the RTO,
/// 2 usage or runtime error (nothing live was changed).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-restore logical --latest                      # into cryptofunk_restore_<id>\n  \
    cfdr-restore logical --before 2026-11-06T14:30:00Z --swap\n  \
    cfdr-restore logical 20261106T140000.000Z-logical-ab12 --target-db cf_check --jobs 2\n  \
    cfdr-restore logical 20261106T140000.000Z-logical-ab12 --swap-only   # after a refused --swap\n  \
    cfdr-restore pitr --to-time 2026-11-06T14:29:00Z --data-dir /var/lib/postgresql/15/pitr --start\n  \
    cfdr-restore pitr --to-name before_migration --data-dir /srv/pg/restore\n  \
    cfdr-restore files 20261106T140000.000Z-config-ab12 --diff /\n  \
    cfdr-restore files 20261106T140000.000Z-config-ab12 --into / --path etc/cryptofunk --force"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: cfdr_cli::Common,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Restore a logical backup with pg_restore.
    Logical {
        /// Backup id (default: the latest).
        id: Option<String>,
        /// The latest backup (the default).
        #[arg(long, conflicts_with_all = ["id", "before"])]
        latest: bool,
        /// The latest backup finished before this time (RFC 3339).
        #[arg(long, conflicts_with = "id")]
        before: Option<jiff::Timestamp>,
        /// Database to create (default <db>_restore_<id>, <db> shortened so
        /// the name fits PostgreSQL's 63 bytes). With --swap-only: the
        /// restored database to swap in.
        #[arg(long)]
        target_db: Option<String>,
        /// Make the restored database the live one; keep the old as
        /// <db>_before_<id> (<db> shortened to fit 63 bytes).
        #[arg(long)]
        swap: bool,
        /// Do not restore: swap in the database already restored from backup
        /// ID (after a swap was refused because sessions were connected).
        /// Its tables and row counts are checked against the backup again.
        #[arg(long, requires = "id", conflicts_with_all = ["swap", "latest", "before"])]
        swap_only: bool,
        /// Sessions loading rows at once (default: one per CPU core). Above 1
        /// the stored dump is read three times (schema, data, indexes),
        /// never staged on disk; 1: a single pg_restore.
        #[arg(long, default_value_t = cfdr_pg::logical::default_jobs())]
        jobs: u32,
    },
    /// Point-in-time recovery: the newest base backup before the target,
    /// unpacked into an empty data directory, with recovery.signal and the
    /// recovery settings (restore_command = cfdr-wal fetch).
    Pitr {
        #[command(flatten)]
        target: PitrTarget,
        /// New data directory (must be empty).
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// Delete the contents of a non-empty --data-dir first.
        #[arg(long)]
        force: bool,
        /// Start the server, wait for promotion and report the reached
        /// position. The server keeps running afterwards (the output says
        /// how to stop it); it logs to <data-dir>/log/cfdr-pitr.log. On
        /// failure it is stopped and the directory kept, with the command
        /// to start over.
        #[arg(long)]
        start: bool,
        /// Keep WAL archiving on in the started server (off by default: a
        /// copy must not archive into the production WAL path).
        #[arg(long, requires = "start")]
        archive: bool,
        /// Segments restore_command fetches ahead in parallel (0: one at a
        /// time), into <data-dir>.wal-spool.
        #[arg(long, default_value_t = 4)]
        prefetch: u32,
    },
    /// A file archive (cfdr-backup files): restore it into a folder
    /// (never written outside it, every file checked against the index),
    /// list it, or compare it with a folder.
    Files(FilesArgs),
}

/// What `cfdr-restore files` does with one archive.
#[derive(Debug, clap::Args)]
pub(crate) struct FilesArgs {
    /// Archive id (see cfdr-backup list).
    pub(crate) id: String,
    /// Folder to restore into; archive paths go below it (`--into /`
    /// puts them back in place, with --force).
    #[arg(long, required_unless_present_any = ["list", "diff"], conflicts_with_all = ["list", "diff"])]
    pub(crate) into: Option<std::path::PathBuf>,
    /// Only entries at or under this archive path (repeatable).
    #[arg(long = "path")]
    pub(crate) paths: Vec<String>,
    /// Overwrite existing files and symlinks (folders are never replaced).
    #[arg(long, requires = "into")]
    pub(crate) force: bool,
    /// Restore symlinks that point outside --into, as links (refused by default).
    #[arg(long, requires = "into")]
    pub(crate) allow_outside_links: bool,
    /// List the archive's entries with sizes and SHA-256.
    #[arg(long, conflicts_with = "diff")]
    pub(crate) list: bool,
    /// Compare the archive with this folder (laid out as --into would):
    /// added, removed, changed. Exit 1 when they differ.
    #[arg(long)]
    pub(crate) diff: Option<std::path::PathBuf>,
    /// Machine-readable --list / --diff output.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Where recovery stops: exactly one.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct PitrTarget {
    /// Recover up to this time: RFC 3339 with a zone, e.g.
    /// 2026-11-06T14:29:00Z or 2026-11-06T16:29:00+02:00.
    #[arg(long, value_parser = parse_zoned_time)]
    pub(crate) to_time: Option<jiff::Timestamp>,
    /// Recover up to this LSN (e.g. 0/3000060).
    #[arg(long)]
    pub(crate) to_lsn: Option<String>,
    /// Recover up to this transaction id.
    #[arg(long)]
    pub(crate) to_xid: Option<String>,
    /// Recover up to this restore point (pg_create_restore_point).
    #[arg(long)]
    pub(crate) to_name: Option<String>,
    /// Replay all archived WAL.
    #[arg(long)]
    pub(crate) latest: bool,
}

impl PitrTarget {
    /// The one target the flags name (clap allows only one).
    pub(crate) fn recovery_target(self) -> anyhow::Result<RecoveryTarget> {
        Ok(match self {
            PitrTarget {
                to_time: Some(time),
                ..
            } => RecoveryTarget::Time(time),
            PitrTarget {
                to_lsn: Some(lsn), ..
            } => RecoveryTarget::Lsn(lsn.parse()?),
            PitrTarget {
                to_xid: Some(xid), ..
            } => RecoveryTarget::Xid(xid),
            PitrTarget {
                to_name: Some(name),
                ..
            } => RecoveryTarget::Name(name),
            _ => RecoveryTarget::Latest,
        })
    }
}

/// `--to-time`: a point in time needs its zone; say the expected form.
fn parse_zoned_time(s: &str) -> Result<jiff::Timestamp, String> {
    s.parse().map_err(|e| {
        format!(
            "{e}\nexpected RFC 3339 with a zone (Z or an offset), e.g. 2026-11-06T14:29:00Z \
             or 2026-11-06T16:29:00+02:00"
        )
    })
}

/// The command line that starts a failed `pitr` over: the same arguments
/// plus --force (the directory is not empty now), with the target replaced
/// by --latest when `latest`. Each word is quoted for the shell.
pub(crate) fn rerun_command(args: &[String], latest: bool) -> String {
    const TARGETS: [&str; 4] = ["--to-time", "--to-lsn", "--to-xid", "--to-name"];
    let mut words: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if latest {
            if TARGETS.contains(&a.as_str()) {
                it.next();
                continue;
            }
            if TARGETS.iter().any(|t| a.starts_with(&format!("{t}="))) {
                continue;
            }
        }
        words.push(a.clone());
    }
    for (flag, wanted) in [("--latest", latest), ("--force", true)] {
        if wanted && !words.iter().any(|w| w == flag) {
            words.push(flag.into());
        }
    }
    words
        .iter()
        .map(|w| cfdr_pg::physical::sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn rerun_adds_force_and_swaps_an_unreachable_target_for_latest() {
        let given = args(
            "cfdr-restore -r repo pitr --to-time 2026-11-06T15:00:00Z --data-dir /srv/r --start",
        );
        assert_eq!(
            rerun_command(&given, false),
            "cfdr-restore -r repo pitr --to-time 2026-11-06T15:00:00Z --data-dir /srv/r --start --force"
        );
        assert_eq!(
            rerun_command(&given, true),
            "cfdr-restore -r repo pitr --data-dir /srv/r --start --latest --force"
        );
        let given = args("cfdr-restore pitr --to-name=x --data-dir /srv/my_dir --force --start");
        assert_eq!(
            rerun_command(&given, true),
            "cfdr-restore pitr --data-dir /srv/my_dir --force --start --latest"
        );
    }

    #[test]
    fn a_time_without_zone_shows_the_expected_form() {
        let err = parse_zoned_time("2026-11-06 14:29:00").unwrap_err();
        assert!(
            err.contains(
                "expected RFC 3339 with a zone (Z or an offset), e.g. 2026-11-06T14:29:00Z"
            ),
            "{err}"
        );
        assert!(parse_zoned_time("2026-11-06T16:29:00+02:00").is_ok());
    }
}
