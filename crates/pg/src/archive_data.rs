//! Reads the table data of a custom-format dump as it streams by, so a
//! parallel restore deals COPY rows to its sessions without `pg_restore`
//! in between (that pipe hop is a second and a half of CPU per gigabyte on
//! a small machine, taken from the server's COPY).
//!
//! The header and table of contents are bounded by [`crate::archive_toc`]
//! and parsed by `pgarchive`; the data
//! blocks after them are framed as `pg_dump` writes them: a block type
//! byte, the entry's dump id, then length-prefixed chunks up to a zero
//! length (large-object blocks: an oid before each object's chunks, 0 at
//! the end). Only uncompressed archives are read here; cfdr dumps with
//! `-Z0` and compresses the stream itself. Anything else is
//! [`ReadError::Unsupported`] before the first row, and the restore uses
//! `pg_restore`'s script instead.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Read};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::archive_toc::{Head, TocError, read_head};

/// Rows go out in slices of about this size, cut at row ends.
pub(crate) const SLICE: usize = 1 << 20;

/// What the reader found, in stream order.
#[derive(Debug)]
pub(crate) enum Event {
    /// The table of contents was read: the `COPY` statements of the tables
    /// streamed here, and the ids of every other entry (for `pg_restore -L`).
    Toc {
        tables: Vec<Arc<str>>,
        others: Vec<i64>,
    },
    /// Whole rows of the table being read (`statement` without `;`).
    Rows { statement: Arc<str>, rows: Bytes },
    /// The table's rows are complete.
    End { statement: Arc<str> },
}

/// Why the archive could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// Not readable here (format version, compression): nothing was sent
    /// after the table of contents, so `pg_restore` can take over.
    #[error("{0}")]
    Unsupported(String),
    /// The stream is not a well-formed archive.
    #[error("the dump is damaged: {0}")]
    Broken(String),
    /// The stream stopped (its cause is the decoder's error).
    #[error("reading the dump: {0}")]
    Io(#[from] io::Error),
    /// The restore stopped taking rows.
    #[error("the restore stopped")]
    Stopped,
}

const BLOCK_DATA: u8 = 1;
const BLOCK_LARGE_OBJECTS: u8 = 3;

/// Reads the archive in `src` to its end, sending [`Event`]s.
pub(crate) fn read(mut src: impl BufRead, events: mpsc::Sender<Event>) -> Result<(), ReadError> {
    let Head { archive, int_size } = read_head(&mut src).map_err(|e| match e {
        TocError::Unsupported(_) => ReadError::Unsupported(e.to_string()),
        TocError::Damaged(why) => ReadError::Broken(format!("its table of contents: {why}")),
        TocError::Io(e) => ReadError::Io(e),
    })?;
    if archive.compression_method != pgarchive::CompressionMethod::None {
        return Err(ReadError::Unsupported(format!(
            "the dump's data is compressed ({})",
            archive.compression_method
        )));
    }
    let mut tables = HashMap::new();
    let mut others = Vec::new();
    for entry in &archive.toc_entries {
        match copy_statement(entry) {
            Some(statement) => {
                tables.insert(entry.id, statement);
            }
            None => others.push(entry.id),
        }
    }
    let send = |event| events.blocking_send(event).map_err(|_| ReadError::Stopped);
    send(Event::Toc {
        tables: tables.values().cloned().collect(),
        others,
    })?;

    read_blocks(&mut Framing { src, int_size }, &tables, &send)
}

/// Reads a custom-format `pg_dump` archive (uncompressed data, as cfdr
/// dumps) to its end the way the streamed restore does, and returns the
/// bytes of table rows it found. Errors are the reader's message. Public so
/// that hostile archives can be fed to the reader directly (fuzzing);
/// restores use it internally.
pub fn read_dump_archive(src: impl BufRead) -> Result<u64, String> {
    let (tx, mut rx) = mpsc::channel(16);
    std::thread::scope(|scope| {
        let drain = scope.spawn(move || {
            let mut bytes = 0u64;
            while let Some(event) = rx.blocking_recv() {
                if let Event::Rows { rows, .. } = event {
                    bytes += rows.len() as u64;
                }
            }
            bytes
        });
        let read = read(src, tx);
        let bytes = drain.join().unwrap_or_default();
        read.map(|()| bytes).map_err(|e| e.to_string())
    })
}

/// The data blocks after the table of contents, to the end of the stream.
fn read_blocks<R: BufRead>(
    framing: &mut Framing<R>,
    tables: &HashMap<i64, Arc<str>>,
    send: &impl Fn(Event) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut rows = BytesMut::with_capacity(2 * SLICE);
    let mut missing: HashSet<i64> = tables.keys().copied().collect();
    while let Some(block) = framing.block_type()? {
        let id = framing.int()?;
        match (block, tables.get(&id)) {
            (BLOCK_DATA, Some(statement)) => {
                missing.remove(&id);
                while framing.chunk_into(&mut rows)? {
                    if rows.len() >= SLICE
                        && let Some(end) = memchr::memrchr(b'\n', &rows)
                    {
                        let slice = rows.split_to(end + 1).freeze();
                        send(Event::Rows {
                            statement: statement.clone(),
                            rows: slice,
                        })?;
                    }
                }
                strip_end_marker(&mut rows);
                if rows.last().is_some_and(|b| *b != b'\n') {
                    return Err(ReadError::Broken(format!(
                        "the rows of `{statement}` end inside a row"
                    )));
                }
                if !rows.is_empty() {
                    send(Event::Rows {
                        statement: statement.clone(),
                        rows: rows.split().freeze(),
                    })?;
                }
                send(Event::End {
                    statement: statement.clone(),
                })?;
            }
            (BLOCK_DATA, None) => framing.skip_chunks()?,
            (BLOCK_LARGE_OBJECTS, _) => {
                while framing.int()? != 0 {
                    framing.skip_chunks()?;
                }
            }
            (other, _) => {
                return Err(ReadError::Broken(format!(
                    "unknown data block type {other} for entry {id}"
                )));
            }
        }
    }
    // pg_restore stops the same way ("could not find block ID").
    match missing.iter().min().and_then(|id| tables.get(id)) {
        Some(statement) => Err(ReadError::Broken(format!(
            "the archive lists `{statement}` but holds no rows for it"
        ))),
        None => Ok(()),
    }
}

/// The `COPY ... FROM stdin` of a table-data entry, without its `;`.
fn copy_statement(entry: &pgarchive::TocEntry) -> Option<Arc<str>> {
    if entry.desc != "TABLE DATA" || !entry.had_dumper {
        return None;
    }
    crate::post_data::copy_from_stdin(&entry.copy_stmt).map(Arc::from)
}

/// pg_dump ends each table's rows with a `\.` line (and blank lines);
/// COPY over the protocol takes the rows alone. A row cannot be `\.`
/// (a backslash in a value is written `\\`).
fn strip_end_marker(rows: &mut BytesMut) {
    let mut end = rows.len();
    while end > 0 && rows[end - 1] == b'\n' {
        end -= 1;
    }
    let line_start =
        end >= 2 && &rows[end - 2..end] == b"\\." && (end == 2 || rows[end - 3] == b'\n');
    if line_start {
        rows.truncate(end - 2);
    }
}

fn cut_inside_a_block() -> ReadError {
    ReadError::Broken("the stream ends inside a block".into())
}

struct Framing<R> {
    src: R,
    int_size: usize,
}

impl<R: BufRead> Framing<R> {
    /// The next block's type; None at the end of the stream.
    fn block_type(&mut self) -> Result<Option<u8>, ReadError> {
        let buf = self.src.fill_buf()?;
        let Some(&t) = buf.first() else {
            return Ok(None);
        };
        self.src.consume(1);
        Ok(Some(t))
    }

    /// pg_dump's integer: a sign byte, then `int_size` bytes little-endian.
    fn int(&mut self) -> Result<i64, ReadError> {
        let mut b = [0u8; 9];
        let b = &mut b[..=self.int_size];
        self.src.read_exact(b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => cut_inside_a_block(),
            _ => e.into(),
        })?;
        let magnitude = b[1..]
            .iter()
            .rev()
            .fold(0i64, |acc, byte| (acc << 8) | i64::from(*byte));
        // An 8-byte magnitude can be i64::MIN, whose negation overflows;
        // wrapping keeps it negative, which every caller refuses.
        Ok(if b[0] == 0 {
            magnitude
        } else {
            magnitude.wrapping_neg()
        })
    }

    /// Length of the next chunk; 0 ends the block.
    fn chunk_len(&mut self) -> Result<usize, ReadError> {
        let len = self.int()?;
        usize::try_from(len).map_err(|_| ReadError::Broken(format!("negative chunk length {len}")))
    }

    /// Appends the next chunk to `out`; false at the block's end.
    fn chunk_into(&mut self, out: &mut BytesMut) -> Result<bool, ReadError> {
        let mut left = self.chunk_len()?;
        if left == 0 {
            return Ok(false);
        }
        while left > 0 {
            let buf = self.src.fill_buf()?;
            if buf.is_empty() {
                return Err(cut_inside_a_block());
            }
            let n = buf.len().min(left);
            out.extend_from_slice(&buf[..n]);
            self.src.consume(n);
            left -= n;
        }
        Ok(true)
    }

    fn skip_chunks(&mut self) -> Result<(), ReadError> {
        loop {
            let len = self.chunk_len()?;
            if len == 0 {
                return Ok(());
            }
            let skipped = io::copy(&mut (&mut self.src).take(len as u64), &mut io::sink())?;
            if skipped < len as u64 {
                return Err(cut_inside_a_block());
            }
        }
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

    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut out = int(data.len() as i64);
        out.extend_from_slice(data);
        out
    }

    /// The data blocks after a table of contents, read by [`Framing`].
    fn blocks(rows: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![BLOCK_LARGE_OBJECTS];
        out.extend(int(9));
        out.extend(int(16_500));
        out.extend(chunk(b"large object bytes"));
        out.extend(int(0));
        out.extend(int(0));
        out.push(BLOCK_DATA);
        out.extend(int(7));
        for r in rows {
            out.extend(chunk(r));
        }
        out.extend(int(0));
        out
    }

    /// An 8-byte integer of magnitude 2^63 with the minus sign: a negative
    /// length, not an overflow.
    #[test]
    fn the_most_negative_eight_byte_integer_is_a_negative_length() {
        let mut stream = vec![BLOCK_DATA, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        stream.extend([1, 0, 0, 0, 0, 0, 0, 0, 0x80]);
        let mut framing = Framing {
            src: io::BufReader::new(&stream[..]),
            int_size: 8,
        };
        let tables = HashMap::from([(7, Arc::<str>::from("COPY public.t (a) FROM stdin"))]);
        let err = read_blocks(&mut framing, &tables, &|_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("negative chunk length"), "{err}");
    }

    /// Runs [`read_blocks`] over `stream` with entry 7 as a table; the
    /// rows it sent and how many slices carried them.
    fn read_table(stream: &[u8], buffer: usize) -> Result<(Vec<u8>, usize, usize), ReadError> {
        let events = std::cell::RefCell::new(Vec::new());
        let tables = HashMap::from([(7, Arc::<str>::from("COPY public.t (a) FROM stdin"))]);
        let mut framing = Framing {
            src: io::BufReader::with_capacity(buffer, stream),
            int_size: 4,
        };
        read_blocks(&mut framing, &tables, &|e| {
            events.borrow_mut().push(e);
            Ok(())
        })?;
        let (mut rows, mut slices, mut ends) = (Vec::new(), 0, 0);
        for e in events.into_inner() {
            match e {
                Event::Rows { rows: r, .. } => {
                    assert_eq!(r.last(), Some(&b'\n'), "slices end on whole rows");
                    rows.extend_from_slice(&r);
                    slices += 1;
                }
                Event::End { .. } => ends += 1,
                Event::Toc { .. } => unreachable!(),
            }
        }
        Ok((rows, slices, ends))
    }

    #[test]
    fn table_rows_are_sliced_at_row_ends_and_large_objects_skipped() {
        let rows: Vec<Vec<u8>> = (0..60_000)
            .map(|i| format!("{i}\t\\.x{}\n", "y".repeat(i % 97)).into_bytes())
            .collect();
        let mut with_marker: Vec<&[u8]> = rows.iter().map(|r| &r[..]).collect();
        with_marker.push(b"\\.\n\n\n");
        let want = rows.concat();
        assert!(want.len() > 2 * SLICE);
        for buffer in [1, 7, 8192] {
            let (got, slices, ends) = read_table(&blocks(&with_marker), buffer).unwrap();
            assert_eq!(got, want, "buffer {buffer}");
            assert!(slices >= 2, "several slices");
            assert_eq!(ends, 1);
        }
        let (got, _, ends) = read_table(&blocks(&[b"\\.\n\n\n"]), 64).unwrap();
        assert!(got.is_empty());
        assert_eq!(ends, 1, "an empty table still ends");
    }

    #[test]
    fn a_stream_cut_inside_a_block_is_damage() {
        let stream = blocks(&[b"1\ta\n", b"2\tb\n", b"\\.\n\n\n"]);
        // Cut right after the large-object block, the stream looks whole
        // (the stored object's size and checksum catch that cut).
        let boundary = blocks(&[]).len() - (1 + 5 + 5);
        for cut in (1..stream.len()).filter(|c| *c != boundary) {
            let r = read_table(&stream[..cut], 16);
            assert!(matches!(r, Err(ReadError::Broken(_))), "cut {cut}: {r:?}");
        }
        assert_eq!(read_table(&stream, 16).unwrap().0, b"1\ta\n2\tb\n");
    }

    #[test]
    fn a_listed_table_without_its_block_is_damage() {
        let events = std::cell::RefCell::new(0);
        let tables = HashMap::from([
            (7, Arc::<str>::from("COPY public.t (a) FROM stdin")),
            (8, Arc::<str>::from("COPY public.gone (a) FROM stdin")),
        ]);
        let stream = blocks(&[b"1\n", b"\\.\n\n\n"]);
        let mut framing = Framing {
            src: &stream[..],
            int_size: 4,
        };
        let r = read_blocks(&mut framing, &tables, &|_| {
            *events.borrow_mut() += 1;
            Ok(())
        });
        assert!(
            matches!(&r, Err(ReadError::Broken(m)) if m.contains("`COPY public.gone (a) FROM stdin` but holds no rows")),
            "{r:?}"
        );
        assert_eq!(*events.borrow(), 2, "table 7 was read whole first");
    }

    #[test]
    fn a_table_cut_inside_a_row_is_damage() {
        let r = read_table(&blocks(&[b"1\ta\n", b"2\tb"]), 16);
        assert!(
            matches!(&r, Err(ReadError::Broken(m)) if m.contains("end inside a row")),
            "{r:?}"
        );
    }

    #[test]
    fn only_a_whole_end_marker_line_is_stripped() {
        for (rows, want) in [
            (&b"1\n\\.\n\n\n"[..], &b"1\n"[..]),
            (b"\\.\n", b""),
            (b"1\n2\n", b"1\n2\n"),
            (b"a\\\\.\n", b"a\\\\.\n"),
            (b"", b""),
        ] {
            let mut b = BytesMut::from(rows);
            strip_end_marker(&mut b);
            assert_eq!(&b[..], want, "{:?}", String::from_utf8_lossy(rows));
        }
    }
}
