//! The patched glommio's parks (vendor/glommio/JETCORE.md 10): an executor
//! that keeps a user timer armed across parks must still wake when it is
//! due, also when another executor's message woke it just before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

/// Iterations: each a sleep that a message from the other executor
/// interrupts at a varying point, so that over the run some parks fall just
/// as the kept timer fires.
const ROUNDS: u32 = 4000;

#[test]
fn a_sleep_interrupted_by_a_remote_wake_still_ends_when_due() {
    let (go_tx, go_rx) = shared_channel::new_bounded::<Duration>(4);
    let (poke_tx, poke_rx) = shared_channel::new_bounded::<u32>(4);
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Duration>();

    let stop_b = stop.clone();
    // B: told a delay, waits it out (spinning, so it is precise), then pokes A.
    let b = LocalExecutorBuilder::new(Placement::Unbound)
        .name("poker")
        .spawn(move || async move {
            let go = go_rx.connect().await;
            let poke = poke_tx.connect().await;
            while let Some(after) = go.recv().await {
                let until = Instant::now() + after;
                while Instant::now() < until && !stop_b.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                if poke.send(1).await.is_err() {
                    break;
                }
            }
        })
        .unwrap();

    // A: sleeps `d` while B pokes it somewhere between 0.5 d and 1.2 d; its
    // receive task drains the pokes.
    let a = LocalExecutorBuilder::new(Placement::Unbound)
        .name("sleeper")
        .spawn(move || async move {
            let go = go_tx.connect().await;
            let poke = poke_rx.connect().await;
            let drain = glommio::spawn_local(async move { while poke.recv().await.is_some() {} });
            let mut worst = Duration::ZERO;
            let mut seed = 0x9e37_79b9_u32;
            for _ in 0..ROUNDS {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let d = Duration::from_micros(40 + u64::from(seed % 160));
                let poke_at = d * (50 + seed % 70) / 100;
                go.send(poke_at).await.unwrap();
                let t = Instant::now();
                glommio::timer::sleep(d).await;
                worst = worst.max(t.elapsed().saturating_sub(d));
            }
            drop(go);
            drain.cancel().await;
            let _ = done_tx.send(worst);
        })
        .unwrap();

    // A lost timer leaves A asleep for good: nothing else wakes it.
    let worst = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a sleep never ended: its timer was lost");
    stop.store(true, Ordering::Relaxed);
    a.join().unwrap();
    b.join().unwrap();
    // Late by scheduling at worst, never by a lost timer woken only later.
    assert!(
        worst < Duration::from_secs(1),
        "a sleep ended {worst:?} late"
    );
}
