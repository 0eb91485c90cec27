//! A growable byte buffer for plaintext that is zeroized on drop and on
//! every reallocation, so no freed heap block keeps a copy.

use std::fmt;
use std::io::{self, Read, Write};

use zeroize::Zeroize;

/// Plaintext bytes (a decrypted bundle, a rendered `.env`...). Zeroized when
/// dropped and when it grows; `Debug` shows only the length.
#[derive(Default)]
pub struct SecretBuf {
    buf: Vec<u8>,
}

impl fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBuf({} bytes, redacted)", self.buf.len())
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl SecretBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Reads `reader` to its end.
    pub fn read_from(mut reader: impl Read) -> io::Result<Self> {
        let mut out = Self::with_capacity(8 << 10);
        let mut chunk = [0u8; 8 << 10];
        let result = loop {
            match reader.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => out.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.zeroize();
        result.map(|()| out)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.buf
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends bytes, moving to a larger block (and wiping the old one) when
    /// full.
    pub fn extend(&mut self, data: &[u8]) {
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() {
            let mut bigger = Vec::with_capacity(needed.max(self.buf.capacity() * 2).max(64));
            bigger.extend_from_slice(&self.buf);
            self.buf.zeroize();
            self.buf = bigger;
        }
        self.buf.extend_from_slice(data);
    }
}

impl Write for SecretBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.extend(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_keeps_content() {
        let mut b = SecretBuf::new();
        for i in 0..1000u32 {
            b.extend(&i.to_le_bytes());
        }
        assert_eq!(b.len(), 4000);
        assert_eq!(&b.expose()[4..8], &1u32.to_le_bytes());
        assert!(!format!("{b:?}").contains('\u{1}'));
        let r = SecretBuf::read_from(b.expose()).map(|c| c.len());
        assert_eq!(r.ok(), Some(4000));
    }
}
