//! Fail closed: a record that cannot be made durable is refused, leaves no
//! trace in the chain, consumes no seq, and the log recovers by itself.

use std::process::Command;
use std::sync::atomic::Ordering;

use super::*;
use crate::audit::{chain_files, verify_files, AuditError};

fn records_in(dir: &Path) -> u64 {
    verify_files(&chain_files(&dir.join("audit.log")))
        .unwrap()
        .records
}

#[tokio::test]
async fn torn_write_is_rolled_back_and_log_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Always);
    for n in 0..3 {
        log.append(open_event(n)).await.unwrap();
    }
    let len = std::fs::metadata(dir.path().join("audit.log"))
        .unwrap()
        .len();

    // The disk takes half the line, then fails.
    log.faults().partial_writes.store(true, Ordering::SeqCst);
    log.faults().fail_writes.store(2, Ordering::SeqCst);
    for n in 3..5 {
        let err = log.append(open_event(n)).await.unwrap_err();
        assert!(
            matches!(&err, AuditError::Unavailable(m) if m.contains("write failed")),
            "{err}"
        );
        assert!(!log.healthy());
        assert!(log.last_error().unwrap().contains("injected write failure"));
        // No torn line: the file is exactly as before and still verifies.
        assert_eq!(
            std::fs::metadata(dir.path().join("audit.log"))
                .unwrap()
                .len(),
            len
        );
        assert_eq!(records_in(dir.path()), 3);
    }

    // The next append retries, continues the chain from the last durable
    // record, and makes the log healthy again.
    assert_eq!(log.append(open_event(5)).await.unwrap(), 3);
    assert!(log.healthy());
    assert!(log.last_error().is_some(), "the last failure stays visible");
    assert_eq!(records_in(dir.path()), 4);
    let stats = log.stats();
    assert_eq!((stats.records_written, stats.failures), (4, 2));
}

#[tokio::test]
async fn failed_fsync_is_refused_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Always);
    log.append(open_event(0)).await.unwrap();
    log.faults().fail_syncs.store(1, Ordering::SeqCst);
    let err = log.append(open_event(1)).await.unwrap_err();
    assert!(
        matches!(&err, AuditError::Unavailable(m) if m.contains("fsync failed")),
        "{err}"
    );
    assert!(!log.healthy());
    // The written-but-not-durable record was cut off again.
    assert_eq!(lines(&dir.path().join("audit.log")).len(), 1);
    assert_eq!(log.append(open_event(2)).await.unwrap(), 1);
    assert!(log.healthy());
    assert_eq!(records_in(dir.path()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_inside_a_batch_leaves_a_contiguous_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Always);
    log.faults().sync_delay_ms.store(2, Ordering::SeqCst);
    for n in 0..10 {
        log.append(open_event(n)).await.unwrap();
    }
    log.faults().fail_syncs.store(1, Ordering::SeqCst);
    let tasks: Vec<_> = (10..110)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(open_event(n)).await })
        })
        .collect();
    let mut ok: Vec<u64> = (0..10).collect();
    let mut failed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(seq) => ok.push(seq),
            Err(AuditError::Unavailable(_)) => failed += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(failed >= 1, "the failed fsync fails its whole batch");
    ok.sort_unstable();
    let expected: Vec<u64> = (0..ok.len() as u64).collect();
    assert_eq!(ok, expected, "failed records consume no seq");
    assert_eq!(records_in(dir.path()), ok.len() as u64);
    // Whichever batches failed, the next record continues the chain.
    assert_eq!(log.append(open_event(110)).await.unwrap(), ok.len() as u64);
    assert!(log.healthy());
    assert_eq!(records_in(dir.path()), ok.len() as u64 + 1);
}

#[tokio::test]
async fn interval_mode_fsync_failure_is_visible_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::Interval(Duration::from_millis(10)));
    log.faults().fail_syncs.store(1, Ordering::SeqCst);
    log.append(open_event(0)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || !log.healthy()).await);
    assert!(log.last_error().unwrap().contains("fsync"));
    // While unhealthy, an append is acknowledged only after an fsync.
    let syncs = log.stats().syncs;
    assert_eq!(log.append(open_event(1)).await.unwrap(), 1);
    assert!(log.healthy());
    assert!(log.stats().syncs > syncs);
    assert_eq!(records_in(dir.path()), 2);
}

#[tokio::test]
async fn failed_rotation_is_refused_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: 100, // every record rotates
        ..config(dir.path(), Durability::Always)
    })
    .unwrap();
    log.append(open_event(0)).await.unwrap();
    log.faults().fail_rotations.store(1, Ordering::SeqCst);
    let err = log.append(open_event(1)).await.unwrap_err();
    assert!(
        matches!(&err, AuditError::Unavailable(m) if m.contains("rotation failed")),
        "{err}"
    );
    assert!(!log.healthy());
    assert_eq!(chain_files(&dir.path().join("audit.log")).len(), 1);
    assert_eq!(log.append(open_event(2)).await.unwrap(), 1);
    assert!(log.healthy());
    let files = chain_files(&dir.path().join("audit.log"));
    assert_eq!(files.len(), 2);
    assert_eq!(verify_files(&files).unwrap().records, 2);
}

/// A real full disk: a 64 KiB tmpfs. Needs root (or CAP_SYS_ADMIN), which
/// CI has; without it the test fails rather than passing unchecked.
#[tokio::test]
async fn real_disk_full_on_tmpfs() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        mounted,
        "cannot mount a tmpfs at {}: this test needs root (CI runs as root)",
        mnt.display()
    );
    let _unmount = Unmount(mnt.clone());

    // Space to give back later.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 16 * 1024]).unwrap();

    let log = open(&mnt, Durability::Always);
    let big = |n: u64| AuditEvent {
        path: format!("/{n}/{}", "p".repeat(900)),
        ..open_event(n)
    };
    let mut written = 0u64;
    let err = loop {
        match log.append(big(written)).await {
            Ok(seq) => {
                assert_eq!(seq, written);
                written += 1;
            }
            Err(e) => break e,
        }
        assert!(written < 1_000, "a 64 KiB tmpfs never filled up");
    };
    assert!(
        matches!(&err, AuditError::Unavailable(m) if m.contains("write failed")),
        "{err}"
    );
    assert!(!log.healthy());
    assert!(written > 10);
    // Still full: refused again, and the chain on disk is intact.
    assert!(log.append(big(written)).await.is_err());
    assert_eq!(records_in(&mnt), written);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(log.append(big(written)).await.unwrap(), written);
    assert!(log.healthy());
    assert_eq!(records_in(&mnt), written + 1);
    eprintln!("real_disk_full_on_tmpfs: ENOSPC after {written} records, recovered");
}

/// Unmounts on drop, lazily so a file still open cannot make it fail.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
