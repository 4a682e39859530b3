//! The hash chain that makes the log tamper-evident.
//!
//! Each record's `hash` is `hex(SHA-256(prev ‖ canonical))`, where `prev` is
//! the previous record's `hash` as 64 ASCII hex bytes (64 `0`s for seq 0)
//! and `canonical` is the compact JSON of the record without its `hash` key.
//! Because `hash` is the last field, the canonical bytes are exactly the
//! line minus its trailing `,"hash":"…"` (the closing `}` stays).
//!
//! A verifier does not cut strings: it deserialises the line, re-serialises
//! it without `hash`, rebuilds the line from that, and requires the rebuilt
//! line to equal the stored one byte for byte. So any line the writer could
//! not have produced (an extra key, reordered keys, a `null`, changed
//! whitespace or string escapes) is reported as tampered even if its hash
//! was recomputed over the altered text.

use ring::digest::{Context, SHA256};

use super::record::{AuditRecord, EncodedEvent};

/// `prev` of the first record (seq 0): 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain continues: the next record's `seq` and `prev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    /// Seq the next record gets.
    pub(super) next_seq: u64,
    /// Hash of the last record (its successor's `prev`).
    pub(super) prev: String,
}

impl Head {
    /// An empty chain.
    pub(super) fn genesis() -> Self {
        Head {
            next_seq: 0,
            prev: GENESIS_HASH.to_owned(),
        }
    }

    /// The chain after `record`.
    pub(super) fn after(record: &AuditRecord) -> Self {
        Head {
            next_seq: record.seq.saturating_add(1),
            prev: record.hash.clone(),
        }
    }
}

/// A record ready to write: its line (newline-terminated) and its hash.
#[derive(Debug)]
pub(super) struct Sealed {
    /// The record's seq.
    pub(super) seq: u64,
    /// The record's hash, the next record's `prev`.
    pub(super) hash: String,
    /// The JSON line including the trailing `\n`.
    pub(super) line: Vec<u8>,
}

/// Computes `hash` and the line for a record whose `hash` is still empty:
/// the reference [`seal_encoded`] is checked against.
#[cfg(test)]
pub(super) fn seal(record: &AuditRecord) -> Result<Sealed, serde_json::Error> {
    debug_assert!(record.hash.is_empty(), "sealing an already sealed record");
    let canonical = serde_json::to_vec(record)?;
    let hash = record_hash(&record.prev, &canonical);
    let mut line = line_from_canonical(canonical, &hash);
    line.push(b'\n');
    Ok(Sealed {
        seq: record.seq,
        hash,
        line,
    })
}

/// Seals an event encoded by its appender ([`super::AuditEvent::encode`])
/// at chain position `seq` after `prev`: the same line [`seal`] gives for
/// the equivalent [`AuditRecord`], without decoding or re-encoding the
/// event on the writer thread. `prev` is lowercase hex and `ts` an RFC 3339
/// timestamp, so neither needs JSON escaping.
pub(super) fn seal_encoded(seq: u64, prev: &str, ts: &str, event: &EncodedEvent) -> Sealed {
    let members = event.members();
    let mut line = Vec::with_capacity(members.len() + prev.len() + ts.len() + 120);
    line.extend_from_slice(b"{\"seq\":");
    line.extend_from_slice(seq.to_string().as_bytes());
    line.extend_from_slice(b",\"prev\":\"");
    line.extend_from_slice(prev.as_bytes());
    line.extend_from_slice(b"\",\"ts\":\"");
    line.extend_from_slice(ts.as_bytes());
    line.extend_from_slice(b"\",");
    line.extend_from_slice(members);
    line.push(b'}');
    let hash = record_hash(prev, &line);
    let mut line = line_from_canonical(line, &hash);
    line.push(b'\n');
    Sealed { seq, hash, line }
}

/// Why one line is not a valid sealed record (before any chain checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LineProblem {
    /// Not JSON, or not an audit record.
    Unparseable(String),
    /// Parses (as the record with this seq), but is not byte-for-byte what
    /// the writer emits for those values: extra or reordered keys, `null`s,
    /// whitespace, escapes.
    NotCanonical(u64),
    /// Canonical (the record with this seq), but `hash` does not match the
    /// contents.
    HashMismatch(u64),
}

/// Parses one line (without its `\n`) and checks it is canonical and its
/// hash recomputes. Says nothing about its place in the chain.
pub(super) fn check_line(line: &[u8]) -> Result<AuditRecord, LineProblem> {
    let mut record: AuditRecord =
        serde_json::from_slice(line).map_err(|e| LineProblem::Unparseable(e.to_string()))?;
    let stored = std::mem::take(&mut record.hash);
    let canonical =
        serde_json::to_vec(&record).map_err(|e| LineProblem::Unparseable(e.to_string()))?;
    let computed = record_hash(&record.prev, &canonical);
    if line_from_canonical(canonical, &stored) != line {
        return Err(LineProblem::NotCanonical(record.seq));
    }
    if computed != stored {
        return Err(LineProblem::HashMismatch(record.seq));
    }
    record.hash = stored;
    Ok(record)
}

/// `hex(SHA-256(prev ‖ canonical))`.
fn record_hash(prev: &str, canonical: &[u8]) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(canonical);
    hex(ctx.finish().as_ref())
}

/// Appends `,"hash":"<hash>"` inside the closing brace of `canonical`.
/// `hash` is inserted raw: a stored hash that would need JSON escaping makes
/// the rebuilt line differ from the stored one, which is the point.
fn line_from_canonical(mut canonical: Vec<u8>, hash: &str) -> Vec<u8> {
    if canonical.last() == Some(&b'}') {
        canonical.pop();
    }
    canonical.extend_from_slice(b",\"hash\":\"");
    canonical.extend_from_slice(hash.as_bytes());
    canonical.extend_from_slice(b"\"}");
    canonical
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditEvent, Side};

    fn record(seq: u64, prev: &str) -> AuditRecord {
        let event = AuditEvent {
            direction: crate::audit::Direction::Ingress,
            stream_id: 7,
            request_id: "r-1".into(),
            caller: "spiffe://example.org/caller/a".into(),
            tunnel: "t1".into(),
            service: "svc".into(),
            method: "GET".into(),
            path: "/x".into(),
            decision: Some(crate::audit::AuditDecision::Allow),
            ..Default::default()
        };
        AuditRecord::unsealed(
            event,
            Side::Edge,
            seq,
            prev.into(),
            "1970-01-01T00:00:00.000Z".into(),
        )
    }

    fn line_of(sealed: &Sealed) -> &[u8] {
        sealed.line.strip_suffix(b"\n").unwrap()
    }

    #[test]
    fn sha256_known_answer() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1, with an empty prev.
        assert_eq!(
            record_hash("", b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn canonical_is_line_minus_hash() {
        let r = record(0, GENESIS_HASH);
        let sealed = seal(&r).unwrap();
        let line = std::str::from_utf8(line_of(&sealed)).unwrap();
        let suffix = format!(",\"hash\":\"{}\"}}", sealed.hash);
        let canonical = format!("{}}}", line.strip_suffix(&suffix).unwrap());
        assert_eq!(record_hash(GENESIS_HASH, canonical.as_bytes()), sealed.hash);
        assert!(line.starts_with("{\"seq\":0,\"prev\":\"0000"));
        assert!(!line.contains("null"), "None fields are omitted: {line}");
    }

    #[test]
    fn sealed_line_checks() {
        let sealed = seal(&record(3, &"a".repeat(64))).unwrap();
        let back = check_line(line_of(&sealed)).unwrap();
        assert_eq!(back.hash, sealed.hash);
        assert_eq!(back.seq, 3);
    }

    #[test]
    fn edited_value_is_hash_mismatch() {
        let sealed = seal(&record(0, GENESIS_HASH)).unwrap();
        let text = std::str::from_utf8(line_of(&sealed))
            .unwrap()
            .replace("\"/x\"", "\"/y\"");
        assert_eq!(
            check_line(text.as_bytes()),
            Err(LineProblem::HashMismatch(0))
        );
    }

    #[test]
    fn extra_field_is_not_canonical_even_with_recomputed_hash() {
        let sealed = seal(&record(0, GENESIS_HASH)).unwrap();
        let line = std::str::from_utf8(line_of(&sealed)).unwrap();
        // Insert an unknown key and recompute the hash over the altered
        // canonical text, as a forger would.
        let canonical = line.replace(&format!(",\"hash\":\"{}\"", sealed.hash), "");
        let forged_canonical = canonical.replacen("{", "{\"x\":1,", 1);
        let forged_hash = record_hash(GENESIS_HASH, forged_canonical.as_bytes());
        let forged = format!(
            "{},\"hash\":\"{forged_hash}\"}}",
            forged_canonical.strip_suffix('}').unwrap()
        );
        assert_eq!(
            check_line(forged.as_bytes()),
            Err(LineProblem::NotCanonical(0))
        );
    }

    #[test]
    fn reordered_keys_and_nulls_are_not_canonical() {
        let sealed = seal(&record(0, GENESIS_HASH)).unwrap();
        let line = std::str::from_utf8(line_of(&sealed)).unwrap();
        let swapped = line.replace(
            "\"caller\":\"spiffe://example.org/caller/a\",\"tunnel\":\"t1\"",
            "\"tunnel\":\"t1\",\"caller\":\"spiffe://example.org/caller/a\"",
        );
        assert_ne!(swapped, line);
        assert_eq!(
            check_line(swapped.as_bytes()),
            Err(LineProblem::NotCanonical(0))
        );
        let with_null = line.replacen("\"event\"", "\"rule\":null,\"event\"", 1);
        assert_eq!(
            check_line(with_null.as_bytes()),
            Err(LineProblem::NotCanonical(0))
        );
        let spaced = line.replacen("\"seq\":0", "\"seq\": 0", 1);
        assert_eq!(
            check_line(spaced.as_bytes()),
            Err(LineProblem::NotCanonical(0))
        );
    }

    #[test]
    fn encoded_event_seals_to_the_same_line_as_the_record() {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("k\"ey".to_string(), "v\u{1}al\u{e9}".to_string());
        let events = [
            AuditEvent::default(),
            AuditEvent {
                event: crate::audit::record::Event::Close,
                direction: crate::audit::Direction::Egress,
                stream_id: u64::MAX,
                request_id: "r\n\"\\".into(),
                trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
                caller: "spiffe://example.org/caller/a".into(),
                tunnel: "t\u{7f}".into(),
                service: "svc".into(),
                method: "POST".into(),
                path: "/a/b?c=d&e=\u{2028}".into(),
                decision: Some(crate::audit::AuditDecision::Deny),
                rule: Some("r-1".into()),
                reason: Some("no rule".into()),
                http_status: Some(403),
                grpc_status: Some(7),
                bytes_in: Some(0),
                bytes_out: Some(12345),
                duration_ms: Some(9),
                error: Some("boom \u{0}".into()),
                labels: Some(labels),
            },
        ];
        for event in events {
            for side in [Side::Edge, Side::Client] {
                let ts = "2026-11-27T10:00:00.123Z";
                let encoded = event.encode(side).unwrap();
                let fast = seal_encoded(42, GENESIS_HASH, ts, &encoded);
                let record =
                    AuditRecord::unsealed(event.clone(), side, 42, GENESIS_HASH.into(), ts.into());
                let slow = seal(&record).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&fast.line),
                    String::from_utf8_lossy(&slow.line)
                );
                assert_eq!(fast.hash, slow.hash);
                assert!(check_line(line_of(&fast)).is_ok());
            }
        }
    }

    #[test]
    fn garbage_is_unparseable() {
        assert!(matches!(
            check_line(b"{\"seq\":"),
            Err(LineProblem::Unparseable(_))
        ));
        assert!(matches!(check_line(b""), Err(LineProblem::Unparseable(_))));
    }
}
