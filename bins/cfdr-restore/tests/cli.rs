//! cfdr-restore against a real PostgreSQL cluster: steps, RTO line, swap.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_latest_into_a_new_database_and_reports_steps() {
    let Some(setup) = cfdr_testing::pg::backed_up("hourly", "cfdr-restore cli").await else {
        return;
    };
    let (cluster, url, m) = (&setup.cluster, setup.url.as_str(), &setup.manifest);

    let out = Command::new(env!("CARGO_BIN_EXE_cfdr-restore"))
        .args([
            "-r",
            url,
            "logical",
            "--latest",
            "--target-db",
            "cf_restored",
        ])
        .env("DATABASE_URL", cluster.url("cryptofunk"))
        .env_remove("CFDR_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("restoring {}", m.id)), "{text}");
    assert!(text.contains("verify tables and row counts"), "{text}");
    assert!(
        text.contains("restored into cf_restored")
            && text.contains("within the database RTO of 600s"),
        "{text}"
    );
    assert!(
        cfdr_pg::admin::database_exists(&cluster.target("postgres"), "cf_restored")
            .await
            .unwrap()
    );

    let again = Command::new(env!("CARGO_BIN_EXE_cfdr-restore"))
        .args(["-r", url, "logical", "--target-db", "cf_restored"])
        .env("DATABASE_URL", cluster.url("cryptofunk"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn pitr_explains_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("file://{}/repo", dir.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = cfdr_storage::StorageOptions::from_url(repo.clone())
            .build()
            .unwrap();
        cfdr_storage::Repository::init(store).await.unwrap();
    });
    let pitr = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cfdr-restore"))
            .args(["-r", &repo, "pitr"])
            .args(args)
            .env_remove("CFDR_CONFIG")
            .output()
            .unwrap()
    };
    let data_dir = dir.path().join("pgdata");
    let data_dir = data_dir.to_str().unwrap();

    let out = pitr(&["--latest", "--data-dir", data_dir]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no physical base backup"), "{err}");

    let out = pitr(&["--to-time", "2999-01-01T00:00:00Z", "--data-dir", data_dir]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("in the future"));

    // Exactly one target is required.
    let out = pitr(&["--data-dir", data_dir]);
    assert_eq!(out.status.code(), Some(2));
    let out = pitr(&["--latest", "--to-lsn", "0/3000000", "--data-dir", data_dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_swap_gives_a_swap_only_command_that_finishes_it() {
    let Some(setup) = cfdr_testing::pg::backed_up("manual", "cfdr-restore swap-only").await else {
        return;
    };
    let (cluster, url, m) = (&setup.cluster, setup.url.as_str(), &setup.manifest);
    let restore = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cfdr-restore"))
            .args(["-r", url])
            .args(args)
            .env("DATABASE_URL", cluster.url("cryptofunk"))
            .env_remove("CFDR_CONFIG")
            .output()
            .unwrap()
    };

    // An application is still connected to the live database.
    let app = cluster.target("cryptofunk").connect().await.unwrap();
    let out = restore(&["logical", "--swap"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let restored = cfdr_pg::logical::restore_name("cryptofunk", &m.id);
    assert!(
        err.contains(&format!("{restored} stays restored and verified")),
        "{err}"
    );
    // The advice, as printed between backquotes.
    let advice = err
        .split('`')
        .find(|s| s.starts_with("cfdr-restore logical "))
        .unwrap_or_else(|| panic!("no command in {err}"))
        .to_owned();
    assert_eq!(advice, format!("cfdr-restore logical {} --swap-only", m.id));
    drop(app);
    let server = cluster.target("postgres");
    cfdr_testing::eventually(
        "the application's session ends",
        cfdr_testing::PATIENCE,
        || async {
            match cfdr_pg::admin::sessions_on(&server, "cryptofunk").await {
                Ok(0) => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        },
    )
    .await;

    let args: Vec<&str> = advice.split(' ').skip(1).collect();
    let out = restore(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let previous = cfdr_pg::logical::before_name("cryptofunk", &m.id);
    assert!(
        text.contains(&format!(
            "cryptofunk is live (restored from {}); previous database kept as {previous}",
            m.id
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("verify tables and row counts of {restored}")),
        "{text}"
    );
    assert!(
        cfdr_pg::admin::database_exists(&server, &previous)
            .await
            .unwrap()
    );
    assert!(
        !cfdr_pg::admin::database_exists(&server, &restored)
            .await
            .unwrap()
    );

    // --swap-only needs the backup it swaps in, and is no restore.
    let out = restore(&["logical", "--swap-only"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<ID>"));
    let out = restore(&["logical", m.id.as_str(), "--swap-only", "--swap"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
