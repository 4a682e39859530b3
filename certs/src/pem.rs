//! PEM encoding and decoding. Decoding uses `rustls-pki-types`; encoding is the
//! few lines of base64 needed to re-emit a loaded certificate canonically without
//! adding a dependency.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes DER as a PEM block with the given label and 64-character lines.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every CERTIFICATE block in `pem`, in order; other blocks (keys) are skipped.
pub(crate) fn certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            what,
            reason: "no '-----BEGIN CERTIFICATE-----' block found".into(),
        });
    }
    Ok(certs)
}

/// The first private key block in `pem` (PKCS#8, SEC1 or PKCS#1 labels).
pub(crate) fn private_key(
    pem: &str,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| CertError::Pem {
        what,
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no '-----BEGIN PRIVATE KEY-----' block found".into()
            }
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_every_padding_length() {
        for len in 0..200usize {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let pem = encode("CERTIFICATE", &der);
            if len == 0 {
                continue; // an empty body is not a meaningful certificate
            }
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), der.as_slice(), "length {len}");
            assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        }
    }

    #[test]
    fn known_vector() {
        assert_eq!(
            encode("X", b"foobar"),
            "-----BEGIN X-----\nZm9vYmFy\n-----END X-----\n"
        );
        assert_eq!(
            encode("X", b"fo"),
            "-----BEGIN X-----\nZm8=\n-----END X-----\n"
        );
        assert_eq!(
            encode("X", b"f"),
            "-----BEGIN X-----\nZg==\n-----END X-----\n"
        );
    }
}
