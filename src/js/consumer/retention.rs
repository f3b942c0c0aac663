//! Interest and workqueue retention: a message goes once no consumer needs it
//! (interest), or once a consumer that takes its subject acknowledged it
//! (workqueue); checked when acks settle messages, after commits, when a
//! consumer is removed, when an update makes a stream an interest one, and at
//! start-up.

use crate::js::consumer::Consumer;
use crate::js::stream::Stream;
use crate::js::types::stream_config::Retention;
use crate::limits::RETAIN_SWEEP_CHUNK;

/// Interest and workqueue retention: removes `seqs` that no consumer needs.
pub fn retain_check(stream: &Stream, seqs: impl IntoIterator<Item = u64>) {
    retain_where(stream, seqs, true);
}

/// `retain_check`; `uninterested_go`: an interest stream also drops what no
/// consumer is interested in (after an update, only when it has no consumer).
fn retain_where(stream: &Stream, seqs: impl IntoIterator<Item = u64>, uninterested_go: bool) {
    let retention = stream.cfg.borrow().retention();
    if retention == Retention::Limits {
        return;
    }
    let uninterested_go = uninterested_go && retention == Retention::Interest;
    let mut any = false;
    for seq in seqs {
        let subject = match stream.ix.borrow().subject_at(seq) {
            Some(s) => s.clone(),
            None => continue,
        };
        // Taps of local mirrors and sources count as consumers here.
        let needed = stream
            .consumers
            .borrow()
            .values()
            .any(|c| c.needs(seq, &subject))
            || stream
                .taps
                .borrow()
                .values()
                .any(|t| t.needs(seq, &subject));
        let interested = stream
            .consumers
            .borrow()
            .values()
            .any(|c| c.wants(&subject))
            || stream.taps.borrow().values().any(|t| t.wants(&subject));
        // A workqueue keeps what no consumer has taken yet.
        if !needed && (interested || uninterested_go) {
            any |= stream.remove_and_record(seq);
        }
    }
    if any {
        stream.wake_consumers();
    }
}

/// After a commit: wake consumers; interest streams drop new messages that no
/// consumer is interested in, and both interest and workqueue streams drop
/// messages every consumer already took from the preview.
pub fn after_commit(stream: &Stream) {
    let has_consumers = !stream.consumers.borrow().is_empty();
    if has_consumers {
        stream.wake_consumers();
    }
    let last = stream.ix.borrow().last_seq();
    let from = stream.interest_checked.get() + 1;
    stream.interest_checked.set(last);
    // Workqueue streams check too: a previewed message may have been acked
    // (or taken by an ack-none consumer) before its commit.
    let retention = stream.cfg.borrow().retention();
    if retention == Retention::Limits
        || (retention == Retention::WorkQueue && !has_consumers)
        || from > last
    {
        return;
    }
    let first = stream.ix.borrow().first_seq();
    retain_check(stream, from.max(first)..=last);
}

/// After a failed write: consumers forget what they delivered past the last
/// committed message (its sequences will be given to new messages).
pub fn rewind_all(stream: &Stream) {
    for c in stream.consumers.borrow().values() {
        c.clamp(&mut c.st.borrow_mut());
        c.st.borrow().check();
        c.wake.notify();
    }
}

/// After consumer `gone` of an interest stream was removed: the messages only
/// it still needed go. Only those at or after its lowest needed sequence can
/// be such, and they are checked a chunk at a time, so a consumer that was far
/// behind on a big stream does not stall the shard. (A workqueue keeps what a
/// removed consumer did not ack: nothing to do there.)
pub async fn retain_after_removal(stream: &Stream, gone: &Consumer) {
    if stream.cfg.borrow().retention() != Retention::Interest {
        return;
    }
    let from = gone.st.borrow().lowest_needed().0;
    retain_from(stream, from, true).await;
}

/// After an update made a limits stream an interest one, as nats-server does
/// then: with no consumer every message goes; otherwise those every
/// consumer taking them acked, and what none takes stays.
pub async fn retain_after_update(stream: &Stream, was: Retention) {
    if was != Retention::Interest && stream.cfg.borrow().retention() == Retention::Interest {
        let none = stream.consumers.borrow().is_empty() && stream.taps.borrow().is_empty();
        retain_from(stream, 0, none).await;
    }
}

/// Checks every message from `from` on, a chunk at a time (a big stream does
/// not stall the shard).
async fn retain_from(stream: &Stream, mut from: u64, uninterested_go: bool) {
    // Messages committed from now on are checked by `after_commit`.
    let end = stream.ix.borrow().last_seq();
    loop {
        let (first, last) = {
            let ix = stream.ix.borrow();
            (ix.first_seq(), ix.last_seq().min(end))
        };
        from = from.max(first);
        if from > last || stream.closed.get() {
            return;
        }
        let to = last.min(from + RETAIN_SWEEP_CHUNK - 1);
        retain_where(stream, from..=to, uninterested_go);
        from = to + 1;
        glommio::yield_if_needed().await;
    }
}

/// Sweeps a whole interest/workqueue stream (start-up: acks whose removals
/// did not reach the disk before a crash).
pub fn retain_sweep(stream: &Stream) {
    if stream.cfg.borrow().retention() == Retention::Limits {
        return;
    }
    let (first, last) = {
        let ix = stream.ix.borrow();
        (ix.first_seq(), ix.last_seq())
    };
    retain_check(stream, first..=last);
}
