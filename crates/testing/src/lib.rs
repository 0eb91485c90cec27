//! Test support for cfdr: repository locations on every backend (memory, a
//! temp folder, and the S3, Azure Blob and GCS emulators that
//! `scripts/test` starts), and a fault-injection layer.
//!
//! Under `scripts/test` (`CFDR_TEST_REQUIRE_SERVICES=1`) a missing emulator
//! endpoint fails the test with the fix; a plain `cargo test` skips those
//! tests and prints that it did.
//!
//! ```
//! use cfdr_testing::{Backend, TestLocation};
//!
//! if let Some(loc) = TestLocation::new(Backend::Memory, "doc") {
//!     let store = loc.options.build().unwrap();
//!     assert_eq!(store.location().kind, cfdr_storage::BackendKind::Memory);
//! }
//! ```

pub mod bins;
pub mod crash;
mod fault;
pub mod history;
pub mod pg;

pub use fault::{FaultLayer, FaultMode, FaultOp};

use std::future::Future;
use std::time::{Duration, Instant};

use cfdr_storage::StorageOptions;

/// The backends the conformance suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// In-process memory.
    Memory,
    /// A temp folder.
    Fs,
    /// The S3 server (s3s-fs) started by `scripts/test`.
    S3,
    /// The second S3 server (moto) started by `scripts/test`.
    S3Moto,
    /// Azurite started by `scripts/test`.
    Azblob,
    /// fake-gcs-server started by `scripts/test`.
    Gcs,
}

impl Backend {
    /// Whether the backend decides create-only writes atomically here.
    /// fake-gcs-server ignores `ifGenerationMatch=0`; s3s-fs checks
    /// `If-None-Match` before writing, so two racing creates can both pass
    /// (sequential creates are refused correctly). moto, Azurite, memory and
    /// fs (hard link) are atomic.
    pub fn has_atomic_create(self) -> bool {
        !matches!(self, Backend::Gcs | Backend::S3)
    }
}

/// A unique repository location for one test. Keeps its temp folder alive.
#[derive(Debug)]
pub struct TestLocation {
    /// Options that build a store at a fresh, unique prefix.
    pub options: StorageOptions,
    /// The backend.
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether `scripts/test` asked for every service to be present.
pub fn services_required() -> bool {
    var("CFDR_TEST_REQUIRE_SERVICES").as_deref() == Some("1")
}

/// Reports a missing prerequisite: a failure under `scripts/test`, a printed
/// skip notice otherwise. Returns `None` for `?`-style early return.
#[allow(clippy::print_stderr)]
pub fn missing<T>(what: &str, test: &str) -> Option<T> {
    let hint = "run the suite with scripts/test, which installs and starts it";
    assert!(
        !services_required(),
        "{what} is not available for {test}: {hint}"
    );
    eprintln!("SKIPPED {test}: {what} is not available ({hint})");
    None
}

fn unique(test: &str) -> String {
    format!("{test}-{:016x}", rand::random::<u64>())
}

impl TestLocation {
    /// A fresh location on `backend`, or `None` (after printing a skip
    /// notice) when its emulator is not running outside `scripts/test`.
    pub fn new(backend: Backend, test: &str) -> Option<Self> {
        let prefix = unique(test);
        let (options, dir) = match backend {
            Backend::Memory => (StorageOptions::from_url(format!("memory://{prefix}")), None),
            Backend::Fs => {
                let dir = tempfile::tempdir().ok()?;
                let url = format!("file://{}", dir.path().join("repo").display());
                (StorageOptions::from_url(url), Some(dir))
            }
            Backend::S3 => (
                Self::s3(&prefix).or_else(|| missing("the S3 emulator", test))?,
                None,
            ),
            Backend::S3Moto => (
                Self::moto(&prefix).or_else(|| missing("the moto S3 server", test))?,
                None,
            ),
            Backend::Azblob => (
                Self::azblob(&prefix).or_else(|| missing("Azurite", test))?,
                None,
            ),
            Backend::Gcs => (
                Self::gcs(&prefix).or_else(|| missing("the GCS emulator", test))?,
                None,
            ),
        };
        Some(Self {
            options,
            backend,
            _dir: dir,
        })
    }

    fn s3(prefix: &str) -> Option<StorageOptions> {
        let endpoint = var("CFDR_TEST_S3_ENDPOINT")?;
        let bucket = var("CFDR_TEST_S3_BUCKET")?;
        let mut o = StorageOptions::from_url(format!("s3://{bucket}/{prefix}"));
        o.s3.endpoint = Some(endpoint);
        o.s3.region = var("CFDR_TEST_S3_REGION");
        o.s3.access_key_id = var("CFDR_TEST_S3_ACCESS_KEY_ID");
        o.s3.secret_access_key = var("CFDR_TEST_S3_SECRET_ACCESS_KEY");
        o.s3.explicit_credentials_only = true;
        Some(o)
    }

    fn moto(prefix: &str) -> Option<StorageOptions> {
        let endpoint = var("CFDR_TEST_MOTO_ENDPOINT")?;
        let mut o = StorageOptions::from_url(format!("s3://cfdr-test/{prefix}"));
        o.s3.endpoint = Some(endpoint);
        o.s3.region = Some("us-east-1".into());
        // moto accepts any credentials.
        o.s3.access_key_id = Some("test".into());
        o.s3.secret_access_key = Some("test".into());
        o.s3.explicit_credentials_only = true;
        Some(o)
    }

    /// A fresh location in a new bucket of its own on moto, created with
    /// S3 Object Lock enabled (which also turns versioning on) when
    /// `object_lock`; `None` (after a skip notice) without moto.
    pub fn moto_bucket(test: &str, object_lock: bool) -> Option<Self> {
        let mut loc = Self::new(Backend::S3Moto, test)?;
        let endpoint = loc.options.s3.endpoint.clone()?;
        let bucket = format!("cfdr-{:016x}", rand::random::<u64>());
        let status = create_moto_bucket(&endpoint, &bucket, object_lock)
            .unwrap_or_else(|e| panic!("creating bucket {bucket} on moto at {endpoint}: {e}"));
        assert!(
            status.contains(" 200"),
            "creating bucket {bucket}: {status}"
        );
        loc.options.url = Some(format!("s3://{bucket}/{}", unique(test)));
        Some(loc)
    }

    fn azblob(prefix: &str) -> Option<StorageOptions> {
        let endpoint = var("CFDR_TEST_AZBLOB_ENDPOINT")?;
        let container = var("CFDR_TEST_AZBLOB_CONTAINER")?;
        let mut o = StorageOptions::from_url(format!("azblob://{container}/{prefix}"));
        o.azblob.endpoint = Some(endpoint);
        o.azblob.account_name = var("CFDR_TEST_AZBLOB_ACCOUNT_NAME");
        o.azblob.account_key = var("CFDR_TEST_AZBLOB_ACCOUNT_KEY");
        o.azblob.explicit_credentials_only = true;
        Some(o)
    }

    fn gcs(prefix: &str) -> Option<StorageOptions> {
        let endpoint = var("CFDR_TEST_GCS_ENDPOINT")?;
        let bucket = var("CFDR_TEST_GCS_BUCKET")?;
        // fake-gcs-server lacks XML multipart uploads, create-only writes and
        // batch delete: switch them off (see CompatOptions).
        let mut o = StorageOptions::from_url(format!(
            "gs://{bucket}/{prefix}?multipart=false&conditional-create=false&batch-delete=false"
        ));
        o.gcs.endpoint = Some(endpoint);
        o.gcs.anonymous = true;
        Some(o)
    }
}

/// Sends moto's unsigned CreateBucket (moto accepts it) and returns the
/// status line.
fn create_moto_bucket(endpoint: &str, bucket: &str, object_lock: bool) -> std::io::Result<String> {
    use std::io::{BufRead, Write};
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, h)| h)
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host)?;
    let lock = if object_lock {
        "x-amz-bucket-object-lock-enabled: true\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\n{lock}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut status = String::new();
    std::io::BufReader::new(stream).read_line(&mut status)?;
    Ok(status.trim().to_owned())
}

/// How long a test waits for a condition before it fails. Generous: the
/// suite runs on loaded 2-core machines, and only a failing test waits it
/// out.
pub const PATIENCE: Duration = Duration::from_secs(180);

/// Polls `probe` every 100 ms until it returns `Ok`, and returns its value.
/// When `limit` passes first, panics with `what` and what the probe saw last
/// (its `Err`), so a failure says where things stood.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut tries = 0;
/// let n = cfdr_testing::eventually("the third try", cfdr_testing::PATIENCE, || {
///     tries += 1;
///     let seen = tries;
///     async move { if seen >= 3 { Ok(seen) } else { Err(format!("try {seen}")) } }
/// })
/// .await;
/// assert_eq!(n, 3);
/// # });
/// ```
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {limit:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether the long forms of slow tests run (`CFDR_TEST_LONG=1`): scale
/// tests at full size, many more kill trials. `.ci/run` leaves it unset.
pub fn long_tests() -> bool {
    var("CFDR_TEST_LONG").as_deref() == Some("1")
}

/// The subcommands a clap binary lists under `Commands:` in its `--help`
/// (without `help`), for tests that hold the README to the binary.
pub fn subcommands(bin: &str) -> Vec<String> {
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split("Commands:\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// A local TCP port with nothing listening on it (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9)
}

/// Path of a command-line tool, or `None` after a failure/skip notice with
/// the Debian package that provides it.
pub fn tool(name: &str, package: &str, test: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .or_else(|| missing(&format!("`{name}` (apt-get install {package})"), test))
}

/// A finished command's stdout then stderr, for assertions and their
/// messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The binary `name` built beside `own` (a test's `CARGO_BIN_EXE_*`): a
/// workspace build puts every binary in one folder.
pub fn sibling_bin(own: &str, name: &str) -> std::path::PathBuf {
    let exe = std::path::Path::new(own).with_file_name(name);
    assert!(
        exe.is_file(),
        "{} is missing: build the workspace (cargo build --workspace --bins)",
        exe.display()
    );
    exe
}

/// Runs `cmd` with `input` on stdin and returns its stdout; panics with the
/// program's stderr when it fails. stdin is written from a thread, so a
/// large output cannot block the writer.
pub fn pipe(cmd: &mut std::process::Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("the program runs");
    let fed = writer.join().expect("the stdin writer finishes");
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fed.expect("stdin accepts the input");
    out.stdout
}
