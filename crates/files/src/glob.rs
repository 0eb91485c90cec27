//! `--exclude` patterns.

/// A shell-style pattern: `*` and `?` within one path component, `**`
/// across components. A pattern without `/` matches any entry whose own
/// name matches (`*.tmp`); one with `/` matches the archive path
/// (`var/log/app/**`), a leading `/` ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    whole_path: bool,
}

impl Glob {
    /// Parses a pattern.
    pub fn new(pattern: &str) -> Self {
        let whole_path = pattern.contains('/');
        Glob {
            pattern: pattern.trim_start_matches('/').to_owned(),
            whole_path,
        }
    }

    /// The pattern as given (without a leading `/`).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether `path` (an archive path, `a/b/c`) matches.
    pub fn matches(&self, path: &str) -> bool {
        let subject = match self.whole_path {
            true => path,
            false => path.rsplit('/').next().unwrap_or(path),
        };
        matches(self.pattern.as_bytes(), subject.as_bytes())
    }
}

fn matches(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            // `**/` also matches no folder at all.
            let rest_no_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=s.len()).any(|i| matches(rest, &s[i..]) || matches(rest_no_slash, &s[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            let mut i = 0;
            loop {
                if matches(rest, &s[i..]) {
                    return true;
                }
                if i == s.len() || s[i] == b'/' {
                    return false;
                }
                i += 1;
            }
        }
        Some(b'?') => matches!(s.first(), Some(c) if *c != b'/') && matches(&p[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && matches(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn patterns() {
        assert!(Glob::new("*.tmp").matches("etc/app/x.tmp"));
        assert!(!Glob::new("*.tmp").matches("etc/app/x.tmp.keep"));
        assert!(Glob::new("etc/*/secret?").matches("etc/app/secret1"));
        assert!(!Glob::new("etc/*/secret").matches("etc/app/sub/secret"));
        assert!(Glob::new("/etc/**/secret").matches("etc/app/sub/secret"));
        assert!(Glob::new("etc/**/secret").matches("etc/secret"));
        assert!(Glob::new("var/log/**").matches("var/log/a/b"));
        assert!(!Glob::new("cache").matches("etc/cache2"));
    }
}
