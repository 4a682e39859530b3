//! A byte count as people write it on a command line: `1GiB`, `256MiB`,
//! `64KiB`, `4M`, `1500000` — so `bench bulk --bytes` reads like the sizes
//! it is compared with.

use std::fmt;
use std::str::FromStr;

/// Bytes in a mebibyte: the unit bulk throughput and CPU are reported in.
pub const MIB: u64 = 1024 * 1024;

/// Suffixes and their multipliers, longest first so `MiB` is not read as
/// `M` followed by garbage. A bare `K`, `M`, `G`, `T` is binary (as `dd`
/// and most tools read it); `KB`, `MB`, … are decimal (SI).
const SUFFIXES: [(&str, u64); 13] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
    ("B", 1),
];

/// A number of bytes, parsed from `<integer>[suffix]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, suffix) = s.split_at(digits);
        let suffix = suffix.trim();
        let whole = || {
            format!("{s:?}: expected a whole number of bytes, optionally with a suffix (e.g. 256MiB, 1GiB)")
        };
        if suffix.starts_with(['.', ',']) {
            return Err(whole());
        }
        let number: u64 = number.parse().map_err(|_| whole())?;
        let multiplier = if suffix.is_empty() {
            1
        } else {
            SUFFIXES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(suffix) && name.len() == suffix.len())
                .map(|(_, m)| *m)
                .ok_or_else(|| {
                    format!(
                        "{s:?}: unknown unit {suffix:?} (B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
                    )
                })?
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the count exactly: `1GiB`,
    /// `4MiB`, `1500B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (name, m) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if n >= m && n % m == 0 {
                return write!(f, "{}{name}", n / m);
            }
        }
        write!(f, "{n}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<u64, String> {
        s.parse::<ByteSize>().map(|b| b.0)
    }

    #[test]
    fn suffixes_are_binary_or_si_as_written() {
        let cases = [
            ("1500", 1500),
            ("1500B", 1500),
            ("64KiB", 64 << 10),
            ("256MiB", 256 << 20),
            ("256mib", 256 << 20),
            ("1GiB", 1 << 30),
            ("1 GiB", 1 << 30),
            ("4M", 4 << 20),
            ("2g", 2 << 30),
            ("1MB", 1_000_000),
            ("3GB", 3_000_000_000),
        ];
        assert!(!cases.is_empty());
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_accepted_forms() {
        for bad in ["", "GiB", "1.5GiB", "1 parsec", "-4MiB", "99999999999TiB"] {
            let err = parse(bad).err().unwrap_or_default();
            assert!(!err.is_empty(), "{bad:?} was accepted");
        }
        assert!(parse("1 parsec").err().unwrap_or_default().contains("MiB"));
        assert!(parse("1.5GiB")
            .err()
            .unwrap_or_default()
            .contains("whole number"));
    }

    #[test]
    fn display_uses_the_largest_exact_unit() {
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(3 << 20).to_string(), "3MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }
}
