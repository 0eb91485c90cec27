//! The header and table of contents of a custom-format archive, walked and
//! bounded here before `pgarchive` parses them.
//!
//! `pgarchive` allocates what a length or count says before reading the
//! bytes (`vec![0; length]`, `Vec::with_capacity(count)`): one damaged
//! entry count or string length asks for tens of gigabytes and aborts the
//! process. This walk follows pg_dump's layout (`ReadHead` and `ReadToc` in
//! pg_backup_archiver.c) and reads every string through a `take`, so memory
//! grows only with bytes that are really there; it refuses what pg_dump
//! cannot have written (an integer beyond 32 bits, a string longer than
//! PostgreSQL's largest value, a negative count). `pgarchive` then parses
//! the checked bytes alone, where every count and length is backed by data.

use std::io::{self, Read};

/// pg_dump writes C `int`s: a magnitude beyond 32 bits is damage (and would
/// overflow `pgarchive`'s arithmetic).
const MAX_INT: u64 = i32::MAX as u64;
/// No string in a table of contents can exceed PostgreSQL's largest value
/// (`MaxAllocSize`, 1 GiB - 1): each is text the server handed out.
const MAX_STRING: u64 = 0x3FFF_FFFF;

/// Archive versions this walk and `pgarchive` read (1.10 to 1.16).
const OLDEST: (u8, u8, u8) = (1, 10, 0);
const NEWEST: (u8, u8, u8) = (1, 16, 0);

/// A parsed header and table of contents.
pub(crate) struct Head {
    pub(crate) archive: pgarchive::Archive,
    /// pg_dump's integer size, which the data blocks use too.
    pub(crate) int_size: usize,
}

/// Why the table of contents could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TocError {
    /// Not an archive (version, format) this reader takes; nothing is damaged.
    #[error("not a readable custom-format dump: {0}")]
    Unsupported(String),
    /// A number or length that pg_dump cannot have written, or bytes cut short.
    #[error("{0}")]
    Damaged(String),
    /// The stream failed.
    #[error("reading the dump: {0}")]
    Io(#[from] io::Error),
}

/// Reads the header and table of contents from `src`, leaving it at the
/// first data block.
pub(crate) fn read_head(src: &mut impl Read) -> Result<Head, TocError> {
    let mut walk = Walk {
        src,
        seen: Vec::with_capacity(1 << 16),
        int_size: 0,
        offset_size: 0,
    };
    let version = walk.header()?;
    walk.toc(version)?;
    let archive = pgarchive::Archive::parse(&mut &walk.seen[..])
        .map_err(|e| TocError::Unsupported(e.to_string()))?;
    Ok(Head {
        archive,
        int_size: walk.int_size,
    })
}

/// The walk: every byte read is kept in `seen` for `pgarchive`.
struct Walk<'a, R> {
    src: &'a mut R,
    seen: Vec<u8>,
    int_size: usize,
    offset_size: usize,
}

impl<R: Read> Walk<'_, R> {
    /// Reads `n` more bytes of `what`; fewer is damage (the archive ends).
    fn bytes(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&[u8], TocError> {
        let start = self.seen.len();
        let got = (&mut *self.src).take(n).read_to_end(&mut self.seen)?;
        if (got as u64) < n {
            return Err(TocError::Damaged(format!(
                "the archive ends inside {} (byte {}; {n} bytes needed, {got} left)",
                what(),
                start
            )));
        }
        Ok(&self.seen[start..])
    }

    fn byte(&mut self, what: &str) -> Result<u8, TocError> {
        Ok(self.bytes(1, &|| what.to_owned())?[0])
    }

    /// pg_dump's integer: a sign byte, then `int_size` bytes little-endian.
    fn int(&mut self, what: &dyn Fn() -> String) -> Result<i64, TocError> {
        let at = self.seen.len();
        let size = self.int_size as u64 + 1;
        let b = self.bytes(size, what)?;
        let magnitude = b[1..]
            .iter()
            .rev()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        let negative = b[0] != 0;
        if magnitude > MAX_INT {
            return Err(TocError::Damaged(format!(
                "{} at byte {at} is {}{magnitude}, beyond the 32-bit integers pg_dump writes",
                what(),
                if negative { "-" } else { "" }
            )));
        }
        let value = magnitude as i64;
        Ok(if negative { -value } else { value })
    }

    /// A length-prefixed string (-1: none); true when it is empty.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<bool, TocError> {
        let at = self.seen.len();
        let len = self.int(&|| format!("the length of {}", what()))?;
        if len == -1 || len == 0 {
            return Ok(true);
        }
        if len < 0 {
            return Err(TocError::Damaged(format!(
                "{} at byte {at} has the length {len}",
                what()
            )));
        }
        let len = len as u64;
        if len > MAX_STRING {
            return Err(TocError::Damaged(format!(
                "{} at byte {at} claims {len} bytes, more than PostgreSQL can store in one value",
                what()
            )));
        }
        self.bytes(len, what)?;
        Ok(false)
    }

    /// The header up to the table of contents; returns the version.
    fn header(&mut self) -> Result<(u8, u8, u8), TocError> {
        let what = || "the archive header".to_owned();
        if self.bytes(5, &what)? != b"PGDMP" {
            return Err(TocError::Unsupported("it does not start with PGDMP".into()));
        }
        let v = self.bytes(3, &what)?;
        let version = (v[0], v[1], v[2]);
        if !(OLDEST..=NEWEST).contains(&version) {
            return Err(TocError::Unsupported(format!(
                "archive version {}.{}.{} (this reader takes 1.10 to 1.16)",
                version.0, version.1, version.2
            )));
        }
        let int_size = self.byte("the archive header")?;
        let offset_size = self.byte("the archive header")?;
        let format = self.byte("the archive header")?;
        if !(1..=8).contains(&int_size) || !(1..=8).contains(&offset_size) {
            return Err(TocError::Damaged(format!(
                "integer size {int_size} and offset size {offset_size} (pg_dump writes 1 to 8 bytes)"
            )));
        }
        if format != 1 {
            return Err(TocError::Unsupported(format!(
                "archive format {format} is not the custom format"
            )));
        }
        self.int_size = usize::from(int_size);
        if version >= (1, 15, 0) {
            self.byte("the compression method")?;
        } else {
            self.int(&|| "the compression level".to_owned())?;
        }
        for field in ["sec", "min", "hour", "mday", "mon", "year", "isdst"] {
            self.int(&|| format!("the creation time ({field})"))?;
        }
        for field in ["database name", "server version", "pg_dump version"] {
            self.string(&|| format!("the {field}"))?;
        }
        self.offset_size = usize::from(offset_size);
        Ok(version)
    }

    /// The table of contents: a count, then that many entries.
    fn toc(&mut self, version: (u8, u8, u8)) -> Result<(), TocError> {
        let at = self.seen.len();
        let count = self.int(&|| "the entry count".to_owned())?;
        if count < 0 {
            return Err(TocError::Damaged(format!(
                "the entry count at byte {at} is {count}"
            )));
        }
        for n in 1..=count {
            self.entry(version, n, count).map_err(|e| match e {
                TocError::Damaged(why) => TocError::Damaged(format!(
                    "{why} (reading entry {n} of {count}: a damaged entry count or entry)"
                )),
                other => other,
            })?;
        }
        Ok(())
    }

    /// One entry, field by field as `ReadToc` reads it.
    fn entry(&mut self, version: (u8, u8, u8), n: i64, count: i64) -> Result<(), TocError> {
        let field = |name: &'static str| move || format!("the {name} of entry {n}");
        let at = self.seen.len();
        let id = self.int(&field("dump id"))?;
        if id < 0 {
            return Err(TocError::Damaged(format!(
                "entry {n} of {count} at byte {at} has the dump id {id}"
            )));
        }
        self.int(&field("data flag"))?;
        for name in ["table oid", "oid", "tag", "description"] {
            self.string(&field(name))?;
        }
        if version >= (1, 11, 0) {
            self.int(&field("section"))?;
        }
        for name in [
            "definition",
            "drop statement",
            "copy statement",
            "namespace",
            "tablespace",
        ] {
            self.string(&field(name))?;
        }
        if version >= (1, 14, 0) {
            self.string(&field("table access method"))?;
        }
        if version >= (1, 16, 0) {
            self.int(&field("relation kind"))?;
        }
        self.string(&field("owner"))?;
        self.string(&field("with-oids flag"))?;
        // Dependencies: dump ids as strings, up to an empty one.
        while !self.string(&field("dependency list"))? {}
        let offset_size = self.offset_size as u64 + 1;
        self.bytes(offset_size, &field("data offset"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = int(s.len() as i64);
        out.extend_from_slice(s.as_bytes());
        out
    }

    /// A version 1.14 header (4-byte integers) up to the pg_dump version.
    fn header() -> Vec<u8> {
        let mut out = b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec();
        out.extend(int(0));
        for v in [0, 30, 20, 1, 11, 126, 0] {
            out.extend(int(v));
        }
        out
    }

    fn damage(input: &[u8]) -> String {
        match read_head(&mut &input[..]) {
            Err(e @ TocError::Damaged(_)) => e.to_string(),
            Err(other) => panic!("not damage: {other}"),
            Ok(_) => panic!("read a damaged archive"),
        }
    }

    #[test]
    fn a_string_longer_than_any_value_is_damage_before_any_allocation() {
        let mut input = header();
        input.extend(int(0x4000_0000));
        let err = damage(&input);
        assert!(
            err.contains("the database name at byte") && err.contains("claims 1073741824 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_string_past_the_end_is_damage() {
        let mut input = header();
        input.extend(int(1 << 20));
        input.extend_from_slice(b"cryptofunk");
        let err = damage(&input);
        assert!(
            err.contains("the archive ends inside the database name"),
            "{err}"
        );
    }

    #[test]
    fn counts_beyond_the_entries_or_below_zero_are_damage() {
        let mut input = header();
        for s in ["cryptofunk", "15.18", "15.18"] {
            input.extend(string(s));
        }
        let mut negative = input.clone();
        negative.extend(int(-5));
        assert!(damage(&negative).contains("the entry count at byte"));
        let mut huge = input.clone();
        huge.extend(int(2_000_000_000));
        let err = damage(&huge);
        assert!(
            err.contains("reading entry 1 of 2000000000: a damaged entry count or entry"),
            "{err}"
        );
        // An integer beyond 32 bits (8-byte integers).
        let mut wide = input;
        wide[8] = 8;
        let err = damage(&wide);
        assert!(err.contains("beyond the 32-bit integers"), "{err}");
    }
}
