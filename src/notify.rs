//! `Notify`: a single-waiter wake-up flag for tasks on one shard (not `Send`).
//!
//! A notification that arrives while nobody waits is kept until the next wait, so
//! a wake-up between a check and a wait is never lost.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the waiter, or lets the next `wait` return at once.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits for a notification and consumes it.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// A broadcast wake-up for any number of waiters on one shard: `notify_all`
/// wakes everyone waiting now; waiters re-check their condition. Holds one
/// slot per wait in progress: a wait dropped unfinished (one side of a race
/// with a timer) gives its slot back, so waiters that come and go without a
/// notification never pile up.
#[derive(Default)]
pub struct Event {
    epoch: Cell<u64>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Event {
    pub fn notify_all(&self) {
        self.epoch.set(self.epoch.get() + 1);
        self.free.borrow_mut().clear();
        let slots = std::mem::take(&mut *self.slots.borrow_mut());
        for w in slots.into_iter().flatten() {
            w.wake();
        }
    }

    /// Waits for the next `notify_all`.
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            start: self.epoch.get(),
            slot: None,
        }
    }

    /// Waits in progress (for tests and bounds).
    pub fn waiting(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }
}

/// `Event::wait`'s future.
pub struct EventWait<'a> {
    event: &'a Event,
    start: u64,
    slot: Option<usize>,
}

impl std::future::Future for EventWait<'_> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let ev = self.event;
        if ev.epoch.get() != self.start {
            self.slot = None; // `notify_all` emptied the slots
            return Poll::Ready(());
        }
        let mut slots = ev.slots.borrow_mut();
        match self.slot {
            Some(i) => slots[i] = Some(cx.waker().clone()),
            None => {
                let i = match ev.free.borrow_mut().pop() {
                    Some(i) => i,
                    None => {
                        slots.push(None);
                        slots.len() - 1
                    }
                };
                slots[i] = Some(cx.waker().clone());
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        let ev = self.event;
        if let (Some(i), true) = (self.slot, ev.epoch.get() == self.start) {
            ev.slots.borrow_mut()[i] = None;
            ev.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn event_waits_dropped_unfinished_give_their_slot_back() {
        let ev = Event::default();
        block_on(async {
            for _ in 0..1000 {
                let mut w = Box::pin(ev.wait());
                assert!(poll_once(&mut w).await.is_none());
                drop(w);
            }
        });
        assert_eq!(ev.waiting(), 0);
        assert!(ev.slots.borrow().len() <= 1, "one slot reused, not 1000");
    }

    #[test]
    fn event_wakes_every_waiter_and_only_once() {
        let ev = Event::default();
        block_on(async {
            let mut a = Box::pin(ev.wait());
            let mut b = Box::pin(ev.wait());
            assert!(poll_once(&mut a).await.is_none());
            assert!(poll_once(&mut b).await.is_none());
            assert_eq!(ev.waiting(), 2);
            ev.notify_all();
            assert_eq!(ev.waiting(), 0);
            assert!(poll_once(&mut a).await.is_some());
            assert!(poll_once(&mut b).await.is_some());
            // A wait begun after the notification waits for the next one.
            let mut c = Box::pin(ev.wait());
            assert!(poll_once(&mut c).await.is_none());
            drop(a);
            drop(b);
            assert_eq!(ev.waiting(), 1);
        });
    }
}
