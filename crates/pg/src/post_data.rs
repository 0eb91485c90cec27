//! Splits pg_restore's post-data script so each table's indexes and
//! primary, unique and exclusion constraints are built as soon as its rows
//! are in, while the next tables still load (the scheduling `pg_restore
//! --jobs` does, which needs a seekable file).
//!
//! Only `INDEX` and `CONSTRAINT` entries on a table whose rows this restore
//! loads move; every other entry (foreign keys, triggers, index attachments,
//! materialized view refreshes, comments, grants) stays in the remaining
//! script, in its order, run after all the early ones. The script is cut at
//! pg_restore's entry headers (`-- Name: ...; Type: ...; Schema: ...;`);
//! without them nothing moves.

use std::collections::{HashMap, HashSet};

/// One entry built early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Early {
    /// `INDEX t2_x` (for messages).
    pub what: String,
    /// The session settings in force at the entry, then its statements.
    pub sql: String,
}

/// The post-data script, split.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to run once the table (as written in `COPY <table> ...`)
    /// is loaded, in script order.
    pub early: HashMap<String, Vec<Early>>,
    /// The script without the early entries (their session settings kept).
    pub rest: String,
}

impl Plan {
    /// Splits `script`; `loaded(table)` says whether the restore loads
    /// rows into `table` (written as in its `COPY` statement).
    pub(crate) fn new(script: &str, loaded: impl Fn(&str) -> bool) -> Self {
        let lines: Vec<&str> = script.split_inclusive('\n').collect();
        let starts: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                lines[i] == "--\n"
                    && lines.get(i + 1).is_some_and(|l| l.starts_with("-- Name: "))
                    && lines.get(i + 2) == Some(&"--\n")
            })
            .collect();
        let mut plan = Plan::default();
        // Session settings in force so far: (name, line), latest wins.
        let mut settings: Vec<(String, String)> = Vec::new();
        let mut chunk_starts = vec![0];
        chunk_starts.extend(&starts);
        for (k, &from) in chunk_starts.iter().enumerate() {
            let to = chunk_starts.get(k + 1).copied().unwrap_or(lines.len());
            let chunk = &lines[from..to];
            let early = (k > 0).then(|| early_entry(chunk, &loaded)).flatten();
            match early {
                Some((table, what)) => {
                    // The entry ends at the next comment or psql meta-command
                    // (the last entry is followed by the script's footer).
                    let body = &chunk[3..];
                    let end = body
                        .iter()
                        .position(|l| l.starts_with("--") || l.starts_with('\\'))
                        .unwrap_or(body.len());
                    let mut sql: String = settings.iter().map(|(_, l)| l.as_str()).collect();
                    for line in &body[..end] {
                        if is_session_setting(line.as_bytes()) {
                            plan.rest.push_str(line);
                        } else {
                            sql.push_str(line);
                        }
                    }
                    plan.early
                        .entry(table)
                        .or_default()
                        .push(Early { what, sql });
                    plan.rest.extend(body[end..].iter().copied());
                }
                None => plan.rest.extend(chunk.iter().copied()),
            }
            for line in chunk.iter().filter(|l| is_session_setting(l.as_bytes())) {
                let name = setting_name(line);
                match settings.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = (*line).to_owned(),
                    None => settings.push((name, (*line).to_owned())),
                }
            }
        }
        plan
    }
}

/// Splits a `pg_restore --section=post-data` script the way a streamed
/// restore does when it loads the tables of `copy_statements` (their
/// `COPY ... FROM stdin` statements): the script's preamble settings and
/// the split. Public so that hostile scripts can be fed to the splitter
/// directly (fuzzing); restores use the parts internally.
pub fn split_post_data(script: &str, copy_statements: &[&str]) -> (String, Plan) {
    let targets: HashSet<&str> = copy_statements
        .iter()
        .filter_map(|s| copy_target(s))
        .collect();
    let plan = Plan::new(script, |t| targets.contains(t));
    (preamble_settings(script), plan)
}

/// `SET x = ...;` and `SELECT pg_catalog.set_config(...)` lines: the
/// session state pg_restore sets between entries.
pub(crate) fn is_session_setting(line: &[u8]) -> bool {
    line.starts_with(b"SET ") || line.starts_with(b"SELECT pg_catalog.set_config(")
}

fn setting_name(line: &str) -> String {
    match line.strip_prefix("SET ") {
        Some(rest) => rest.split(' ').next().unwrap_or(rest).to_owned(),
        None => line.split(',').next().unwrap_or(line).to_owned(),
    }
}

/// (table, "TYPE name") of a chunk (header lines first) that can run early.
fn early_entry(chunk: &[&str], loaded: &impl Fn(&str) -> bool) -> Option<(String, String)> {
    let header = chunk.get(1)?.strip_prefix("-- Name: ")?;
    let (name, rest) = header.split_once("; Type: ")?;
    let (kind, _) = rest.split_once("; Schema: ")?;
    // Headers can overlap (`--`, `-- Name:`, `--`, `-- Name:`, `--`),
    // leaving a chunk of two lines.
    let statement = chunk
        .get(3..)?
        .iter()
        .find(|l| !l.trim().is_empty() && !is_session_setting(l.as_bytes()))?;
    let table = match kind {
        "CONSTRAINT" => {
            let target = statement
                .strip_prefix("ALTER TABLE ONLY ")
                .or_else(|| statement.strip_prefix("ALTER TABLE "))?;
            qualified_name(target)?.0
        }
        "INDEX" => {
            let rest = statement
                .strip_prefix("CREATE INDEX ")
                .or_else(|| statement.strip_prefix("CREATE UNIQUE INDEX "))?;
            let (_, rest) = qualified_name(rest)?;
            let rest = rest.strip_prefix(" ON ")?;
            let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
            qualified_name(rest)?.0
        }
        _ => return None,
    };
    loaded(table).then(|| (table.to_owned(), format!("{kind} {name}")))
}

/// `COPY <table> (cols) FROM stdin;` (a line of pg_restore's script or a
/// table-data entry's statement) without its `;` and line end.
pub(crate) fn copy_from_stdin(text: &str) -> Option<&str> {
    let statement = text.trim_end().strip_suffix(';')?;
    (statement.starts_with("COPY ") && statement.ends_with(" FROM stdin")).then_some(statement)
}

/// The session settings at the top of a pg_restore script (before its
/// first entry): client encoding, search path and the like.
pub(crate) fn preamble_settings(script: &str) -> String {
    script
        .split_inclusive('\n')
        .take_while(|line| {
            !line.starts_with("-- Name: ") && !line.starts_with("-- Data for Name: ")
        })
        .filter(|line| is_session_setting(line.as_bytes()))
        .collect()
}

/// The table a `COPY <table> (cols) FROM stdin` statement loads, as written.
pub(crate) fn copy_target(statement: &str) -> Option<&str> {
    Some(qualified_name(statement.strip_prefix("COPY ")?)?.0)
}

/// A possibly schema-qualified name as pg_dump writes it (lowercase
/// `[a-z0-9_]` words or double-quoted ones, joined by dots): (the name's
/// text, what follows).
fn qualified_name(s: &str) -> Option<(&str, &str)> {
    let mut end = 0;
    loop {
        end += identifier_len(&s[end..])?;
        if s[end..].starts_with('.') {
            end += 1;
        } else {
            return Some((&s[..end], &s[end..]));
        }
    }
}

fn identifier_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match bytes.get(i)? {
                b'"' if bytes.get(i + 1) == Some(&b'"') => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
    }
    let n = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'$')
        .count();
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// pg_restore 15's post-data script of a schema with a quoted schema
    /// and table, a partitioned table, a materialized view and a foreign key.
    const SCRIPT: &str = r#"--
-- PostgreSQL database dump
--

\restrict abc

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);

SET default_tablespace = '';

--
-- Name: T 1 T 1_pkey; Type: CONSTRAINT; Schema: My Sch; Owner: postgres
--

ALTER TABLE ONLY "My Sch"."T 1"
    ADD CONSTRAINT "T 1_pkey" PRIMARY KEY (id);


--
-- Name: p p_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.p
    ADD CONSTRAINT p_pkey PRIMARY KEY (id);


SET default_tablespace = fast;

--
-- Name: p1_k_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX p1_k_idx ON public.p1 USING btree (k);


SET default_tablespace = '';

--
-- Name: mv_x_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX mv_x_idx ON public.mv USING btree (x);


--
-- Name: t2_x; Type: INDEX; Schema: public; Owner: postgres
--

CREATE UNIQUE INDEX t2_x ON ONLY public.t2 USING btree (x) WHERE (x > 3);


--
-- Name: p1_k_idx; Type: INDEX ATTACH; Schema: public; Owner: postgres
--

ALTER INDEX public.p_k_idx ATTACH PARTITION public.p1_k_idx;


--
-- Name: t2 t2_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.t2
    ADD CONSTRAINT t2_id_fkey FOREIGN KEY (id) REFERENCES "My Sch"."T 1"(id);


--
-- Name: t2 t2_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.t2
    ADD CONSTRAINT t2_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

\unrestrict abc

"#;

    fn loaded(t: &str) -> bool {
        ["\"My Sch\".\"T 1\"", "public.p1", "public.t2"].contains(&t)
    }

    #[test]
    fn indexes_and_keys_of_loaded_tables_move_early_with_their_settings() {
        let plan = Plan::new(SCRIPT, loaded);
        let mut tables: Vec<&str> = plan.early.keys().map(String::as_str).collect();
        tables.sort_unstable();
        assert_eq!(tables, ["\"My Sch\".\"T 1\"", "public.p1", "public.t2"]);
        let t1 = &plan.early["\"My Sch\".\"T 1\""];
        assert_eq!(t1.len(), 1);
        assert_eq!(t1[0].what, "CONSTRAINT T 1 T 1_pkey");
        assert!(t1[0].sql.starts_with(
            "SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\nSET default_tablespace = '';\n"
        ));
        assert!(
            t1[0]
                .sql
                .ends_with("ADD CONSTRAINT \"T 1_pkey\" PRIMARY KEY (id);\n\n\n")
        );
        let p1 = &plan.early["public.p1"][0];
        assert!(
            p1.sql.contains("SET default_tablespace = fast;\n"),
            "{}",
            p1.sql
        );
        assert!(
            !p1.sql.contains("SET default_tablespace = '';"),
            "latest value only"
        );
        assert!(!p1.sql.contains("\\restrict"), "no psql meta-commands");
        let t2 = &plan.early["public.t2"];
        assert_eq!(t2[0].what, "INDEX t2_x");
        // The last entry stops before the script's footer.
        assert_eq!(t2[1].what, "CONSTRAINT t2 t2_pkey");
        assert!(
            t2[1]
                .sql
                .ends_with("ADD CONSTRAINT t2_pkey PRIMARY KEY (id);\n\n\n"),
            "{}",
            t2[1].sql
        );

        // The rest keeps everything else in order, and every setting.
        let rest = &plan.rest;
        for moved in [
            "\"T 1_pkey\" PRIMARY KEY",
            "p1_k_idx ON",
            "t2_x ON",
            "t2_pkey PRIMARY KEY",
        ] {
            assert!(!rest.contains(moved), "{moved} moved out");
        }
        let order = [
            "\\restrict abc",
            "p_pkey PRIMARY KEY",
            "SET default_tablespace = fast;",
            "SET default_tablespace = '';",
            "mv_x_idx ON public.mv",
            "ATTACH PARTITION",
            "FOREIGN KEY",
            "-- PostgreSQL database dump complete",
            "\\unrestrict abc",
        ];
        let mut from = 0;
        for s in order {
            from += rest[from..]
                .find(s)
                .unwrap_or_else(|| panic!("{s} in order in {rest}"));
        }
    }

    #[test]
    fn nothing_moves_without_headers_or_loaded_tables() {
        let plan = Plan::new(SCRIPT, |_| false);
        assert!(plan.early.is_empty());
        assert_eq!(plan.rest, SCRIPT);
        let bare = "CREATE INDEX a ON public.t USING btree (x);\n";
        let plan = Plan::new(bare, |_| true);
        assert!(plan.early.is_empty());
        assert_eq!(plan.rest, bare);
    }

    #[test]
    fn names_are_read_as_pg_dump_writes_them() {
        assert_eq!(
            copy_target("COPY public.trades (id, qty) FROM stdin"),
            Some("public.trades")
        );
        assert_eq!(
            copy_target("COPY \"We\"\"ird\".\"a.b c\" (x) FROM stdin"),
            Some("\"We\"\"ird\".\"a.b c\"")
        );
        assert_eq!(copy_target("COPY public.t FROM stdin"), Some("public.t"));
        assert_eq!(copy_target("COPY \"unterminated FROM stdin"), None);
        assert_eq!(copy_target("SELECT 1"), None);
    }
}
