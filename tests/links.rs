//! Every relative link in README.md and docs/*.md resolves: the file or
//! folder exists, and a `#anchor` into a Markdown file names one of its
//! headings (GitHub's anchors). Every docs page is linked from the README,
//! which stays a front page.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The checked pages: README.md and every docs/*.md.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md")];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        docs.sort();
        pages.extend(docs);
    }
    pages
}

/// The lines of `text` outside fenced code blocks, numbered from 1.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
        } else if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// `line` without its code spans (`...`), which hold no links.
fn without_code(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// Heading text as rendered: code marks, emphasis and link targets gone.
fn rendered(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("](") {
        let close = rest[open..].find(')').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&rest[..open]);
        rest = &rest[close..];
    }
    out.push_str(rest);
    out.replace(['`', '*', '[', ']'], "")
}

/// GitHub's anchor for a heading: lower case, everything but letters,
/// digits, spaces, `-` and `_` dropped, each space a `-`.
fn slug(heading: &str) -> String {
    rendered(heading)
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text: one per heading, repeats numbered `-1`,
/// `-2`, ... as GitHub does.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// Inline link and image targets, `[text](target)`, with their line.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let line = without_code(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let target = match rest.strip_prefix('<') {
                Some(inner) => inner.split('>').next().unwrap_or_default(),
                // A title may follow the target after a space.
                None => rest.split([')', ' ']).next().unwrap_or_default(),
            };
            out.push((n, target.to_owned()));
        }
    }
    out
}

/// What is wrong with the relative links of `page`, one message each.
fn broken_links(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut problems = Vec::new();
    for (line, target) in links(&text) {
        let at = format!("{}:{line}: link {target}", page.display());
        let scheme = target
            .split(['/', '#'])
            .next()
            .is_some_and(|s| s.contains(':'));
        if scheme {
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
        let file = if path.is_empty() {
            page.to_path_buf()
        } else {
            page.parent().unwrap().join(path)
        };
        if !file.exists() {
            problems.push(format!("{at}: {} does not exist", file.display()));
            continue;
        }
        let markdown = file.extension().is_some_and(|e| e == "md");
        if !anchor.is_empty() && markdown {
            let heads = anchors(&std::fs::read_to_string(&file).unwrap());
            if !heads.contains(anchor) {
                let mut known: Vec<_> = heads.into_iter().collect();
                known.sort();
                problems.push(format!(
                    "{at}: {} has no heading #{anchor} (its anchors: {})",
                    file.display(),
                    known.join(", ")
                ));
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let root = root();
    let pages = pages(&root);
    assert!(pages.len() > 5, "README.md and docs/*.md: {pages:?}");
    let checked: usize = pages
        .iter()
        .map(|p| links(&std::fs::read_to_string(p).unwrap()).len())
        .sum();
    assert!(checked > 50, "only {checked} links found");
    let problems: Vec<String> = pages.iter().flat_map(|p| broken_links(p)).collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_docs_page_is_linked_from_the_readme() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let linked: HashSet<String> = links(&readme)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap_or_default().to_owned())
        .collect();
    let unlinked: Vec<String> = pages(&root)
        .iter()
        .skip(1)
        .map(|p| format!("docs/{}", p.file_name().unwrap().to_string_lossy()))
        .filter(|p| !linked.contains(p))
        .collect();
    assert!(
        unlinked.is_empty(),
        "pages README.md does not link to (add them to its Documentation table): {unlinked:?}"
    );
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        slug(" Where cfdr goes past the runbook"),
        "where-cfdr-goes-past-the-runbook"
    );
    assert_eq!(slug(" `[retention]` (cfdr-prune)"), "retention-cfdr-prune");
    assert_eq!(
        slug(" Logical backups (runbook 2.1, 3.1 \"Full Database Restore\", 6 \"Backup Testing\")"),
        "logical-backups-runbook-21-31-full-database-restore-6-backup-testing"
    );
    assert_eq!(
        slug(" Restoring by hand, without cfdr"),
        "restoring-by-hand-without-cfdr"
    );
    assert_eq!(slug(" See [the page](x.md) now"), "see-the-page-now");
    let a = anchors("# Tests\n## Tests\n```\n# not a heading\n```\n### Tests\n#nospace\n");
    let want: HashSet<String> = ["tests", "tests-1", "tests-2"].map(String::from).into();
    assert_eq!(a, want);
}

#[test]
fn a_missing_file_or_anchor_is_reported_and_code_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.md"), "# B page\n## Part two\n").unwrap();
    let a = dir.path().join("a.md");
    std::fs::write(
        &a,
        "# A\n[ok](b.md) [ok](b.md#part-two) [self](#a) [web](https://example.com/x)\n\
         [gone](c.md) [bad anchor](b.md#part-three) [bad self](#z)\n\
         `[code](nothing.md)`\n```\n[fenced](nothing.md)\n```\n\
         [split\nlink](b.md#b-page) ![image](b.md \"title\")\n",
    )
    .unwrap();
    let problems = broken_links(&a);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("c.md does not exist"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("no heading #part-three"),
        "{}",
        problems[1]
    );
    assert!(problems[2].contains("no heading #z"), "{}", problems[2]);
}

#[test]
fn the_readme_stays_a_front_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 300,
        "README.md has {lines} lines: reference material belongs in a docs/ page linked from it"
    );
}
