//! File archives against real storage: a folder repository and the S3
//! emulator.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cfdr_files::{BackupRequest, EntryKind, FileClass, Glob, RestoreRequest};
use cfdr_storage::{EncodeOptions, Repository};
use cfdr_testing::{Backend, TestLocation};
use sha2::{Digest, Sha256};

const SMALL_FILES: usize = 10_000;

/// What a user compares after a restore: type, mode, mtime, content.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        mtime: i64,
        size: u64,
        sha: String,
    },
    Dir {
        mode: u32,
        mtime: i64,
    },
    Link {
        target: String,
    },
}

fn sha_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Node>) {
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let m = fs::symlink_metadata(&path).unwrap();
        let node = if m.file_type().is_symlink() {
            Node::Link {
                target: fs::read_link(&path).unwrap().to_str().unwrap().to_owned(),
            }
        } else if m.is_dir() {
            Node::Dir {
                mode: m.mode() & 0o7777,
                mtime: m.mtime(),
            }
        } else {
            Node::File {
                mode: m.mode() & 0o7777,
                mtime: m.mtime(),
                size: m.len(),
                sha: sha_file(&path),
            }
        };
        let is_dir = matches!(node, Node::Dir { .. });
        out.insert(rel.to_owned(), node);
        if is_dir {
            for e in fs::read_dir(&path).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                walk(root, &child, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

/// A configuration-like tree with every case the archive must keep.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("empty folder")).unwrap();
    fs::write(root.join("app config.toml"), "port = 8080\n").unwrap();
    fs::write(root.join("überwachung-東京.yaml"), "zone: ap-northeast-1\n").unwrap();
    fs::write(root.join("line\nbreak.txt"), "a name with a newline\n").unwrap();
    fs::write(root.join("secret.key"), "not really a key\n").unwrap();
    fs::set_permissions(root.join("secret.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("deploy.sh"), "#!/bin/sh\necho deploy\n").unwrap();
    fs::set_permissions(root.join("deploy.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("app config.toml", root.join("inside link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("outside link")).unwrap();
    fs::write(root.join("scratch.tmp"), "excluded\n").unwrap();
    // As long as a name can be (255 bytes), and a link to it: both need
    // GNU long-name headers in the tar.
    let long = format!("{}.conf", "l".repeat(250));
    fs::write(root.join(&long), "long name\n").unwrap();
    std::os::unix::fs::symlink(&long, root.join("long link")).unwrap();
    // 1 GiB, a few bytes of data in holes.
    let mut big = fs::File::create(root.join("big.sparse")).unwrap();
    big.set_len(1 << 30).unwrap();
    for off in [0u64, 300 << 20, (1 << 30) - 5] {
        big.seek(SeekFrom::Start(off)).unwrap();
        big.write_all(b"data!").unwrap();
    }
    drop(big);
    let many = root.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..SMALL_FILES {
        fs::write(many.join(format!("f{i:05}")), format!("file {i}\n")).unwrap();
    }
    // Old, distinct times, so a restore that drops them shows.
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_mtime(root.join("app config.toml"), t).unwrap();
    filetime::set_file_mtime(root.join("empty folder"), t).unwrap();
}

async fn round_trip(backend: Backend, test: &str) {
    let Some(loc) = TestLocation::new(backend, test) else {
        return;
    };
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src").join("cryptofunk");
    make_tree(&src);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();

    let mut req = BackupRequest::new(FileClass::Config, vec![src.clone()]);
    req.excludes = vec![Glob::new("*.tmp")];
    let archive = cfdr_files::backup(&repo, &req, &EncodeOptions::default())
        .await
        .unwrap();
    assert_eq!(archive.manifest.kind, "config");
    assert_eq!(archive.details.files as usize, SMALL_FILES + 7);
    assert_eq!(archive.details.symlinks, 3);
    assert_eq!(archive.details.dirs, 3);
    // A GiB of mostly zeros is stored small.
    assert!(
        archive.manifest.stored_size() < 32 << 20,
        "{}",
        archive.manifest.stored_size()
    );
    assert_eq!(
        repo.backup_ids().await.unwrap(),
        vec![archive.manifest.id.clone()]
    );

    // --list: every file with size and hash.
    let index = cfdr_files::read_index(&repo, &archive.manifest, None)
        .await
        .unwrap();
    let root_name = src.to_str().unwrap().trim_start_matches('/').to_owned();
    let big = index.get(&format!("{root_name}/big.sparse")).unwrap();
    assert_eq!((big.kind, big.size), (EntryKind::File, 1 << 30));
    assert_eq!(
        big.sha256.as_deref(),
        Some(sha_file(&src.join("big.sparse")).as_str())
    );
    assert!(index.get(&format!("{root_name}/scratch.tmp")).is_none());
    // Gone from the source too, with the folder's time as archived.
    let archived_mtime =
        filetime::FileTime::from_last_modification_time(&fs::metadata(&src).unwrap());
    fs::remove_file(src.join("scratch.tmp")).unwrap();
    filetime::set_file_mtime(&src, archived_mtime).unwrap();

    // Outside links are refused unless asked for; nothing is written for them.
    let into = work.path().join("restored");
    let err = cfdr_files::restore(&repo, &archive.manifest, &RestoreRequest::new(&into), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("outside link") && err.contains("--allow-outside-links"),
        "{err}"
    );
    // Refused from the index, before anything was written.
    assert!(!into.exists());

    let mut rr = RestoreRequest::new(&into);
    rr.allow_outside_links = true;
    let report = cfdr_files::restore(&repo, &archive.manifest, &rr, None)
        .await
        .unwrap();
    assert_eq!(report.files as usize, SMALL_FILES + 7);
    let restored = into.join(&root_name);
    assert_eq!(snapshot(&restored), snapshot(&src));
    // Holes stay holes: far less than a GiB on disk.
    let blocks = fs::metadata(restored.join("big.sparse")).unwrap().blocks() * 512;
    assert!(
        blocks < 64 << 20,
        "restored sparse file uses {blocks} bytes"
    );

    // --diff: the same, then exactly what changed.
    let diff = cfdr_files::diff(&index, &archive.details, &into, &[]).unwrap();
    assert!(diff.is_empty(), "{diff:?}");
    fs::write(restored.join("app config.toml"), "port = 9090\n").unwrap();
    fs::remove_file(restored.join("many/f00042")).unwrap();
    fs::write(restored.join("new.yaml"), "x: 1\n").unwrap();
    fs::set_permissions(
        restored.join("deploy.sh"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let diff = cfdr_files::diff(&index, &archive.details, &into, &[]).unwrap();
    assert_eq!(diff.added, vec![format!("{root_name}/new.yaml")]);
    assert_eq!(diff.removed, vec![format!("{root_name}/many/f00042")]);
    let changed: Vec<(String, String)> = diff
        .changed
        .iter()
        .map(|c| (c.path.clone(), c.what.clone()))
        .collect();
    assert_eq!(
        changed,
        vec![
            (format!("{root_name}/app config.toml"), "content".to_owned()),
            (
                format!("{root_name}/deploy.sh"),
                "mode 0755 -> 0644".to_owned()
            ),
        ]
    );

    // No overwrite without --force; the changed file is left as it was.
    let err = cfdr_files::restore(&repo, &archive.manifest, &rr, None)
        .await
        .unwrap_err();
    assert!(matches!(err, cfdr_files::Error::Exists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        fs::read_to_string(restored.join("app config.toml")).unwrap(),
        "port = 9090\n"
    );

    // --force with --path puts back one file only.
    rr.force = true;
    rr.paths = vec![format!("/{root_name}/app config.toml")];
    let report = cfdr_files::restore(&repo, &archive.manifest, &rr, None)
        .await
        .unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(
        fs::read_to_string(restored.join("app config.toml")).unwrap(),
        "port = 8080\n"
    );
    assert!(!restored.join("many/f00042").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_folder() {
    round_trip(Backend::Fs, "files_round_trip_fs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_s3() {
    round_trip(Backend::S3, "files_round_trip_s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_the_stored_archive_is_refused() {
    flipped_byte(Backend::Fs, "files_flipped_byte_fs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_the_stored_archive_is_refused_on_s3() {
    flipped_byte(Backend::S3, "files_flipped_byte_s3").await;
}

async fn flipped_byte(backend: Backend, test: &str) {
    let Some(loc) = TestLocation::new(backend, test) else {
        return;
    };
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("etc");
    fs::create_dir(&src).unwrap();
    // Incompressible, so the flipped byte lands in file data.
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("data.bin"), &data).unwrap();
    let mut opts = EncodeOptions::new(cfdr_storage::Compression::None);
    opts.threads = 0;
    let archive = cfdr_files::backup(
        &repo,
        &BackupRequest::new(FileClass::Audit, vec![src.clone()]),
        &opts,
    )
    .await
    .unwrap();
    let tar = archive
        .manifest
        .objects
        .iter()
        .find(|o| o.key.contains("files.tar"))
        .unwrap();
    let mut stored = repo.store().get(&tar.key).await.unwrap().to_vec();
    stored[100_000] ^= 0x20;
    repo.store().put(&tar.key, stored).await.unwrap();

    let into = work.path().join("into");
    let err = cfdr_files::restore(&repo, &archive.manifest, &RestoreRequest::new(&into), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("data.bin") || err.contains(&tar.key), "{err}");
    assert!(
        err.contains("corrupt") || err.contains("does not match"),
        "{err}"
    );
    // No file was put in place, damaged or temporary.
    let files: Vec<_> = match into.exists() {
        false => Vec::new(),
        true => snapshot(&into)
            .into_iter()
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .collect(),
    };
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_tag_records_the_commit() {
    let Some(_) = cfdr_testing::tool("git", "git", "files_git_tag") else {
        return;
    };
    let loc = TestLocation::new(Backend::Fs, "files_git_tag").unwrap();
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let co = work.path().join("configs");
    fs::create_dir(&co).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&co)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    fs::write(co.join("config.yaml"), "a: 1\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    let head = git(&["rev-parse", "HEAD"]);
    let day = jiff::Timestamp::now().strftime("%Y%m%d").to_string();

    let mut req = BackupRequest::new(FileClass::Config, vec![co.clone()]);
    req.git_tag = true;
    let a = cfdr_files::backup(&repo, &req, &EncodeOptions::default())
        .await
        .unwrap();
    let g = a.details.git.clone().unwrap();
    assert_eq!(
        (g.commit.as_str(), g.tag.clone(), g.dirty),
        (head.as_str(), format!("production-config-{day}"), false)
    );
    assert_eq!(git(&["rev-parse", &format!("{}^{{commit}}", g.tag)]), head);
    // Recorded in the stored manifest.
    let m = repo.manifest(&a.manifest.id).await.unwrap();
    assert_eq!(
        cfdr_files::ArchiveDetails::of(&m).unwrap().git,
        Some(g.clone())
    );

    // Same commit: same tag. A new commit the same day: the next tag.
    let again = cfdr_files::backup(&repo, &req, &EncodeOptions::default())
        .await
        .unwrap();
    assert_eq!(again.details.git.unwrap().tag, g.tag);
    fs::write(co.join("config.yaml"), "a: 2\n").unwrap();
    git(&["commit", "-qam", "two"]);
    fs::write(co.join("config.yaml"), "a: 3\n").unwrap();
    let third = cfdr_files::backup(&repo, &req, &EncodeOptions::default())
        .await
        .unwrap()
        .details
        .git
        .unwrap();
    assert_eq!(third.tag, format!("production-config-{day}-2"));
    assert_eq!(third.commit, git(&["rev-parse", "HEAD"]));
    assert!(third.dirty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_archive_is_not_listed() {
    use std::os::unix::ffi::OsStrExt;
    let loc = TestLocation::new(Backend::Fs, "files_failed").unwrap();
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("logs");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.log"), vec![b'x'; 3 << 20]).unwrap();
    fs::write(
        src.join(std::ffi::OsStr::from_bytes(b"z-\xff.log")),
        "latin-1 name\n",
    )
    .unwrap();
    let req = BackupRequest::new(FileClass::Logs, vec![src.clone()]);
    let err = cfdr_files::backup(&repo, &req, &EncodeOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not UTF-8") && err.contains("--exclude"),
        "{err}"
    );
    assert!(repo.backup_ids().await.unwrap().is_empty());

    // Excluded, the rest archives.
    let mut req = req;
    req.excludes = vec![Glob::new("z-*")];
    let a = cfdr_files::backup(&repo, &req, &EncodeOptions::default())
        .await
        .unwrap();
    assert_eq!(a.details.files, 1);
    assert_eq!(repo.backup_ids().await.unwrap(), vec![a.manifest.id]);
}
