//! The key an edge signs QUIC stateless resets with. It must survive a
//! restart: a client still talking to the edge's previous process gets,
//! at its first packet, a reset it can verify, and redials at once instead
//! of waiting for its idle timeout. quinn's default is a fresh random key
//! per process, which makes every reset after a restart unverifiable.
//!
//! The key is HMAC-SHA256 keyed by a label over secret material: either a
//! configured secret file (shared by every process that serves the same
//! address, for example the pods behind one Service) or, by default, the
//! edge's own private key, which already persists across restarts and
//! never leaves the process. The derivation is one-way, so the reset key
//! reveals nothing about the material.
//!
//! The connection IDs the edge issues are checked against a second key
//! derived the same way: quinn drops a packet whose connection ID its
//! generator did not make, without answering, so a restarted edge with a
//! fresh generator key would never send the reset at all.

use std::path::Path;

use ring::hmac;

/// Domain separation: a key derived here is never the same as any other
/// use of the material.
const LABEL: &[u8] = b"tether/1 quic stateless reset key";
/// Domain separation for the connection-ID key.
const CID_LABEL: &[u8] = b"tether/1 quic connection id key";

/// The two keys an edge endpoint keeps across restarts.
pub struct EndpointKeys {
    reset: hmac::Key,
    cid: u64,
}

impl std::fmt::Debug for EndpointKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointKeys(..)")
    }
}

/// Shortest secret file accepted: 32 bytes carry 256 bits at most.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why the secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ResetKeyError {
    /// The file could not be read.
    #[error("cannot read the stateless reset secret {path}: {source}")]
    Read {
        /// The configured path.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file holds too little secret.
    #[error(
        "the stateless reset secret {path} holds {len} bytes; it needs at least {MIN_SECRET_BYTES} \
         (create one with: head -c 32 /dev/urandom > {path})"
    )]
    TooShort {
        /// The configured path.
        path: std::path::PathBuf,
        /// How many bytes it held.
        len: usize,
    },
}

/// The keys for `material` (a secret file's bytes or a private key's
/// DER). The same material always gives the same keys.
pub fn derive(material: &[u8]) -> EndpointKeys {
    let reset = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, LABEL), material);
    let cid = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, CID_LABEL), material);
    let mut first = [0u8; 8];
    first.copy_from_slice(&cid.as_ref()[..8]);
    EndpointKeys {
        reset: hmac::Key::new(hmac::HMAC_SHA256, reset.as_ref()),
        cid: u64::from_le_bytes(first),
    }
}

/// Reads a secret file and derives the keys from it.
pub fn from_file(path: &Path) -> Result<EndpointKeys, ResetKeyError> {
    let bytes = std::fs::read(path).map_err(|source| ResetKeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(ResetKeyError::TooShort {
            path: path.to_path_buf(),
            len: bytes.len(),
        });
    }
    Ok(derive(&bytes))
}

/// A server endpoint configuration that issues connection IDs and signs
/// resets with `keys`, and sends at most one reset per `min_interval`
/// (quinn's default, 20 ms, would take 20 s to reset a thousand tunnels
/// after a restart).
pub fn endpoint_config(
    keys: EndpointKeys,
    min_interval: std::time::Duration,
) -> quinn::EndpointConfig {
    let mut cfg = quinn::EndpointConfig::new(std::sync::Arc::new(keys.reset));
    let cid_key = keys.cid;
    cfg.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    cfg.min_reset_interval(min_interval);
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(keys: &EndpointKeys) -> (Vec<u8>, u64) {
        (
            hmac::sign(&keys.reset, b"connection id").as_ref().to_vec(),
            keys.cid,
        )
    }

    #[test]
    fn the_same_material_gives_the_same_keys_and_other_material_others() {
        assert_eq!(
            sign(&derive(b"material one")),
            sign(&derive(b"material one"))
        );
        let (one, two) = (
            sign(&derive(b"material one")),
            sign(&derive(b"material two")),
        );
        assert_ne!(one.0, two.0);
        assert_ne!(one.1, two.1);
    }

    #[test]
    fn the_reset_key_is_not_the_material_itself() {
        let material = [7u8; 32];
        let direct = hmac::Key::new(hmac::HMAC_SHA256, &material);
        assert_ne!(
            sign(&derive(&material)).0,
            hmac::sign(&direct, b"connection id").as_ref().to_vec()
        );
    }

    #[test]
    fn connection_ids_from_one_process_validate_in_the_next() {
        use quinn_proto::ConnectionIdGenerator;
        let mut before = quinn_proto::HashedConnectionIdGenerator::from_key(derive(b"k").cid);
        let after = quinn_proto::HashedConnectionIdGenerator::from_key(derive(b"k").cid);
        let other = quinn_proto::HashedConnectionIdGenerator::from_key(derive(b"x").cid);
        let cid = before.generate_cid();
        assert!(after.validate(&cid).is_ok());
        assert!(other.validate(&cid).is_err());
    }

    #[test]
    fn a_short_or_missing_secret_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, b"too short").unwrap();
        let err = from_file(&short).unwrap_err().to_string();
        assert!(
            err.contains("holds 9 bytes") && err.contains("/dev/urandom"),
            "{err}"
        );
        let missing = dir.path().join("missing");
        assert!(matches!(
            from_file(&missing),
            Err(ResetKeyError::Read { .. })
        ));
        let good = dir.path().join("good");
        std::fs::write(&good, [1u8; 32]).unwrap();
        assert_eq!(sign(&from_file(&good).unwrap()), sign(&derive(&[1u8; 32])));
    }
}
