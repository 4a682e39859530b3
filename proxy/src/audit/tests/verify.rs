//! Verification finds each kind of tampering, at the right place.

use super::*;
use crate::audit::chain::seal;
use crate::audit::record::AuditRecord;
use crate::audit::{chain_files, verify_files, VerifyError, GENESIS_HASH};

/// A 6-record log, its path and its lines.
async fn sample(dir: &Path) -> (PathBuf, Vec<String>) {
    let path = log_with(dir, 6).await;
    let lines = lines(&path);
    assert_eq!(lines.len(), 6);
    (path, lines)
}

fn verify(path: &Path) -> Result<crate::audit::VerifyReport, VerifyError> {
    verify_files(&[path.to_path_buf()])
}

#[tokio::test]
async fn edited_field_is_edited() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = sample(dir.path()).await;
    lines[3] = lines[3].replace("\"allow\"", "\"deny\"");
    write_lines(&path, &lines);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Edited { line: 4, seq: 3, what, .. } if what.contains("hash")),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("audit.log:4") && message.contains("seq 3"),
        "{message}"
    );
}

#[tokio::test]
async fn deleted_line_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = sample(dir.path()).await;
    lines.remove(2);
    write_lines(&path, &lines);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Removed { line: 3, seq: 3, what, .. } if what.contains("seq 2 is missing")),
        "{err}"
    );
}

#[tokio::test]
async fn swapped_lines_are_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = sample(dir.path()).await;
    lines.swap(1, 2);
    write_lines(&path, &lines);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Reordered { line: 2, seq: 2, what, .. } if what.contains("audit.log:3")),
        "{err}"
    );
}

#[tokio::test]
async fn duplicated_line_is_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = sample(dir.path()).await;
    lines.insert(3, lines[2].clone());
    write_lines(&path, &lines);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Reordered {
                line: 4,
                seq: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn cut_last_line_is_truncated_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = sample(dir.path()).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - lines[5].len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, VerifyError::TruncatedTail { line: 6, expected_seq: Some(5), what, .. } if what.contains("no newline")),
        "{err}"
    );

    // Newline kept but the record cut: still the tail.
    let mut cut = lines.clone();
    let half = cut[5].len() / 2;
    cut[5].truncate(half);
    write_lines(&path, &cut);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, VerifyError::TruncatedTail { line: 6, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_mid_file_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = sample(dir.path()).await;
    lines[2] = "not json".into();
    write_lines(&path, &lines);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Malformed {
                line: 3,
                expected_seq: Some(2),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn extra_field_or_reordered_keys_are_edited() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = sample(dir.path()).await;

    let mut extra = lines.clone();
    extra[1] = extra[1].replacen("\"ts\"", "\"admin\":true,\"ts\"", 1);
    write_lines(&path, &extra);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Edited { line: 2, seq: 1, what, .. } if what.contains("canonical")),
        "{err}"
    );

    let mut reordered = lines.clone();
    reordered[1] = reordered[1].replacen(
        "\"service\":\"orders\",\"method\":\"POST\"",
        "\"method\":\"POST\",\"service\":\"orders\"",
        1,
    );
    assert_ne!(reordered[1], lines[1]);
    write_lines(&path, &reordered);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Edited {
                line: 2,
                seq: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn replaced_record_with_valid_hash_breaks_prev() {
    // A forger rewrites record 3 with a correct hash over its own content;
    // record 4's prev no longer matches.
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = sample(dir.path()).await;
    let original: AuditRecord = serde_json::from_str(&lines[3]).unwrap();
    let forged = AuditRecord {
        decision: Some(crate::audit::AuditDecision::Deny),
        hash: String::new(),
        ..original
    };
    let sealed = seal(&forged).unwrap();
    lines[3] = String::from_utf8(sealed.line)
        .unwrap()
        .trim_end()
        .to_owned();
    write_lines(&path, &lines);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Removed { line: 5, seq: 4, what, .. } if what.contains("prev")),
        "{err}"
    );
}

#[tokio::test]
async fn first_record_must_start_from_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut lines) = sample(dir.path()).await;
    let original: AuditRecord = serde_json::from_str(&lines[0]).unwrap();
    let forged = AuditRecord {
        prev: "f".repeat(64),
        hash: String::new(),
        ..original
    };
    lines[0] = String::from_utf8(seal(&forged).unwrap().line)
        .unwrap()
        .trim_end()
        .to_owned();
    write_lines(&path, &lines);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Edited {
                line: 1,
                seq: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn chain_over_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: 1_500,
        ..config(dir.path(), Durability::None)
    })
    .unwrap();
    for n in 0..20 {
        log.append(open_event(n)).await.unwrap();
    }
    drop(log);
    let files = chain_files(&path);
    assert!(files.len() >= 4, "{files:?}");
    let full = verify_files(&files).unwrap();
    assert_eq!(
        (full.records, full.first_seq, full.last_seq),
        (20, Some(0), Some(19))
    );

    // Pruned oldest file: the rest still verifies, starting later.
    let pruned = verify_files(&files[1..]).unwrap();
    assert!(pruned.first_seq.unwrap() > 0);
    assert_eq!(pruned.head_hash, full.head_hash);

    // A missing middle file is a removal, reported in the next file.
    let mut gap = files.clone();
    gap.remove(1);
    let err = verify_files(&gap).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Removed { line: 1, .. }),
        "{err}"
    );
    assert_eq!(err.file(), files[2]);

    // Files given out of order.
    let mut swapped = files.clone();
    swapped.swap(0, 1);
    assert!(matches!(
        verify_files(&swapped),
        Err(VerifyError::Reordered { .. })
    ));

    // A missing file is an I/O error naming it.
    let err = verify_files(&[dir.path().join("absent")]).unwrap_err();
    assert!(matches!(err, VerifyError::Io { .. }), "{err}");
}

#[test]
fn empty_chain_verifies_to_genesis() {
    let report = verify_files(&[]).unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(report.head_hash, GENESIS_HASH);
    assert_eq!((report.first_seq, report.last_seq), (None, None));
}
