//! QUIC variable-length integers (RFC 9000 §16).
//!
//! The two high bits of the first byte give the encoded length: `00` → 1 byte
//! (6-bit value), `01` → 2 bytes (14-bit), `10` → 4 bytes (30-bit), `11` → 8
//! bytes (62-bit). The rest is the value, big-endian. We always *write* the
//! shortest form; we *read* any form, as RFC 9000 allows non-minimal encodings.

use bytes::{BufMut, BytesMut};

/// Largest value a varint can carry: 2^62 − 1.
pub const MAX: u64 = (1 << 62) - 1;

/// Longest encoding of a varint, in bytes.
pub const MAX_LEN: usize = 8;

/// A value above [`MAX`] was given to the encoder: a caller bug, since every
/// field Tether writes is a `u32` or a buffer length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} does not fit a QUIC varint (largest is 2^62-1)")]
pub struct VarintOverflow(pub u64);

/// Bytes the shortest encoding of `v` takes, or `None` when `v > MAX`.
pub const fn encoded_len(v: u64) -> Option<usize> {
    if v < (1 << 6) {
        Some(1)
    } else if v < (1 << 14) {
        Some(2)
    } else if v < (1 << 30) {
        Some(4)
    } else if v <= MAX {
        Some(8)
    } else {
        None
    }
}

/// Appends the shortest encoding of `v` to `dst`. Writes nothing on error.
pub fn encode(v: u64, dst: &mut BytesMut) -> Result<(), VarintOverflow> {
    match encoded_len(v) {
        // The casts cannot truncate: each arm's range was checked above.
        Some(1) => dst.put_u8(v as u8),
        Some(2) => dst.put_u16(0x4000 | v as u16),
        Some(4) => dst.put_u32(0x8000_0000 | v as u32),
        Some(_) => dst.put_u64(0xc000_0000_0000_0000 | v),
        None => return Err(VarintOverflow(v)),
    }
    Ok(())
}

/// Reads one varint from the front of `src`: `Some((value, bytes_used))`, or
/// `None` when `src` ends before the varint does (need more bytes).
///
/// Every byte sequence of the announced length is a valid varint, so there is
/// no error case beyond "not enough bytes yet".
pub fn decode(src: &[u8]) -> Option<(u64, usize)> {
    let first = *src.first()?;
    let len = 1usize << (first >> 6);
    let bytes = src.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode(v, &mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn rfc9000_examples() {
        // RFC 9000 Appendix A.1.
        assert_eq!(
            decode(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(decode(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(decode(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(decode(&[0x25]), Some((37, 1)));
        // Non-minimal encodings are accepted.
        assert_eq!(decode(&[0x40, 0x25]), Some((37, 2)));
        assert_eq!(enc(37), [0x25]);
        assert_eq!(enc(15_293), [0x7b, 0xbd]);
        assert_eq!(enc(494_878_333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(
            enc(151_288_809_941_952_652),
            [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
        );
    }

    #[test]
    fn boundaries() {
        for (v, n) in [
            (0, 1),
            (63, 1),
            (64, 2),
            (16_383, 2),
            (16_384, 4),
            ((1 << 30) - 1, 4),
            (1 << 30, 8),
            (MAX, 8),
        ] {
            assert_eq!(encoded_len(v), Some(n), "{v}");
            assert_eq!(enc(v).len(), n, "{v}");
        }
        assert_eq!(encoded_len(MAX + 1), None);
    }

    #[test]
    fn overflow_writes_nothing() {
        let mut b = BytesMut::from(&b"x"[..]);
        assert_eq!(encode(MAX + 1, &mut b), Err(VarintOverflow(MAX + 1)));
        assert_eq!(encode(u64::MAX, &mut b), Err(VarintOverflow(u64::MAX)));
        assert_eq!(&b[..], b"x");
    }

    #[test]
    fn short_input_needs_more() {
        assert_eq!(decode(&[]), None);
        let full = enc(MAX);
        for n in 0..full.len() {
            assert_eq!(decode(&full[..n]), None, "prefix {n}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(v in 0..=MAX, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut b = BytesMut::new();
            encode(v, &mut b).unwrap();
            let n = b.len();
            prop_assert_eq!(Some(n), encoded_len(v));
            b.extend_from_slice(&tail);
            prop_assert_eq!(decode(&b), Some((v, n)));
        }
    }
}
