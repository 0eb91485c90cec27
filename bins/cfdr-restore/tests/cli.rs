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
