//! Multipart part sizes for uploads of unknown length.
//!
//! S3 and GCS allow at most 10,000 parts and at least 5 MiB per part (Azure
//! allows 50,000 blocks). A fixed part size either wastes memory on small
//! objects or caps the object size, so parts start at 5 MiB and double every
//! 1,000 parts: a 1 GiB dump uses 5 MiB parts, a 1 TiB base backup still fits
//! in about 7,800 parts.

/// Smallest part: the 5 MiB multipart minimum, which keeps memory low.
pub const MIN_PART: usize = 5 << 20;
/// Largest part S3 accepts.
pub const MAX_PART: usize = 5 << 30;
/// Parts before the size doubles.
pub const PARTS_PER_STEP: usize = 1_000;
/// The multipart part-count limit of S3 and GCS.
pub const MAX_PARTS: usize = 10_000;

/// Yields the size of each successive part.
#[derive(Clone, Debug, Default)]
pub struct PartSizer {
    written: usize,
}

impl PartSizer {
    /// Size of part number `n` (0-based).
    pub fn size_of(n: usize) -> usize {
        let doublings = u32::try_from(n / PARTS_PER_STEP)
            .unwrap_or(u32::MAX)
            .min(10);
        MIN_PART.saturating_mul(1 << doublings).min(MAX_PART)
    }

    /// Size of the part being filled now.
    pub fn current(&self) -> usize {
        Self::size_of(self.written)
    }

    /// Moves to the next part.
    pub fn advance(&mut self) {
        self.written += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tebibyte_fits_in_the_part_limit() {
        let total: u128 = (0..MAX_PARTS).map(|n| PartSizer::size_of(n) as u128).sum();
        assert!(total >= 1u128 << 40, "10,000 parts hold only {total} bytes");
    }

    #[test]
    fn parts_stay_within_backend_limits() {
        for n in 0..MAX_PARTS {
            let s = PartSizer::size_of(n);
            assert!((5 << 20..=MAX_PART).contains(&s), "part {n} is {s} bytes");
        }
    }

    #[test]
    fn one_gibibyte_uses_small_parts() {
        // 1 GiB / 5 MiB = 205 parts, all at the minimum: memory stays flat.
        assert_eq!(PartSizer::size_of(205), MIN_PART);
    }
}
