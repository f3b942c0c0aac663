//! The stream's side of its links (mirror, sources): their positions move
//! as copies commit, their events reach the links' task, and the positions
//! are saved before any record that holds one is destroyed.

use std::collections::BTreeSet;

use crate::js::store::slots::Loaded;
use crate::js::stream::positions::{LinkPos, Positions};
use crate::js::stream::{LinkEvent, LinkTag, Stream};

impl Stream {
    /// A copy committed: its link's position moves to its origin sequence.
    pub(super) fn link_committed(&self, tag: LinkTag) {
        let pos = LinkPos {
            seq: tag.seq,
            ident: tag.ident.to_string(),
        };
        self.positions
            .borrow_mut()
            .links
            .insert(tag.iname.to_string(), pos);
        self.positions_dirty.set(true);
        self.link_events.borrow_mut().push(LinkEvent::Committed {
            link: tag.link,
            seq: tag.seq,
            bytes: tag.bytes,
        });
        self.links_wake.notify();
    }

    /// A write failed with copies in it: their links start again from
    /// their committed positions.
    pub(super) fn links_failed(&self, links: BTreeSet<u32>) {
        if links.is_empty() {
            return;
        }
        let mut ev = self.link_events.borrow_mut();
        ev.extend(links.into_iter().map(|link| LinkEvent::Failed { link }));
        drop(ev);
        self.links_wake.notify();
    }

    /// Saves the positions (file streams) if they moved since the last save.
    pub async fn save_positions(&self) {
        let Some(slots) = &self.positions_slots else {
            return;
        };
        if !self.positions_dirty.replace(false) {
            return;
        }
        let mut p = self.positions.borrow().clone();
        p.stamp = self.ix.borrow().last_seq();
        if let Err(e) = slots.save(&p).await {
            self.positions_dirty.set(true);
            crate::error!(
                "JetStream stream '{}': saving source positions: {e}",
                self.name
            );
        }
    }

    /// Start-up: the saved positions, updated by what `found` saw in the
    /// records written after them.
    pub fn restore_positions(&self, found: crate::js::stream::positions::Found) {
        let saved = match &self.positions_slots {
            Some(slots) => match slots.load::<Positions>() {
                Loaded::State(p) => Some(p),
                Loaded::Damaged => {
                    crate::error!(
                        "JetStream stream '{}': no whole saved source positions; using the records'",
                        self.name
                    );
                    None
                }
                Loaded::None => None,
            },
            None => None,
        };
        *self.positions.borrow_mut() = Positions::merged(saved, found);
    }
}
