//! Reading audit logs back in tests: the records of a file, and the check
//! that every stream has exactly one open and one close record.

use std::collections::BTreeMap;
use std::path::Path;

use proxy::audit::{AuditRecord, Event};

/// Every record of one audit file, in order. Panics on an unreadable file
/// or a line that is not a record: in a test, either is a failure.
pub fn records(path: &Path) -> Vec<AuditRecord> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => panic!("cannot read audit log {}: {e}", path.display()),
    };
    text.lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(r) => r,
            Err(e) => panic!("not an audit record ({e}): {l}"),
        })
        .collect()
}

/// Groups records by stream, asserting each stream has exactly one open
/// followed by exactly one close with the same identity fields.
pub fn by_stream(records: &[AuditRecord]) -> BTreeMap<u64, (AuditRecord, AuditRecord)> {
    let mut open = BTreeMap::new();
    let mut out = BTreeMap::new();
    for r in records {
        match r.event {
            Event::Open => assert!(
                open.insert(r.stream_id, r.clone()).is_none(),
                "two opens for stream {}",
                r.stream_id
            ),
            Event::Close => {
                let o: AuditRecord = open
                    .remove(&r.stream_id)
                    .unwrap_or_else(|| panic!("close without open: {r:?}"));
                assert!(o.seq < r.seq);
                assert_eq!(
                    (&o.caller, &o.service, &o.path, &o.request_id, &o.labels),
                    (&r.caller, &r.service, &r.path, &r.request_id, &r.labels)
                );
                assert!(
                    out.insert(r.stream_id, (o, r.clone())).is_none(),
                    "two closes for stream {}",
                    r.stream_id
                );
            }
            // Connection records, not streams.
            Event::Revoke => {}
        }
    }
    assert!(open.is_empty(), "streams without close: {open:?}");
    out
}
