//! Refuses a dump whose table of contents holds SQL that reaches beyond
//! the database being restored. A restore runs every entry's definition on
//! the server (pg_restore sends each as one query; the post-data script
//! goes through psql), as a role that can usually drop any database, so a
//! dump altered in the repository could otherwise drop or change another
//! database, the server's configuration or its roles, or escape psql with a
//! meta-command (`\connect`, `\!`).
//!
//! `pg_dump` of one database never writes, at the start of a statement:
//! transaction control, `CREATE`/`ALTER`/`DROP DATABASE`, `ALTER SYSTEM`,
//! roles, tablespaces, `DROP OWNED`/`REASSIGN OWNED`, `LOAD`, or `COPY`
//! other than a table data entry's own `COPY ... FROM stdin`; and never a
//! backslash outside a literal. Such an entry is refused before anything
//! is created, naming the entry. The database-level entries (`DATABASE`,
//! `DATABASE PROPERTIES`) are not run by pg_restore without `--create`;
//! cfdr applies what they hold itself, retargeted to the new database
//! ([`crate::db_properties`]).

/// Statement heads (upper-cased words) no entry of a one-database dump
/// starts a statement with. A head is refused when the statement's first
/// words are these; `USER` forms are refused unless followed by `MAPPING`.
const FORBIDDEN: &[&[&str]] = &[
    &["BEGIN"],
    &["START", "TRANSACTION"],
    &["COMMIT"],
    &["ROLLBACK"],
    &["ABORT"],
    &["SAVEPOINT"],
    &["RELEASE"],
    &["PREPARE", "TRANSACTION"],
    &["CREATE", "DATABASE"],
    &["ALTER", "DATABASE"],
    &["DROP", "DATABASE"],
    &["ALTER", "SYSTEM"],
    &["CREATE", "ROLE"],
    &["ALTER", "ROLE"],
    &["DROP", "ROLE"],
    &["CREATE", "GROUP"],
    &["ALTER", "GROUP"],
    &["DROP", "GROUP"],
    &["CREATE", "TABLESPACE"],
    &["ALTER", "TABLESPACE"],
    &["DROP", "TABLESPACE"],
    &["DROP", "OWNED"],
    &["REASSIGN", "OWNED"],
    &["LOAD"],
    &["COPY"],
];

/// Why `entry`'s SQL is refused, or `None` when it may run.
pub(crate) fn refusal(entry: &pgarchive::TocEntry) -> Option<String> {
    if matches!(entry.desc.as_str(), "DATABASE" | "DATABASE PROPERTIES") {
        return None;
    }
    if let Some(why) = refused_sql(&entry.defn) {
        return Some(why);
    }
    if entry.copy_stmt.is_empty() {
        return None;
    }
    let heads = scan(&entry.copy_stmt);
    let one_copy = heads.statements.len() == 1
        && crate::post_data::copy_from_stdin(&entry.copy_stmt).is_some()
        && !heads.backslash;
    (!one_copy).then(|| {
        format!(
            "a data statement other than one `COPY ... FROM stdin` ({})",
            excerpt(&entry.copy_stmt)
        )
    })
}

/// The first thing refused in `sql` (a definition), or `None`.
fn refused_sql(sql: &str) -> Option<String> {
    let found = scan(sql);
    if found.backslash {
        return Some("a psql meta-command (a backslash outside a literal)".into());
    }
    for words in &found.statements {
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let user_form = matches!(
            upper.first().map(String::as_str),
            Some("CREATE" | "ALTER" | "DROP")
        ) && upper.get(1).is_some_and(|w| w == "USER")
            && upper.get(2).is_none_or(|w| w != "MAPPING");
        let forbidden = user_form
            || FORBIDDEN.iter().any(|head| {
                head.iter()
                    .enumerate()
                    .all(|(i, h)| upper.get(i).is_some_and(|w| w == h))
            });
        if forbidden {
            return Some(format!("`{} ...`", words.join(" ")));
        }
    }
    None
}

/// The start of `sql` on one line, for messages.
fn excerpt(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

/// What [`scan`] found.
struct Scan {
    /// The first three words of each statement.
    statements: Vec<Vec<String>>,
    /// A backslash outside literals, identifiers and comments.
    backslash: bool,
}

/// Lexes `sql` as PostgreSQL does for statement boundaries: quoted
/// literals (`'...'`, `E'...'` with backslash escapes), quoted identifiers,
/// dollar quotes, `--` and nested `/* */` comments; a `;` outside them
/// ends a statement.
fn scan(sql: &str) -> Scan {
    let b = sql.as_bytes();
    let mut out = Scan {
        statements: Vec::new(),
        backslash: false,
    };
    let mut words: Option<Vec<String>> = None;
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                let escapes =
                    i > 0 && matches!(b[i - 1], b'E' | b'e') && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                words.get_or_insert_with(Vec::new);
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                words.get_or_insert_with(Vec::new);
            }
            b'$' if i == 0 || !ident(b[i - 1]) => {
                // $tag$ ... $tag$ (the tag may be empty); $1 is a parameter.
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&t| !(t.is_ascii_alphanumeric() || t == b'_' || t >= 0x80))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(end)
                        if b[end] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) =>
                    {
                        let tag = &b[i..=end];
                        let body = end + 1;
                        let close = b[body..]
                            .windows(tag.len())
                            .position(|w| w == tag)
                            .map_or(b.len(), |p| body + p + tag.len());
                        i = close;
                        words.get_or_insert_with(Vec::new);
                        continue;
                    }
                    _ => {}
                }
            }
            b'\\' => out.backslash = true,
            b';' => {
                if let Some(w) = words.take() {
                    out.statements.push(w);
                }
            }
            c if ident(c) => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let w = words.get_or_insert_with(Vec::new);
                if w.len() < 3 {
                    w.push(String::from_utf8_lossy(&b[start..i]).into_owned());
                }
                continue;
            }
            c if c.is_ascii_whitespace() => {}
            _ => {
                words.get_or_insert_with(Vec::new);
            }
        }
        i += 1;
    }
    if let Some(w) = words {
        out.statements.push(w);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pg_dump_definitions_pass() {
        for sql in [
            "CREATE TABLE public.t (\n    id integer NOT NULL,\n    v text DEFAULT 'BEGIN; DROP DATABASE x;'::text\n);\n",
            "CREATE FUNCTION public.f() RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$\nBEGIN\n  COMMIT;\n  RETURN NEW;\nEND $$;\n",
            "CREATE FUNCTION public.g() RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT 1;\nEND;\n",
            "CREATE USER MAPPING FOR postgres SERVER s OPTIONS (\n    \"user\" 'x'\n);\n",
            "COMMENT ON TABLE public.t IS 'drop database; \\connect';\n",
            "COMMENT ON TABLE public.t IS E'it''s \\' COMMIT;';\n",
            "CREATE INDEX t_v ON public.t USING btree (v);\n",
            "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n",
            "SELECT pg_catalog.setval('public.t_id_seq', 42, true);\n",
            "/* DROP DATABASE x; */ CREATE SCHEMA \"DROP DATABASE\";\n",
            "CREATE FUNCTION public.h() RETURNS int LANGUAGE sql AS $f$ SELECT $1 $f$;\n",
        ] {
            assert_eq!(refused_sql(sql), None, "{sql}");
        }
    }

    #[test]
    fn reaching_past_the_database_is_refused() {
        for (sql, head) in [
            ("DROP DATABASE victim;\n", "`DROP DATABASE victim ...`"),
            (
                "COMMENT ON TABLE t IS 'x';\ndrop  database\nvictim;",
                "`drop database victim ...`",
            ),
            ("COMMIT;\n", "`COMMIT ...`"),
            (
                "ALTER SYSTEM SET work_mem = '1GB';",
                "`ALTER SYSTEM SET ...`",
            ),
            (
                "ALTER ROLE postgres PASSWORD 'x';",
                "`ALTER ROLE postgres ...`",
            ),
            ("CREATE USER evil SUPERUSER;", "`CREATE USER evil ...`"),
            ("COPY t TO PROGRAM 'rm -rf /';", "`COPY t TO ...`"),
            ("/* x */ BEGIN; DROP DATABASE v; END;", "`BEGIN ...`"),
        ] {
            assert_eq!(refused_sql(sql).as_deref(), Some(head), "{sql}");
        }
        for sql in [
            "\\connect victim\nDROP TABLE t;\n",
            "CREATE INDEX i ON t (v);\n\\! rm -rf /\n",
        ] {
            assert!(refused_sql(sql).unwrap().contains("meta-command"), "{sql}");
        }
    }
}
