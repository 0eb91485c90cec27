//! Streams stdin through the cfdr codec into a repository object and prints
//! one JSON line: bytes in, bytes stored, seconds, peak RSS. With
//! `--generate BYTES` it instead writes deterministic dump-like sample data
//! to stdout (the benchmark input).
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use cfdr_storage::{Compression, EncodeOptions, StorageOptions, encode_to};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Write BYTES of sample data to stdout and exit.
    #[arg(long)]
    generate: Option<u64>,
    /// Repository URL (s3:// URLs take the CFDR_TEST_S3_* credentials).
    #[arg(long, default_value = "memory://bench")]
    url: String,
    /// none, gzip or zstd.
    #[arg(long, default_value = "zstd")]
    compression: String,
    /// Also encrypt to a fresh age recipient.
    #[arg(long)]
    age: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(total) = args.generate {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let block = cfdr_storage::sample_data(8 << 20, 7);
        let mut left = total;
        let mut seed = 0u8;
        while left > 0 {
            // Vary each block a little so zstd cannot match whole blocks.
            let mut b = block.clone();
            b[0] = seed;
            seed = seed.wrapping_add(1);
            let n = left.min(b.len() as u64) as usize;
            out.write_all(&b[..n])?;
            left -= n as u64;
        }
        return Ok(());
    }
    let mut opts = StorageOptions::from_url(args.url.clone());
    if args.url.starts_with("s3://") {
        let var = |k: &str| std::env::var(k).ok();
        opts.s3.endpoint = var("CFDR_TEST_S3_ENDPOINT");
        opts.s3.access_key_id = var("CFDR_TEST_S3_ACCESS_KEY_ID");
        opts.s3.secret_access_key = var("CFDR_TEST_S3_SECRET_ACCESS_KEY");
        opts.s3.explicit_credentials_only = true;
    }
    let store = opts.build()?;
    let mut enc = EncodeOptions::new(args.compression.parse::<Compression>()?);
    if args.age {
        let (_, public) = cfdr_secrets::generate_identity();
        enc.recipients = Some(cfdr_secrets::Recipients::parse([public.as_str()])?);
    }
    let started = Instant::now();
    let obj = encode_to(&store, "bench/object", tokio::io::stdin(), &enc, false).await?;
    let secs = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "raw_bytes": obj.raw_size, "stored_bytes": obj.stored.size, "secs": secs,
        "peak_rss_kib": cfdr_benches::peak_rss_kib(),
    });
    println!("{line}");
    Ok(())
}
