//! Commands between shards (`JsCmd`): applying them on the receiving shard,
//! broadcasting catalogue changes, and gathers (a listing or account info
//! assembled from every shard's part).

use std::rc::Rc;

use crate::js::types::catalog::{CatalogEntry, GatherAsk, GatherPart};
use crate::js::types::errors::ApiError;
use crate::js::{api, Js};
use crate::shard::msg::{JsCmd, ShardMsg};

impl Js {
    /// Applies one command addressed to this shard.
    pub(crate) async fn on_cmd(self: Rc<Self>, cmd: JsCmd) {
        match cmd {
            JsCmd::Catalog { name, entry } => {
                let created = entry.is_some() && !self.catalog.borrow().contains_key(&name);
                match entry {
                    Some(e) => {
                        self.catalog.borrow_mut().insert(name.clone(), *e);
                    }
                    None => {
                        self.catalog.borrow_mut().remove(&name);
                    }
                }
                self.catalog_changed(&name, created);
            }
            JsCmd::Create { entry, reply } => self.create_owned(*entry, reply).await,
            JsCmd::CreateSame { name, reply } => {
                self.made_ready(&name).await;
                match self.stream(&name) {
                    Some(s) => {
                        let info =
                            api::info::stream_info(&self, &s, "stream_create_response", None, true);
                        self.shard.reply(&reply, None, &info);
                    }
                    None => api::reply_err(
                        &self,
                        &reply,
                        "stream_create_response",
                        &ApiError::stream_not_found(),
                    ),
                }
                self.shard.flush_mesh().await;
            }
            JsCmd::Update { entry, reply } => self.update_owned(*entry, reply).await,
            JsCmd::Delete { name, reply } => self.delete_owned(&name, reply).await,
            JsCmd::Forget { name } => {
                assert_eq!(self.shard.id, 0, "only the coordinator forgets streams");
                self.catalog.borrow_mut().remove(&name);
                self.broadcast_catalog(&name, None);
                self.catalog_changed(&name, false);
            }
            JsCmd::Gather { id, ask } => {
                let part = api::info::gather_part(&self, &ask);
                self.send_cmd(0, JsCmd::GatherPart { id, part });
            }
            JsCmd::TapOpen(_)
            | JsCmd::TapOpened { .. }
            | JsCmd::TapData { .. }
            | JsCmd::TapCredit { .. }
            | JsCmd::TapClose { .. }
            | JsCmd::TapError { .. }
            | JsCmd::LeafUp => unreachable!("tap traffic is handled in place"),
            JsCmd::GatherPart { id, part } => {
                assert_eq!(self.shard.id, 0, "only the coordinator gathers");
                self.gathers.part(id, part);
            }
        }
    }

    /// This shard's catalogue replica changed for stream `name` (`created`:
    /// it is new): links waiting for it try now, and origins owned here
    /// update what they hold back for local targets.
    pub fn catalog_changed(&self, name: &str, created: bool) {
        if created {
            self.origin_appeared(name);
        }
        self.sync_holds();
    }

    /// Broadcasts a catalogue change from the coordinator (None = removed).
    pub fn broadcast_catalog(&self, name: &str, entry: Option<&CatalogEntry>) {
        if let Some(mesh) = &self.shard.mesh {
            mesh.broadcast(|| {
                ShardMsg::Js(Box::new(JsCmd::Catalog {
                    name: name.to_string(),
                    entry: entry.map(|e| Box::new(e.clone())),
                }))
            });
        }
    }

    /// Asks every shard for its part (stream infos or usage) and collects
    /// them, this shard's first. A shard that does not answer within
    /// `GATHER_TIMEOUT` is left out.
    pub async fn gather(&self, ask: GatherAsk) -> Vec<GatherPart> {
        let mut parts = vec![api::info::gather_part(self, &ask)];
        let peers = usize::from(self.shard.count) - 1;
        if peers == 0 {
            return parts;
        }
        let id = self.gathers.open(peers);
        if let Some(mesh) = &self.shard.mesh {
            mesh.broadcast(|| {
                ShardMsg::Js(Box::new(JsCmd::Gather {
                    id,
                    ask: ask.clone(),
                }))
            });
        }
        self.shard.flush_mesh().await;
        parts.extend(self.gathers.wait(id).await);
        parts
    }
}
