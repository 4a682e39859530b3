use std::time::Duration;

use tokio::sync::oneshot;

use super::*;

/// A structural task: runs until closing.
fn structure(life: &Lifecycle) {
    let l = life.clone();
    life.spawn(async move { l.closing().await });
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_calls_then_closes_everything() {
    let life = Lifecycle::new();
    structure(&life);
    let (finish, finished) = oneshot::channel::<()>();
    let (saw_drain_tx, saw_drain) = oneshot::channel::<bool>();
    let l = life.clone();
    life.spawn_call(async move {
        l.draining().await;
        let _ = saw_drain_tx.send(l.is_closing());
        let _ = finished.await;
    });
    assert_eq!((life.tasks(), life.calls()), (2, 1));
    let shutdown = tokio::spawn({
        let life = life.clone();
        async move {
            life.shutdown(Duration::from_secs(30), std::future::pending())
                .await
        }
    });
    // The call saw the drain while closing had not begun.
    assert!(!saw_drain.await.unwrap());
    assert!(life.is_draining() && !life.is_closing());
    finish.send(()).unwrap();
    assert_eq!(shutdown.await.unwrap(), Ending::Drained);
    assert!(life.is_closing());
    assert_eq!((life.tasks(), life.calls()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn grace_deadline_cuts_calls_that_do_not_finish() {
    let life = Lifecycle::new();
    structure(&life);
    let l = life.clone();
    // A call that would run for ever but ends when closing begins.
    life.spawn_call(async move { l.closing().await });
    let started = tokio::time::Instant::now();
    let ending = life
        .shutdown(Duration::from_secs(30), std::future::pending())
        .await;
    assert_eq!(ending, Ending::GraceElapsed { calls: 1 });
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(life.tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn force_ends_the_wait_early() {
    let life = Lifecycle::new();
    let l = life.clone();
    life.spawn_call(async move { l.closing().await });
    let (force_tx, force_rx) = oneshot::channel::<()>();
    let shutdown = tokio::spawn({
        let life = life.clone();
        async move {
            life.shutdown(Duration::from_secs(3600), async {
                let _ = force_rx.await;
            })
            .await
        }
    });
    tokio::task::yield_now().await;
    force_tx.send(()).unwrap();
    assert_eq!(shutdown.await.unwrap(), Ending::Forced { calls: 1 });
    assert_eq!(life.tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn calls_spawned_while_draining_are_waited_for_too() {
    let life = Lifecycle::new();
    life.begin_drain();
    let (finish, finished) = oneshot::channel::<()>();
    life.spawn_call(async move {
        let _ = finished.await;
    });
    let shutdown = tokio::spawn({
        let life = life.clone();
        async move {
            life.shutdown(Duration::from_secs(30), std::future::pending())
                .await
        }
    });
    tokio::task::yield_now().await;
    assert!(!shutdown.is_finished());
    finish.send(()).unwrap();
    assert_eq!(shutdown.await.unwrap(), Ending::Drained);
}
