//! Building blocks shared by CA and leaf issuance: keys, serial numbers and
//! validity windows. rcgen's defaults (fixed 1975..4096 validity, hash-derived
//! serials, no key usage) are unsafe, so everything is set explicitly here.

use rcgen::{KeyPair, SerialNumber, PKCS_ECDSA_P256_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::CertError;

/// How far `not_before` is backdated by default, to tolerate peers whose clocks
/// run a little behind ours.
pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Length of a certificate serial number in bytes (RFC 5280's maximum).
const SERIAL_LEN: usize = 20;

/// Generates a fresh ECDSA P-256 key, the only key type Tether issues.
pub(crate) fn new_key_pair() -> Result<KeyPair, CertError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

/// A random, positive, 20-byte serial number (159+ bits of entropy) so serials
/// are unique and unpredictable without keeping issuance state.
pub(crate) fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; SERIAL_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Random)?;
    // Clear the sign bit so the INTEGER is positive, and make the first byte
    // non-zero so DER keeps all 20 bytes (no leading-zero stripping).
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// The current time truncated to whole seconds, as X.509 stores it.
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Adds a std duration to a time, failing cleanly instead of panicking on overflow.
pub(crate) fn add(t: OffsetDateTime, d: std::time::Duration) -> Result<OffsetDateTime, CertError> {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d))
        .ok_or_else(|| CertError::InvalidValidity(format!("lifetime of {d:?} is too long")))
}

/// Subtracts a std duration from a time, failing cleanly instead of panicking.
pub(crate) fn sub(t: OffsetDateTime, d: std::time::Duration) -> Result<OffsetDateTime, CertError> {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d))
        .ok_or_else(|| CertError::InvalidValidity(format!("cannot go back {d:?} from {t}")))
}

/// Normalises a validity window (UTC, whole seconds) and refuses empty, inverted
/// or unencodable windows before anything is signed; rcgen would panic on years
/// X.509 cannot express.
pub(crate) fn window(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    let not_before = normalize(not_before)?;
    let not_after = normalize(not_after)?;
    if not_after <= not_before {
        return Err(CertError::InvalidValidity(format!(
            "not_after ({}) must be later than not_before ({})",
            format_time(not_after),
            format_time(not_before)
        )));
    }
    Ok((not_before, not_after))
}

/// UTC, whole seconds, and a year X.509 can encode (1950..=9999).
fn normalize(t: OffsetDateTime) -> Result<OffsetDateTime, CertError> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    if !(1950..=9999).contains(&t.year()) {
        return Err(CertError::InvalidValidity(format!(
            "{} is outside the supported years 1950..=9999",
            format_time(t)
        )));
    }
    Ok(t)
}

/// Formats a time as RFC 3339 UTC (`2025-01-31T12:00:00Z`) for messages and inspect output.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
