//! Writing: round trip, resume, group commit, rotation, durability modes.

use std::time::Duration;

use super::*;
use crate::audit::{chain_files, verify_files, AuditError, AuditRecord, GENESIS_HASH};

#[tokio::test]
async fn append_and_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Always);
    for n in 0..5 {
        assert_eq!(log.append(open_event(n)).await.unwrap(), 2 * n);
        assert_eq!(log.append(close_event(n)).await.unwrap(), 2 * n + 1);
    }
    assert!(log.healthy());
    assert_eq!(log.last_error(), None);
    let stats = log.stats();
    assert_eq!(stats.records_written, 10);
    assert_eq!(
        stats.syncs, 5,
        "each open record waits for its own fsync; each close rides the next"
    );

    let path = dir.path().join("audit.log");
    let lines = lines(&path);
    assert_eq!(lines.len(), 10);
    let records: Vec<AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0].prev, GENESIS_HASH);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
    }
    let first = &records[0];
    assert_eq!(first.side, "edge");
    assert_eq!(first.event, Event::Open);
    assert_eq!(first.ts.len(), "2024-01-01T00:00:00.000Z".len());
    assert!(first.ts.ends_with('Z'));
    assert!(
        !lines[0].contains("http_status"),
        "None fields are omitted: {}",
        lines[0]
    );
    assert!(lines[0].starts_with("{\"seq\":0,\"prev\":\""));
    assert!(lines[0].ends_with(&format!(",\"hash\":\"{}\"}}", first.hash)));
    let close = &records[1];
    assert_eq!(
        (close.event, close.http_status, close.bytes_out),
        (Event::Close, Some(200), Some(4096))
    );

    let report = verify_files(&chain_files(&path)).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.first_seq, Some(0));
    assert_eq!(report.last_seq, Some(9));
    assert_eq!(report.head_hash, records[9].hash);
}

#[tokio::test]
async fn reopen_resumes_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    {
        let log = open(dir.path(), Durability::Always);
        for n in 0..3 {
            log.append(open_event(n)).await.unwrap();
        }
    }
    let head = verify_files(&chain_files(&path)).unwrap().head_hash;
    let log = open(dir.path(), Durability::Always);
    assert_eq!(log.append(open_event(3)).await.unwrap(), 3);
    assert_eq!(log.append(open_event(4)).await.unwrap(), 4);
    let fourth: AuditRecord = serde_json::from_str(&lines(&path)[3]).unwrap();
    assert_eq!(fourth.prev, head);
    assert_eq!(verify_files(&chain_files(&path)).unwrap().records, 5);
}

#[tokio::test]
async fn a_close_record_alone_is_synced_within_close_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        close_sync: Duration::from_millis(20),
        ..config(dir.path(), Durability::Always)
    })
    .unwrap();
    log.append(open_event(0)).await.unwrap();
    assert_eq!(log.stats().syncs, 1, "an open record is fsynced at once");
    log.append(close_event(0)).await.unwrap();
    assert_eq!(
        log.stats().syncs,
        1,
        "a close record is answered once written, without an fsync of its own"
    );
    let written = lines(&dir.path().join("audit.log")).len();
    assert_eq!(written, 2, "written before it was answered");
    assert!(eventually(Duration::from_secs(30), || log.stats().syncs == 2).await);
    // Clean again: nothing more to sync until the next write.
    log.append(open_event(1)).await.unwrap();
    assert_eq!(log.stats().syncs, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Always);
    // Hold the writer on its first batch while 199 more appends queue up
    // behind it: they must then share fsyncs, whatever the machine's speed.
    let hold = log.hold();
    let first = {
        let log = log.clone();
        tokio::spawn(async move { log.append(open_event(0)).await })
    };
    hold.stalled().await;
    let tasks: Vec<_> = (1..200)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(open_event(n)).await })
        })
        .collect();
    while log.queued() < 199 {
        tokio::task::yield_now().await;
    }
    hold.release();
    let mut seqs = vec![first.await.unwrap().unwrap()];
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..200).collect::<Vec<u64>>());
    let stats = log.stats();
    assert_eq!(stats.records_written, 200);
    // One fsync for the held record, one for the 199 queued behind it.
    assert_eq!(
        stats.syncs, 2,
        "group commit should share fsyncs: {stats:?}"
    );
    let report = verify_files(&chain_files(&dir.path().join("audit.log"))).unwrap();
    assert_eq!(report.records, 200);
}

#[tokio::test]
async fn rotation_keeps_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let max = 2_000;
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: max,
        ..config(dir.path(), Durability::Always)
    })
    .unwrap();
    for n in 0..20 {
        log.append(open_event(n)).await.unwrap();
    }
    // Concurrent appends rotate inside one batch too.
    let tasks: Vec<_> = (20..60)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(open_event(n)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let files = chain_files(&path);
    assert!(files.len() > 5, "expected several rotations: {files:?}");
    assert_eq!(files.last(), Some(&path));
    assert_eq!(files[0], dir.path().join("audit.log.000001"));
    let mut last_hash = GENESIS_HASH.to_owned();
    for file in &files {
        assert!(
            std::fs::metadata(file).unwrap().len() <= max,
            "{file:?} too big"
        );
        let lines = lines(file);
        let first: AuditRecord = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            first.prev, last_hash,
            "{file:?} does not continue the chain"
        );
        let last: AuditRecord = serde_json::from_str(lines.last().unwrap()).unwrap();
        last_hash = last.hash;
    }
    let report = verify_files(&files).unwrap();
    assert_eq!(report.records, 60);
    assert_eq!(report.head_hash, last_hash);

    // Reopening continues after the newest record, numbering rotations on.
    drop(log);
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: max,
        ..config(dir.path(), Durability::Always)
    })
    .unwrap();
    for n in 60..80 {
        log.append(open_event(n)).await.unwrap();
    }
    let more = chain_files(&path);
    assert!(more.len() > files.len());
    assert_eq!(
        more[..files.len() - 1],
        files[..files.len() - 1],
        "old rotated files untouched"
    );
    assert_eq!(verify_files(&more).unwrap().records, 80);
}

#[tokio::test]
async fn resume_from_rotated_file_when_live_is_missing() {
    // A crash between rotating and writing leaves only rotated files.
    let dir = tempfile::tempdir().unwrap();
    let path = log_with(dir.path(), 4).await;
    std::fs::rename(&path, dir.path().join("audit.log.000001")).unwrap();
    let log = open(dir.path(), Durability::Always);
    assert_eq!(log.append(open_event(4)).await.unwrap(), 4);
    let files = chain_files(&path);
    assert_eq!(files.len(), 2);
    assert_eq!(verify_files(&files).unwrap().records, 5);
}

#[tokio::test]
async fn oversized_record_gets_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: 100,
        ..config(dir.path(), Durability::Always)
    })
    .unwrap();
    for n in 0..3 {
        log.append(open_event(n)).await.unwrap();
    }
    let files = chain_files(&path);
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| lines(f).len() == 1));
    assert_eq!(verify_files(&files).unwrap().records, 3);
}

#[tokio::test]
async fn interval_mode_appends_do_not_wait_for_fsync() {
    let dir = tempfile::tempdir().unwrap();
    // A period no test run reaches: any fsync would be an append's own.
    let log = open(dir.path(), Durability::Interval(Duration::from_secs(3600)));
    for n in 0..5 {
        assert_eq!(log.append(open_event(n)).await.unwrap(), n);
    }
    assert_eq!(log.stats().syncs, 0);
    log.sync().await.unwrap();
    assert_eq!(log.stats().syncs, 1);
}

#[tokio::test]
async fn interval_mode_syncs_in_background() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Interval(Duration::from_millis(50)));
    for n in 0..5 {
        assert_eq!(log.append(open_event(n)).await.unwrap(), n);
    }
    // The background fsync catches up without anyone asking.
    assert!(eventually(Duration::from_secs(30), || log.stats().syncs >= 1).await);
    assert_eq!(
        verify_files(&chain_files(&dir.path().join("audit.log")))
            .unwrap()
            .records,
        5
    );
}

#[tokio::test]
async fn none_mode_never_fsyncs_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::None);
    for n in 0..5 {
        log.append(open_event(n)).await.unwrap();
    }
    assert_eq!(log.stats().syncs, 0);
    // Written to the OS already: readable and valid before any fsync.
    assert_eq!(
        verify_files(&chain_files(&dir.path().join("audit.log")))
            .unwrap()
            .records,
        5
    );
    log.sync().await.unwrap();
    assert_eq!(log.stats().syncs, 1);
}

#[tokio::test]
async fn open_refuses_torn_or_edited_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_with(dir.path(), 3).await;
    let good = std::fs::read(&path).unwrap();

    std::fs::write(&path, &good[..good.len() - 20]).unwrap();
    let err = AuditLog::open(config(dir.path(), Durability::Always)).unwrap_err();
    assert!(
        matches!(&err, AuditError::Corrupt { reason, .. } if reason.contains("incomplete")),
        "{err}"
    );

    let mut lines = lines_of(&good);
    lines[2] = lines[2].replace("req-2", "req-9");
    write_lines(&path, &lines);
    let err = AuditLog::open(config(dir.path(), Durability::Always)).unwrap_err();
    assert!(
        matches!(&err, AuditError::Corrupt { reason, .. } if reason.contains("hash")),
        "{err}"
    );

    std::fs::write(&path, &good).unwrap();
    let log = open(dir.path(), Durability::Always);
    assert_eq!(log.append(open_event(3)).await.unwrap(), 3);
}

#[test]
fn invalid_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let zero_size = AuditConfig {
        max_file_bytes: 0,
        ..config(dir.path(), Durability::Always)
    };
    assert!(matches!(
        AuditLog::open(zero_size),
        Err(AuditError::Config(_))
    ));
    let zero_period = config(dir.path(), Durability::Interval(Duration::ZERO));
    assert!(matches!(
        AuditLog::open(zero_period),
        Err(AuditError::Config(_))
    ));
    let missing_dir = AuditConfig::new(dir.path().join("nope/audit.log"), Side::Client);
    assert!(matches!(
        AuditLog::open(missing_dir),
        Err(AuditError::Open { .. })
    ));
}

fn lines_of(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn none_and_interval_appenders_write_their_own_records() {
    for durability in [
        Durability::None,
        Durability::Interval(Duration::from_secs(3600)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), durability);
        for n in 0..5 {
            assert_eq!(log.append(open_event(n)).await.unwrap(), n);
        }
        let stats = log.stats();
        assert_eq!(stats.records_written, 5);
        if durability == Durability::None {
            // Nobody else touches the log: each found the file free.
            assert_eq!(stats.records_inline, 5);
        } else {
            // The first record leaves the log unsynced and wakes the
            // writer to start the fsync period; while it looks at the log
            // a later record may find it busy and take the queue.
            assert!(stats.records_inline >= 1, "{stats:?}");
        }
        assert_eq!(lines(&dir.path().join("audit.log")).len(), 5);
    }
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Always);
    log.append(open_event(0)).await.unwrap();
    assert_eq!(log.stats().records_inline, 0, "always goes through fsync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_own_writes_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::None);
    let tasks: Vec<_> = (0..400)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move {
                if n % 2 == 0 {
                    log.append(open_event(n)).await.map(Some)
                } else {
                    log.append_detached(&close_event(n));
                    Ok(None)
                }
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        if let Some(seq) = t.await.unwrap().unwrap() {
            seqs.push(seq);
        }
    }
    log.wait_written(400).await;
    log.sync().await.unwrap();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 200, "every waited-for record got its own seq");
    let report = verify_files(&chain_files(&dir.path().join("audit.log"))).unwrap();
    assert_eq!(report.records, 400);
}

#[tokio::test]
async fn held_writer_holds_records_appenders_would_write_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::None);
    let hold = log.hold();
    let pending = {
        let log = log.clone();
        tokio::spawn(async move { log.append(open_event(0)).await })
    };
    hold.stalled().await;
    assert_eq!(log.stats().records_written, 0, "nothing written while held");
    assert!(lines(&dir.path().join("audit.log")).is_empty());
    hold.release();
    assert_eq!(pending.await.unwrap().unwrap(), 0);
    assert_eq!(log.stats().records_inline, 0, "it went through the writer");
}

#[tokio::test]
async fn own_writes_leave_rotation_to_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: 100, // every record rotates
        ..config(dir.path(), Durability::None)
    })
    .unwrap();
    for n in 0..3 {
        assert_eq!(log.append(open_event(n)).await.unwrap(), n);
    }
    // The first fits the empty live file; the others need a rotation.
    assert_eq!(log.stats().records_inline, 1);
    let files = chain_files(&path);
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| lines(f).len() == 1));
    assert_eq!(verify_files(&files).unwrap().records, 3);
}
