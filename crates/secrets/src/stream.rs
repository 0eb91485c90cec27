//! Streaming age encryption and decryption, binary or ASCII-armored, and
//! whole-buffer sealing for small plaintexts such as secret bundles.

use std::io::{self, Read, Write};

use crate::buf::SecretBuf;
use crate::error::{Error, Result};
use crate::keys::{Encryption, Identities, Recipients};

/// Wraps `output` so that everything written is encrypted to `recipients`
/// (binary age format). Call `finish()` on the returned writer to write the
/// final chunk: without it the file is truncated and will not decrypt.
pub fn encrypt_writer<W: Write>(
    recipients: &Recipients,
    output: W,
) -> Result<age::stream::StreamWriter<W>> {
    let encryptor = Encryption::Recipients(recipients.clone()).encryptor()?;
    Ok(encryptor.wrap_output(output)?)
}

/// An encrypting writer, binary or armored (`-----BEGIN AGE ENCRYPTED
/// FILE-----`). [`EncryptWriter::finish`] must be called.
pub struct EncryptWriter<W: Write> {
    inner: age::stream::StreamWriter<age::armor::ArmoredWriter<W>>,
}

impl<W: Write> EncryptWriter<W> {
    /// Writes the final chunk (and the armor footer); returns the output.
    pub fn finish(self) -> io::Result<W> {
        self.inner.finish()?.finish()
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Wraps `output` so that everything written is encrypted as `encryption`
/// says, ASCII-armored when `armored`.
pub fn encrypt_writer_with<W: Write>(
    encryption: &Encryption,
    output: W,
    armored: bool,
) -> Result<EncryptWriter<W>> {
    let format = if armored {
        age::armor::Format::AsciiArmor
    } else {
        age::armor::Format::Binary
    };
    let armor = age::armor::ArmoredWriter::wrap_output(output, format)?;
    let inner = encryption.encryptor()?.wrap_output(armor)?;
    Ok(EncryptWriter { inner })
}

/// Opens an age stream (binary or ASCII-armored) from `input` with
/// `identities`. Authentication of each chunk happens as it is read; a
/// damaged or truncated stream fails on read, so a caller that must not act
/// on partial data reads to the end first (as [`unseal`] does).
pub fn decrypt_reader<R: Read>(
    identities: &Identities,
    input: R,
) -> Result<age::stream::StreamReader<age::armor::ArmoredReader<io::BufReader<R>>>> {
    let parsed = identities.parse()?;
    let input = age::armor::ArmoredReader::new(input);
    let decryptor = age::Decryptor::new(input).map_err(|e| decrypt_error(e, identities, false))?;
    let scrypt = decryptor.is_scrypt();
    if scrypt && !identities.has_passphrase() {
        return Err(Error::PassphraseRequired);
    }
    decryptor
        .decrypt(parsed.iter().map(|i| i.as_ref() as _))
        .map_err(|e| decrypt_error(e, identities, scrypt))
}

fn decrypt_error(e: age::DecryptError, ids: &Identities, scrypt: bool) -> Error {
    use age::DecryptError as D;
    match e {
        D::NoMatchingKeys if scrypt => Error::PassphraseRequired,
        D::NoMatchingKeys => Error::NoMatchingIdentity {
            origin: ids.origin().to_owned(),
        },
        D::DecryptionFailed | D::KeyDecryptionFailed if scrypt => Error::WrongPassphrase,
        D::ExcessiveWork { required, .. } => Error::ExcessiveWork {
            required,
            max: ids.max_work_factor(),
        },
        D::InvalidMac => Error::Decrypt(
            "the header MAC does not match: the file was altered or a wrong key was tried".into(),
        ),
        other => Error::Decrypt(format!(
            "{other}: the data is damaged, truncated or not an age file"
        )),
    }
}

/// Encrypts a whole plaintext buffer.
pub fn seal(encryption: &Encryption, plaintext: &[u8], armored: bool) -> Result<Vec<u8>> {
    let mut w = encrypt_writer_with(encryption, Vec::new(), armored)?;
    w.write_all(plaintext)?;
    Ok(w.finish()?)
}

/// Decrypts a whole age file into a zeroizing buffer. Returns only after
/// every chunk's authentication tag and the final-chunk flag have been
/// checked: nothing of a damaged, truncated or forged file comes out.
pub fn unseal(identities: &Identities, sealed: &[u8]) -> Result<SecretBuf> {
    let reader = decrypt_reader(identities, sealed)?;
    SecretBuf::read_from(reader).map_err(|e| {
        Error::Decrypt(format!(
            "{e}: the data is damaged or truncated (every chunk is authenticated)"
        ))
    })
}
