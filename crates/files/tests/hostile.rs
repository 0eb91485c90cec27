//! Crafted hostile archives: each refused with a message naming the entry,
//! nothing written outside the target folder.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use cfdr_files::{ArchiveDetails, EntryKind, FileClass, Index, IndexEntry, RestoreRequest};
use cfdr_storage::{EncodeOptions, Manifest, Repository};
use cfdr_testing::{Backend, TestLocation};
use sha2::{Digest, Sha256};
use tar::EntryType;

const OK_BODY: &[u8] = b"a harmless file\n";

/// Appends one raw entry: the name and link name go into the header as
/// given (the `tar` builder would refuse them).
fn raw(out: &mut Vec<u8>, name: &[u8], ty: EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_mut_bytes()[..name.len()].copy_from_slice(name);
    h.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link);
    h.set_entry_type(ty);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A pax extended header carrying `records` for the next entry.
fn pax(out: &mut Vec<u8>, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (k, v) in records {
        let body_len = 1 + k.len() + 1 + v.len() + 1;
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len = len.to_string().len() + body_len;
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    raw(out, b"PaxHeaders/x", EntryType::XHeader, b"", &data);
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// A harmless first entry, so each case also shows earlier entries land
/// inside the folder.
fn ok_entry(tar: &mut Vec<u8>) {
    raw(tar, b"ok.txt", EntryType::Regular, b"", OK_BODY);
}

/// Stores `tar` as a config archive whose index lists `ok.txt` and `extra`.
async fn store(repo: &Repository, tar: Vec<u8>, extra: Vec<IndexEntry>) -> Manifest {
    let mut entries = vec![IndexEntry {
        path: "ok.txt".into(),
        kind: EntryKind::File,
        size: OK_BODY.len() as u64,
        sha256: Some(hex::encode(Sha256::digest(OK_BODY))),
        mode: 0o644,
        mtime: 1_600_000_000,
        target: None,
    }];
    entries.extend(extra);
    let index = serde_json::to_vec(&Index { entries }).unwrap();
    let opts = EncodeOptions::default();
    let mut w = repo.begin_backup("config", Some("config")).unwrap();
    w.put_encoded("files.tar.zst", std::io::Cursor::new(tar), &opts)
        .await
        .unwrap();
    w.put_encoded("index.json.zst", std::io::Cursor::new(index), &opts)
        .await
        .unwrap();
    let details = ArchiveDetails {
        file_class: FileClass::Config,
        roots: vec!["ok.txt".into()],
        excludes: vec![],
        files: 1,
        dirs: 0,
        symlinks: 0,
        bytes: OK_BODY.len() as u64,
        skipped: vec![],
        git: None,
    };
    let serde_json::Value::Object(map) = serde_json::to_value(details).unwrap() else {
        unreachable!()
    };
    w.commit(map).await.unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

struct Case {
    name: &'static str,
    tar: Vec<u8>,
    index: Vec<IndexEntry>,
    allow_outside_links: bool,
    /// Text the refusal must contain (the entry's name, the cause).
    expect: Vec<&'static str>,
}

fn symlink_index(path: &str, target: &str) -> IndexEntry {
    IndexEntry {
        path: path.into(),
        kind: EntryKind::Symlink,
        size: 0,
        sha256: None,
        mode: 0o777,
        mtime: 1_600_000_000,
        target: Some(target.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused() {
    let loc = TestLocation::new(Backend::Fs, "files_hostile").unwrap();
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let outer = tempfile::tempdir().unwrap();
    let outer_path = outer.path().to_str().unwrap().to_owned();
    let abs_name = format!("{outer_path}/abs-escape");

    let mut cases = Vec::new();
    let mut t = Vec::new();
    ok_entry(&mut t);
    raw(
        &mut t,
        abs_name.as_bytes(),
        EntryType::Regular,
        b"",
        b"pwned\n",
    );
    cases.push(Case {
        name: "absolute path",
        tar: finish(t),
        index: vec![],
        allow_outside_links: false,
        expect: vec!["abs-escape", "absolute path"],
    });

    let mut t = Vec::new();
    ok_entry(&mut t);
    raw(
        &mut t,
        b"../dotdot-escape",
        EntryType::Regular,
        b"",
        b"pwned\n",
    );
    cases.push(Case {
        name: "dot-dot",
        tar: finish(t),
        index: vec![],
        allow_outside_links: false,
        expect: vec!["../dotdot-escape", "`..`"],
    });

    // CVE-2018-20990 style: a symlink to outside, then a file through it.
    for allow in [false, true] {
        let mut t = Vec::new();
        ok_entry(&mut t);
        raw(
            &mut t,
            b"link",
            EntryType::Symlink,
            outer_path.as_bytes(),
            b"",
        );
        raw(
            &mut t,
            b"link/through-escape",
            EntryType::Regular,
            b"",
            b"pwned\n",
        );
        let expect = if allow {
            vec!["link/through-escape", "through the symlink"]
        } else {
            vec!["\"link\"", "outside the target folder"]
        };
        // An index that hides the link: the stream check still refuses it.
        let index = if allow {
            vec![symlink_index("link", &outer_path)]
        } else {
            vec![]
        };
        cases.push(Case {
            name: "symlink then file through it",
            tar: finish(t),
            index,
            allow_outside_links: allow,
            expect,
        });
    }

    // An inside link (allowed) and a later entry through it.
    let mut t = Vec::new();
    ok_entry(&mut t);
    raw(&mut t, b"d", EntryType::Directory, b"", b"");
    raw(&mut t, b"d/up", EntryType::Symlink, b"..", b"");
    raw(&mut t, b"d/up/x", EntryType::Regular, b"", b"pwned\n");
    let dir_entry = IndexEntry {
        path: "d".into(),
        kind: EntryKind::Dir,
        size: 0,
        sha256: None,
        mode: 0o755,
        mtime: 1_600_000_000,
        target: None,
    };
    cases.push(Case {
        name: "inside symlink written through",
        tar: finish(t),
        index: vec![dir_entry, symlink_index("d/up", "..")],
        allow_outside_links: false,
        expect: vec!["d/up/x", "through the symlink"],
    });

    for target in [
        b"/etc/hostname".as_slice(),
        b"../../etc/hostname",
        b"never-restored",
    ] {
        let mut t = Vec::new();
        ok_entry(&mut t);
        raw(&mut t, b"hardlink", EntryType::Link, target, b"");
        let expect = if target == b"never-restored" {
            vec!["hardlink", "not a file restored from this archive"]
        } else {
            vec!["hardlink", "outside the archive"]
        };
        cases.push(Case {
            name: "hardlink escape",
            tar: finish(t),
            index: vec![],
            allow_outside_links: false,
            expect,
        });
    }

    for (ty, what) in [
        (EntryType::Char, "Char"),
        (EntryType::Block, "Block"),
        (EntryType::Fifo, "Fifo"),
    ] {
        let mut t = Vec::new();
        ok_entry(&mut t);
        raw(&mut t, b"dev-null", ty, b"", b"");
        cases.push(Case {
            name: "device file",
            tar: finish(t),
            index: vec![],
            allow_outside_links: false,
            expect: vec!["dev-null", what],
        });
    }

    // An oversize GNU long-name header (a memory bomb for naive readers).
    let mut t = Vec::new();
    ok_entry(&mut t);
    raw(
        &mut t,
        b"././@LongLink",
        EntryType::GNULongName,
        b"",
        &vec![b'a'; 1 << 20],
    );
    raw(&mut t, b"short", EntryType::Regular, b"", b"x");
    cases.push(Case {
        name: "oversize header",
        tar: finish(t),
        index: vec![],
        allow_outside_links: false,
        expect: vec!["@LongLink", "oversize"],
    });

    // A NUL hidden in a pax path.
    let mut t = Vec::new();
    ok_entry(&mut t);
    pax(&mut t, &[("path", b"evil\0name")]);
    raw(&mut t, b"plain", EntryType::Regular, b"", b"x");
    cases.push(Case {
        name: "NUL in name",
        tar: finish(t),
        index: vec![],
        allow_outside_links: false,
        expect: vec!["evil", "NUL"],
    });

    // A pax path that escapes although the header name is harmless.
    let mut t = Vec::new();
    ok_entry(&mut t);
    pax(&mut t, &[("path", b"../pax-escape")]);
    raw(&mut t, b"harmless", EntryType::Regular, b"", b"pwned\n");
    cases.push(Case {
        name: "pax path escape",
        tar: finish(t),
        index: vec![],
        allow_outside_links: false,
        expect: vec!["../pax-escape", "`..`"],
    });

    // A pax size record that would desynchronise entry boundaries (the
    // size-override confusion behind the 2025 tar-parser advisories).
    let mut t = Vec::new();
    ok_entry(&mut t);
    pax(&mut t, &[("size", b"1024")]);
    raw(&mut t, b"smuggler", EntryType::Regular, b"", b"x");
    cases.push(Case {
        name: "pax size override",
        tar: finish(t),
        index: vec![],
        allow_outside_links: false,
        expect: vec!["PaxHeaders/x", "pax size"],
    });

    for case in cases {
        let m = store(&repo, case.tar, case.index).await;
        let into = outer.path().join("into");
        let mut req = RestoreRequest::new(&into);
        req.allow_outside_links = case.allow_outside_links;
        let err = cfdr_files::restore(&repo, &m, &req, None)
            .await
            .unwrap_err()
            .to_string();
        for needle in &case.expect {
            assert!(
                err.contains(needle),
                "{}: {err:?} lacks {needle:?}",
                case.name
            );
        }
        assert!(err.contains("refused"), "{}: {err}", case.name);
        // Nothing beside the target folder, nothing under /etc either.
        assert_eq!(
            listing(outer.path()),
            vec!["into".to_owned()],
            "{}",
            case.name
        );
        assert_eq!(
            fs::read(into.join("ok.txt")).unwrap(),
            OK_BODY,
            "{}",
            case.name
        );
        let stray: Vec<_> = listing(&into)
            .into_iter()
            .filter(|n| n != "ok.txt" && n != "d" && n != "link")
            .collect();
        assert!(stray.is_empty(), "{}: {stray:?}", case.name);
        fs::remove_dir_all(&into).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_that_differs_from_the_index_is_not_put_in_place() {
    let loc = TestLocation::new(Backend::Fs, "files_index_mismatch").unwrap();
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    let mut t = Vec::new();
    raw(
        &mut t,
        b"ok.txt",
        EntryType::Regular,
        b"",
        b"a tampered file\n",
    );
    let m = store(&repo, finish(t), vec![]).await;
    let into = tempfile::tempdir().unwrap();
    let err = cfdr_files::restore(&repo, &m, &RestoreRequest::new(into.path()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, cfdr_files::Error::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("ok.txt"), "{err}");
    assert!(
        listing(into.path()).is_empty(),
        "{:?}",
        listing(into.path())
    );
}
