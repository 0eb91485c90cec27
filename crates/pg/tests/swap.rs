//! What a restore and a swap keep of the database itself (owner,
//! privileges, settings, comment, encoding and locale), and names: against
//! a real PostgreSQL 15 cluster.
#![allow(clippy::unwrap_used)]

use cfdr_pg::logical::{self, DatabaseLocale, LogicalDetails, LogicalOptions, RestoreRequest};
use cfdr_pg::{Error, LocalCluster, PgTarget};
use cfdr_storage::{EncodeOptions, Manifest, Repository};
use cfdr_testing::{Backend, TestLocation};
use sqlx::{Connection, Executor, Row};

/// A cluster (its own database `cryptofunk` unused here) and a repository.
async fn setup(test: &str) -> Option<(LocalCluster, TestLocation, Repository)> {
    let cluster = match cfdr_testing::pg::cryptofunk_cluster("cryptofunk", 5, 50).await {
        Ok(c) => c,
        Err(e) => {
            return cfdr_testing::missing(
                &format!("a PostgreSQL 15 cluster ({e}; apt-get install postgresql-15)"),
                test,
            );
        }
    };
    let loc = TestLocation::new(Backend::Fs, test)?;
    let repo = Repository::init(loc.options.build().unwrap())
        .await
        .unwrap();
    Some((cluster, loc, repo))
}

async fn run(target: &PgTarget, sql: &str) {
    let mut conn = target.connect().await.unwrap();
    conn.execute(sql).await.unwrap();
    conn.close().await.unwrap();
}

async fn text(target: &PgTarget, sql: &str) -> String {
    let mut conn = target.connect().await.unwrap();
    let v: String = sqlx::query(sql).fetch_one(&mut conn).await.unwrap().get(0);
    conn.close().await.unwrap();
    v
}

/// A database unlike the server's defaults in every property a swap could
/// lose: owner, privileges, connection limit, per-database and per-role
/// settings, comment, encoding and locale (the cluster is UTF8 C.UTF-8).
const LEDGER: &str = "ledger";

async fn create_ledger(cluster: &LocalCluster) {
    let server = cluster.target("postgres");
    run(
        &server,
        "CREATE ROLE ledger_owner LOGIN; CREATE ROLE ledger_reader LOGIN; CREATE ROLE ledger_outsider LOGIN",
    )
    .await;
    run(
        &server,
        "CREATE DATABASE ledger OWNER ledger_owner TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'",
    )
    .await;
    run(
        &server,
        "REVOKE CONNECT ON DATABASE ledger FROM PUBLIC;
         GRANT CONNECT ON DATABASE ledger TO ledger_reader;
         ALTER DATABASE ledger CONNECTION LIMIT 40;
         ALTER DATABASE ledger SET work_mem = '7MB';
         ALTER DATABASE ledger SET search_path = ledger, public;
         ALTER ROLE ledger_reader IN DATABASE ledger SET statement_timeout = '5s';
         ALTER ROLE ledger_reader IN DATABASE ledger SET default_transaction_read_only = on;
         COMMENT ON DATABASE ledger IS 'ledger: it''s the live one'",
    )
    .await;
    run(
        &cluster.target(LEDGER),
        "CREATE SCHEMA ledger AUTHORIZATION ledger_owner;
         CREATE TABLE ledger.entries (id int PRIMARY KEY, memo text);
         INSERT INTO ledger.entries SELECT g, 'café Zürich ' || g FROM generate_series(1, 500) g;
         GRANT USAGE ON SCHEMA ledger TO ledger_reader;
         GRANT SELECT ON ledger.entries TO ledger_reader",
    )
    .await;
}

/// The database-level properties of `db`, by name, as a user would list them
/// (privileges as a sorted list: their order in the ACL has no meaning).
async fn properties(cluster: &LocalCluster, db: &str) -> Vec<(&'static str, String)> {
    let mut conn = cluster.target("postgres").connect().await.unwrap();
    let row = sqlx::query(
        "SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text,
                d.datcollate::text, d.datctype::text, d.datlocprovider::text,
                d.datconnlimit::text, coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(d.datacl) a), 'default'),
                coalesce(shobj_description(d.oid, 'pg_database'), '-'),
                coalesce((SELECT string_agg(coalesce(r.rolname, '*') || ':' || array_to_string(s.setconfig, ','), '; '
                                            ORDER BY coalesce(r.rolname, '*'))
                          FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                          WHERE s.setdatabase = d.oid), '-')
         FROM pg_database d WHERE d.datname = $1",
    )
    .bind(db)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let names = [
        "owner",
        "encoding",
        "collate",
        "ctype",
        "provider",
        "conn limit",
        "acl",
        "comment",
        "settings",
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, row.get::<String, _>(i)))
        .collect()
}

async fn memos(cluster: &LocalCluster, db: &str) -> String {
    text(
        &cluster.target(db),
        "SELECT count(*) || ':' || md5(convert_to(string_agg(memo, '|' ORDER BY id), 'UTF8')) FROM ledger.entries",
    )
    .await
}

async fn exists(cluster: &LocalCluster, db: &str) -> bool {
    cfdr_pg::admin::database_exists(&cluster.target("postgres"), db)
        .await
        .unwrap()
}

/// What the roles see on connecting: the ACL and their settings at work.
async fn as_roles_see_it(cluster: &LocalCluster, db: &str) {
    let as_role = |user: &str| PgTarget {
        user: user.into(),
        ..cluster.target(db)
    };
    let refused = as_role("ledger_outsider").connect().await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("permission denied for database"),
        "{refused}"
    );
    let reader = as_role("ledger_reader");
    assert_eq!(text(&reader, "SHOW statement_timeout").await, "5s");
    assert_eq!(text(&reader, "SHOW work_mem").await, "7MB");
    assert_eq!(text(&reader, "SHOW search_path").await, "ledger, public");
    assert_eq!(
        text(&reader, "SHOW default_transaction_read_only").await,
        "on"
    );
    assert_eq!(
        text(&reader, "SELECT memo FROM entries WHERE id = 1").await,
        "café Zürich 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_and_swap_keep_owner_privileges_settings_comment_and_locale() {
    let test = "swap_keeps_properties";
    let Some((cluster, _loc, repo)) = setup(test).await else {
        return;
    };
    create_ledger(&cluster).await;
    let want = properties(&cluster, LEDGER).await;
    assert_eq!(want[0], ("owner", "ledger_owner".into()));
    assert_eq!(want[1], ("encoding", "LATIN1".into()));
    as_roles_see_it(&cluster, LEDGER).await;
    let want_rows = memos(&cluster, LEDGER).await;

    let source = cluster.target(LEDGER);
    let opts = LogicalOptions::default();
    let encode = EncodeOptions::default();
    let first = logical::backup(&repo, &source, "manual", &opts, &encode)
        .await
        .unwrap();
    assert_eq!(
        LogicalDetails::of(&first).unwrap().locale,
        Some(DatabaseLocale {
            encoding: "LATIN1".into(),
            provider: "libc".into(),
            collate: "C".into(),
            ctype: "C".into(),
            icu_locale: None,
        })
    );
    // The manifest names them for whoever reads it.
    let stored = serde_json::to_value(&first.details).unwrap();
    assert_eq!(stored["locale"]["encoding"], "LATIN1", "{stored}");

    // A restore (parallel passes, then one pg_restore): a database like the
    // live one in every property, before any swap.
    for jobs in [2, 1] {
        let req = RestoreRequest {
            target_db: Some(format!("ledger_copy_{jobs}")),
            jobs,
            ..Default::default()
        };
        let report = logical::restore(&repo, &source, &first, &opts, &req, |_| {})
            .await
            .unwrap();
        assert_eq!(properties(&cluster, &report.database).await, want);
        assert_eq!(memos(&cluster, &report.database).await, want_rows);
        as_roles_see_it(&cluster, &report.database).await;
        let step = report
            .steps
            .iter()
            .find(|s| s.name.starts_with("database properties"))
            .unwrap();
        assert_eq!(
            step.name,
            "database properties (owner ledger_owner, comment, 5 settings, 3 privilege statements)"
        );
    }

    // A swap: the live database is the restored one, with every property
    // of the one it replaced; the previous one keeps its own.
    run(
        &source,
        "INSERT INTO ledger.entries VALUES (501, 'après le premier')",
    )
    .await;
    let second_rows = memos(&cluster, LEDGER).await;
    let second = logical::backup(&repo, &source, "manual", &opts, &encode)
        .await
        .unwrap();
    let req = RestoreRequest {
        swap: true,
        ..Default::default()
    };
    let report = logical::restore(&repo, &source, &second, &opts, &req, |_| {})
        .await
        .unwrap();
    assert_eq!(report.database, LEDGER);
    let previous = report.previous.unwrap();
    assert_eq!(previous, logical::before_name(LEDGER, &second.id));
    assert_eq!(properties(&cluster, LEDGER).await, want);
    assert_eq!(properties(&cluster, &previous).await, want);
    assert_eq!(memos(&cluster, LEDGER).await, second_rows);
    as_roles_see_it(&cluster, LEDGER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_locales_are_named_and_older_manifests_restore_as_before() {
    let test = "manifest_without_locale";
    let Some((cluster, _loc, repo)) = setup(test).await else {
        return;
    };
    create_ledger(&cluster).await;
    let want = properties(&cluster, LEDGER).await;
    let source = cluster.target(LEDGER);
    let opts = LogicalOptions::default();
    let mut manifest = logical::backup(&repo, &source, "manual", &opts, &Default::default())
        .await
        .unwrap();
    // From a host with a locale this one lacks: refused, naming it,
    // before anything is created.
    let mut foreign = manifest.clone();
    foreign.details["locale"]["collate"] = "xx_XX.UTF-8".into();
    let req = RestoreRequest {
        target_db: Some("ledger_foreign".into()),
        ..Default::default()
    };
    let err = logical::restore(&repo, &source, &foreign, &opts, &req, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locale { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("(LATIN1, libc collate xx_XX.UTF-8 ctype C)") && msg.contains("locale -a"),
        "{msg}"
    );
    assert!(!exists(&cluster, "ledger_foreign").await);

    // As cfdr wrote manifests before it recorded encoding and locale.
    assert!(manifest.details.remove("locale").is_some());
    let old: Manifest = manifest;
    assert_eq!(LogicalDetails::of(&old).unwrap().locale, None);

    let req = RestoreRequest {
        target_db: Some("ledger_old".into()),
        ..Default::default()
    };
    let report = logical::restore(&repo, &source, &old, &opts, &req, |_| {})
        .await
        .unwrap();
    let got = properties(&cluster, &report.database).await;
    // Encoding and locale: the server's, as before; the rows are the same
    // (converted from LATIN1).
    assert_eq!(
        got[1..5],
        [
            ("encoding", "UTF8".into()),
            ("collate", "C.UTF-8".into()),
            ("ctype", "C.UTF-8".into()),
            ("provider", "c".into()),
        ]
    );
    assert_eq!(
        memos(&cluster, "ledger_old").await,
        memos(&cluster, LEDGER).await
    );
    // The rest comes from the dump itself, which always carried it.
    assert_eq!(got[0], want[0]);
    assert_eq!(got[5..], want[5..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_fit_and_a_refused_swap_is_finished_with_swap_only() {
    let test = "long_names_swap_only";
    let Some((cluster, _loc, repo)) = setup(test).await else {
        return;
    };
    // 63 bytes: the longest name the server keeps.
    let live = format!("ledger_{}", "x".repeat(56));
    assert_eq!(live.len(), 63);
    let server = cluster.target("postgres");
    run(&server, &format!("CREATE DATABASE {live}")).await;
    let source = cluster.target(&live);
    run(
        &source,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)",
    )
    .await;
    let opts = LogicalOptions::default();
    let first = logical::backup(&repo, &source, "manual", &opts, &Default::default())
        .await
        .unwrap();

    // An application still connected: the swap is refused after the
    // restore, which stays, verified, under the name the advice gives.
    let app = source.connect().await.unwrap();
    let swap = RestoreRequest {
        swap: true,
        ..Default::default()
    };
    let err = logical::restore(&repo, &source, &first, &opts, &swap, |_| {})
        .await
        .unwrap_err();
    let restored = logical::restore_name(&live, &first.id);
    assert!(restored.len() <= 63, "{restored}");
    assert!(matches!(err, Error::Swap { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "{restored} stays restored and verified: stop the applications (before_restore hook) and swap it in without restoring again with `cfdr-restore logical {} --swap-only`",
            first.id
        )),
        "{msg}"
    );
    assert!(
        exists(&cluster, &restored).await,
        "{restored} must exist by that exact name"
    );

    // Still connected: refused again, nothing renamed.
    let again = logical::swap_restored(&source, &first, &opts, None, |_| {})
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("1 sessions are connected"),
        "{again}"
    );
    assert!(exists(&cluster, &live).await && exists(&cluster, &restored).await);

    app.close().await.unwrap();
    // The server ends a closed session's backend a moment later.
    cfdr_testing::eventually(
        "the application's session ends",
        cfdr_testing::PATIENCE,
        || async {
            match cfdr_pg::admin::sessions_on(&server, &live).await {
                Ok(0) => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
    let report = logical::swap_restored(&source, &first, &opts, None, |_| {})
        .await
        .unwrap();
    assert_eq!(report.database, live);
    let previous = report.previous.unwrap();
    assert_eq!(previous, logical::before_name(&live, &first.id));
    assert!(previous.len() <= 63);
    assert!(exists(&cluster, &previous).await && !exists(&cluster, &restored).await);
    assert_eq!(text(&source, "SELECT count(*)::text FROM t").await, "100");

    // Nothing left to swap in under that name now.
    let gone = logical::swap_restored(&source, &first, &opts, None, |_| {})
        .await
        .unwrap_err();
    assert!(
        gone.to_string()
            .contains(&format!("there is no database {restored}")),
        "{gone}"
    );

    // Swapping to the same backup again would need the name the previous
    // database has: refused before restoring anything.
    let err = logical::restore(&repo, &source, &first, &opts, &swap, |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "{previous} (where the live database would be kept) exists already"
        )),
        "{err}"
    );
    assert!(!exists(&cluster, &restored).await, "nothing was restored");

    // A second backup, restore and swap with the same long name: its names
    // differ from the first's where it matters, so nothing collides.
    run(&source, "INSERT INTO t VALUES (101)").await;
    let second = logical::backup(&repo, &source, "manual", &opts, &Default::default())
        .await
        .unwrap();
    let report = logical::restore(&repo, &source, &second, &opts, &swap, |_| {})
        .await
        .unwrap();
    let previous2 = report.previous.unwrap();
    assert_ne!(previous2, previous);
    assert!(exists(&cluster, &previous).await && exists(&cluster, &previous2).await);
    assert_eq!(text(&source, "SELECT count(*)::text FROM t").await, "101");

    // A name the server would cut is refused before anything is created.
    let long = RestoreRequest {
        target_db: Some("y".repeat(64)),
        ..Default::default()
    };
    let err = logical::restore(&repo, &source, &second, &opts, &long, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NameTooLong { bytes: 64, .. }), "{err}");
    assert!(!exists(&cluster, &"y".repeat(63)).await);
}
