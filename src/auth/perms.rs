//! A user's permissions, checked as nats-server checks them, and the
//! per-connection state that keeps the checks off the publish path's cost:
//! a bounded cache of publish decisions and the replies a user may send
//! under `allow_responses`.

use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;

use crate::config_file::auth::{Permissions, ResponsePermission, SubjectPermission};
use crate::subject;

/// Publish decisions a connection remembers (nats-server's bound); when full,
/// the cache is emptied and fills again.
pub const PUB_CACHE_MAX: usize = 128;
/// Replies a connection may still send under `allow_responses`; when full,
/// expired and then the oldest are dropped.
pub const REPLIES_MAX: usize = 4096;

/// One entry of an allow or deny list: a subject (wildcards allowed) and,
/// for subscriptions, an optional queue group.
#[derive(Debug)]
struct Entry {
    subject: Vec<u8>,
    queue: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Rule {
    allow: Option<Vec<Entry>>,
    deny: Vec<Entry>,
}

fn entries(list: &[String]) -> Vec<Entry> {
    list.iter()
        .map(|s| {
            let mut parts = s.split_whitespace();
            Entry {
                subject: parts.next().unwrap_or("").as_bytes().to_vec(),
                queue: parts.next().map(|q| q.as_bytes().to_vec()),
            }
        })
        .collect()
}

impl Rule {
    fn new(p: &SubjectPermission) -> Rule {
        Rule {
            allow: p.allow.as_deref().map(entries),
            deny: entries(&p.deny),
        }
    }
}

/// What a user may publish and subscribe to.
#[derive(Debug, Default)]
pub struct Perms {
    publish: Option<Rule>,
    subscribe: Option<Rule>,
    pub responses: Option<ResponsePermission>,
    /// As configured (a leaf connection's INFO repeats them to the leaf).
    pub config: Permissions,
}

impl Perms {
    pub fn new(p: &Permissions) -> Perms {
        let mut perms = Perms {
            publish: p.publish.as_ref().map(Rule::new),
            subscribe: p.subscribe.as_ref().map(Rule::new),
            responses: p.allow_responses.clone(),
            config: p.clone(),
        };
        // nats-server: allowing responses without publish permissions means
        // publishing nothing else.
        if perms.responses.is_some() && perms.publish.is_none() {
            perms.publish = Some(Rule {
                allow: Some(Vec::new()),
                deny: Vec::new(),
            });
        }
        perms
    }

    /// May the user publish to the literal `subject`?
    pub fn may_publish(&self, subject: &[u8]) -> bool {
        let Some(r) = &self.publish else {
            return true;
        };
        let allowed = r
            .allow
            .as_ref()
            .is_none_or(|a| a.iter().any(|e| subject::matches(&e.subject, subject)));
        allowed && !r.deny.iter().any(|e| subject::matches(&e.subject, subject))
    }

    /// May the user subscribe to `sub`, in `queue`? As nats-server decides:
    /// the subscription's subject is matched, read literally (so `*` in an
    /// allow entry also takes a `>` token), against the plain entries; when
    /// entries with a queue group match too, the queue decides. A
    /// subscription that only overlaps a deny entry is allowed, and what it
    /// would receive on denied subjects is held back (`delivery_denied`).
    pub fn may_subscribe(&self, sub: &[u8], queue: Option<&[u8]>) -> bool {
        let Some(r) = &self.subscribe else {
            return true;
        };
        let mut allowed = true;
        if let Some(allow) = &r.allow {
            allowed = allow
                .iter()
                .any(|e| e.queue.is_none() && subject::matches(&e.subject, sub));
            if let Some(q) = queue {
                if let Some(m) = queue_match(allow, sub, q) {
                    allowed = m;
                }
            }
        }
        if allowed && !r.deny.is_empty() {
            allowed = !r
                .deny
                .iter()
                .any(|e| e.queue.is_none() && subject::matches(&e.subject, sub));
            if let Some(q) = queue {
                if let Some(m) = queue_match(&r.deny, sub, q) {
                    allowed = !m;
                }
            }
        }
        allowed
    }

    /// Whether a subscription on `sub` can receive a subject its deny list
    /// holds back (it is a wildcard overlapping a deny entry).
    pub fn needs_delivery_check(&self, sub: &[u8]) -> bool {
        self.subscribe.as_ref().is_some_and(|r| {
            r.deny
                .iter()
                .any(|e| e.queue.is_none() && subject::overlaps(&e.subject, sub))
        })
    }

    /// A message on the literal `subject` must not be delivered.
    pub fn delivery_denied(&self, subject: &[u8]) -> bool {
        self.subscribe.as_ref().is_some_and(|r| {
            r.deny
                .iter()
                .any(|e| e.queue.is_none() && subject::matches(&e.subject, subject))
        })
    }
}

/// Whether `queue` is among the queue groups of the entries matching `sub`
/// (None: no entry with a queue group matches). Queue names match exactly,
/// or as subjects when the entry's name has wildcards (nats-server's rule).
fn queue_match(list: &[Entry], sub: &[u8], queue: &[u8]) -> Option<bool> {
    let mut any = false;
    for e in list {
        let Some(q) = &e.queue else { continue };
        if !subject::matches(&e.subject, sub) {
            continue;
        }
        any = true;
        let wild = q.split(|b| *b == b'.').any(|t| t == b"*" || t == b">");
        if q.as_slice() == queue || (wild && subject::is_subset(queue, q)) {
            return Some(true);
        }
    }
    any.then_some(false)
}

/// A connection's permission state: its user's `Perms`, the publish cache,
/// and the replies it may send.
#[derive(Debug)]
pub struct ConnPerms {
    pub perms: std::sync::Arc<Perms>,
    cache: AHashMap<Bytes, bool>,
    replies: AHashMap<Bytes, (u32, Instant)>,
}

impl ConnPerms {
    pub fn new(perms: std::sync::Arc<Perms>) -> ConnPerms {
        ConnPerms {
            perms,
            cache: AHashMap::new(),
            replies: AHashMap::new(),
        }
    }

    /// May this connection publish to `subject` now? A cached decision, or a
    /// reply it was allowed to send.
    pub fn may_publish(&mut self, subject: &Bytes) -> bool {
        let allowed = match self.cache.get(subject) {
            Some(a) => *a,
            None => {
                let a = self.perms.may_publish(subject);
                if self.cache.len() >= PUB_CACHE_MAX {
                    self.cache.clear();
                }
                self.cache.insert(subject.clone(), a);
                a
            }
        };
        allowed || self.take_reply(subject)
    }

    fn take_reply(&mut self, subject: &Bytes) -> bool {
        let Some(resp) = &self.perms.responses else {
            return false;
        };
        let expires = resp.expires;
        let Some((left, at)) = self.replies.get_mut(subject) else {
            return false;
        };
        if !expires.is_zero() && at.elapsed() > expires {
            self.replies.remove(subject);
            return false;
        }
        *left -= 1;
        if *left == 0 {
            self.replies.remove(subject);
        }
        true
    }

    /// A request with reply subject `reply` was delivered to this connection:
    /// with `allow_responses`, it may answer it.
    pub fn delivered_request(&mut self, reply: &[u8]) {
        let Some(resp) = &self.perms.responses else {
            return;
        };
        let (max, expires) = (resp.max, resp.expires);
        if self.replies.len() >= REPLIES_MAX {
            self.prune(expires);
        }
        self.replies
            .insert(Bytes::copy_from_slice(reply), (max, Instant::now()));
    }

    /// Drops expired replies, then the older half if still full.
    fn prune(&mut self, expires: Duration) {
        if !expires.is_zero() {
            self.replies.retain(|_, (_, at)| at.elapsed() <= expires);
        }
        if self.replies.len() >= REPLIES_MAX {
            let mut ages: Vec<Instant> = self.replies.values().map(|(_, at)| *at).collect();
            ages.sort();
            let cut = ages[ages.len() / 2];
            self.replies.retain(|_, (_, at)| *at > cut);
        }
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn perms(p: &str) -> Perms {
        let top = crate::conf::parse_str(&format!("p {{ {p} }}"), "t.conf").unwrap();
        Perms::new(&crate::config_file::auth::permissions("p", &top[0].1).unwrap())
    }

    #[test]
    fn publish_allow_and_deny_with_wildcards() {
        let p = perms(
            "publish: { allow: [\"orders.>\", \"$JS.API.INFO\"], deny: \"orders.secret.*\" }",
        );
        assert!(p.may_publish(b"orders.new"));
        assert!(p.may_publish(b"$JS.API.INFO"));
        assert!(!p.may_publish(b"orders.secret.x"));
        assert!(!p.may_publish(b"$JS.API.STREAM.CREATE.X"));
        let p = perms("publish: \"a.*\"");
        assert!(p.may_publish(b"a.b") && !p.may_publish(b"a.b.c"));
        let p = perms("subscribe: \">\"");
        assert!(p.may_publish(b"anything"), "no publish rule: all allowed");
    }

    #[test]
    fn subscribe_covers_overlaps_and_queues() {
        let p = perms("subscribe: { allow: [\"a.>\", \"q.x g1\", \"c.*\"], deny: [\"a.secret\"] }");
        assert!(p.may_subscribe(b"a.b", None));
        assert!(p.may_subscribe(b"a.*", None), "inside a.>");
        assert!(!p.may_subscribe(b">", None), "wider than any allow");
        assert!(!p.may_subscribe(b"a.secret", None));
        assert!(p.may_subscribe(b"q.x", Some(b"g1")));
        assert!(!p.may_subscribe(b"q.x", Some(b"g2")));
        assert!(!p.may_subscribe(b"q.x", None));
        // Read literally, as nats-server does: `c.*` takes the token `>`.
        assert!(p.may_subscribe(b"c.>", None));
        // a.* overlaps the deny: allowed, but a.secret is held back.
        assert!(p.needs_delivery_check(b"a.*"));
        assert!(!p.needs_delivery_check(b"a.b"));
        assert!(p.delivery_denied(b"a.secret") && !p.delivery_denied(b"a.b"));
        // A queue deny entry refuses only that queue.
        let p = perms("subscribe: { allow: \">\", deny: \"d.* g1\" }");
        assert!(p.may_subscribe(b"d.x", None) && p.may_subscribe(b"d.x", Some(b"g2")));
        assert!(!p.may_subscribe(b"d.x", Some(b"g1")));
    }

    #[test]
    fn responses_are_allowed_as_many_times_as_configured() {
        let p = perms("allow_responses: { max: 2 }");
        let mut c = ConnPerms::new(std::sync::Arc::new(p));
        let reply = Bytes::from_static(b"_INBOX.abc");
        assert!(!c.may_publish(&reply), "no request received yet");
        assert!(!c.may_publish(&Bytes::from_static(b"other")));
        c.delivered_request(&reply);
        assert!(c.may_publish(&reply));
        assert!(c.may_publish(&reply));
        assert!(!c.may_publish(&reply), "max 2");
        for i in 0..(REPLIES_MAX + 10) {
            c.delivered_request(format!("r.{i}").as_bytes());
        }
        assert!(c.replies.len() <= REPLIES_MAX);
    }
}
