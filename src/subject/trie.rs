//! `SubjectTrie<T>`: subscriptions indexed by subject tokens (literal, `*`, `>`),
//! with a bounded match cache.
//!
//! Each level maps literal tokens to child nodes, plus at most one `*` child and one
//! `>` child. A match walks every branch the subject can take and collects plain
//! entries and queue-group members (grouped by queue name across branches, as
//! nats-server does). Results are cached per literal subject; any insert or remove
//! clears the cache, since interest changes are rare next to publishes.
//!
//! Invariant: the trie holds no empty nodes; a remove prunes its path.

use std::cell::Cell;
use std::rc::Rc;

use ahash::AHashMap;

use crate::limits::{MATCH_CACHE_ENTRIES_MAX, MATCH_CACHE_SWEEP_TO};

/// The members of one queue group that a subject matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMatch<T> {
    pub name: Box<[u8]>,
    pub members: Vec<T>,
}

/// Everything one subject matched: plain subscriptions and queue groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchResult<T> {
    pub plain: Vec<T>,
    pub queues: Vec<QueueMatch<T>>,
}

impl<T> MatchResult<T> {
    pub fn new() -> Self {
        MatchResult {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }
}

impl<T> Default for MatchResult<T> {
    fn default() -> Self {
        Self::new()
    }
}

struct Node<T> {
    literal: AHashMap<Box<[u8]>, Node<T>>,
    star: Option<Box<Node<T>>>,
    gt: Option<Box<Node<T>>>,
    plain: Vec<T>,
    queues: Vec<QueueMatch<T>>,
}

impl<T> Node<T> {
    fn new() -> Self {
        Node {
            literal: AHashMap::new(),
            star: None,
            gt: None,
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.gt.is_none()
            && self.plain.is_empty()
            && self.queues.is_empty()
    }
}

/// A subject index with a bounded match cache. Lives on one shard; not `Send`.
pub struct SubjectTrie<T> {
    root: Node<T>,
    len: usize,
    cache: AHashMap<Box<[u8]>, Rc<MatchResult<T>>>,
    /// Changes with every insert and removal: a match result taken at one
    /// generation holds until the next.
    generation: u64,
    /// Counters for monitoring (`/subsz`): plain cells, this shard's only.
    inserts: u64,
    removes: u64,
    lookups: Cell<u64>,
    hits: Cell<u64>,
}

/// A trie's counters, as `/subsz` reports them (nats-server's sublist stats).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrieStats {
    pub subscriptions: u64,
    pub cache: u64,
    pub inserts: u64,
    pub removes: u64,
    pub matches: u64,
    pub hits: u64,
    /// Largest and mean number of entries in a cached result.
    pub max_fanout: u64,
    pub avg_fanout: f64,
}

impl<T: Copy + Eq> Default for SubjectTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Eq> SubjectTrie<T> {
    pub fn new() -> Self {
        SubjectTrie {
            root: Node::new(),
            len: 0,
            cache: AHashMap::new(),
            generation: 0,
            inserts: 0,
            removes: 0,
            lookups: Cell::new(0),
            hits: Cell::new(0),
        }
    }

    pub fn stats(&self) -> TrieStats {
        let fanout = |r: &MatchResult<T>| {
            r.plain.len() + r.queues.iter().map(|q| q.members.len()).sum::<usize>()
        };
        let sizes: Vec<usize> = self.cache.values().map(|r| fanout(r)).collect();
        TrieStats {
            subscriptions: self.len as u64,
            cache: self.cache.len() as u64,
            inserts: self.inserts,
            removes: self.removes,
            matches: self.lookups.get(),
            hits: self.hits.get(),
            max_fanout: sizes.iter().copied().max().unwrap_or(0) as u64,
            avg_fanout: if sizes.is_empty() {
                0.0
            } else {
                sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
            },
        }
    }

    fn count(&self, hit: bool) {
        self.lookups.set(self.lookups.get() + 1);
        if hit {
            self.hits.set(self.hits.get() + 1);
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `entry` under a valid subscription subject, in `queue` if given.
    pub fn insert(&mut self, subject: &[u8], queue: Option<&[u8]>, entry: T) {
        let mut node = &mut self.root;
        for token in subject.split(|b| *b == b'.') {
            node = match token {
                b"*" => node.star.get_or_insert_with(|| Box::new(Node::new())),
                b">" => node.gt.get_or_insert_with(|| Box::new(Node::new())),
                _ => node.literal.entry(token.into()).or_insert_with(Node::new),
            };
        }
        match queue {
            None => node.plain.push(entry),
            Some(name) => match node.queues.iter_mut().find(|q| &*q.name == name) {
                Some(group) => group.members.push(entry),
                None => node.queues.push(QueueMatch {
                    name: name.into(),
                    members: vec![entry],
                }),
            },
        }
        self.len += 1;
        self.inserts += 1;
        self.cache.clear();
        self.generation += 1;
    }

    /// Calls `f` with every entry: its subject, its queue group, the entry.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Option<&[u8]>, &T)) {
        walk(&self.root, &mut Vec::new(), &mut f);
    }

    /// Removes `entry` from `subject`/`queue`; returns whether it was present.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, entry: T) -> bool {
        let tokens: Vec<&[u8]> = subject.split(|b| *b == b'.').collect();
        let removed = remove_at(&mut self.root, &tokens, queue, entry);
        if removed {
            self.len -= 1;
            self.removes += 1;
            self.cache.clear();
            self.generation += 1;
        }
        removed
    }

    /// All entries matching the literal `subject`, cached.
    pub fn matches(&mut self, subject: &[u8]) -> Rc<MatchResult<T>> {
        self.matches_caching(subject, true)
    }

    /// Like `matches`; with `cache` false a miss is not remembered (for
    /// one-off subjects such as reply inboxes, which would only churn it).
    pub fn matches_caching(&mut self, subject: &[u8], cache: bool) -> Rc<MatchResult<T>> {
        if let Some(hit) = self.cache.get(subject) {
            self.count(true);
            return hit.clone();
        }
        self.count(false);
        let mut result = MatchResult::new();
        // A subject with an empty token matches nothing (nats-server drops it).
        if !has_empty_token(subject) {
            self.match_into(subject, &mut result);
        }
        let result = Rc::new(result);
        if !cache {
            return result;
        }
        if self.cache.len() >= MATCH_CACHE_ENTRIES_MAX {
            self.sweep_cache();
        }
        self.cache.insert(subject.into(), result.clone());
        result
    }

    /// The cached match of `subject`, if there is one.
    pub fn cached_match(&self, subject: &[u8]) -> Option<Rc<MatchResult<T>>> {
        let hit = self.cache.get(subject).cloned();
        if hit.is_some() {
            self.count(true);
        }
        hit
    }

    /// `matches_caching` without the cache, into a caller's (reused) buffer.
    pub fn match_uncached(&self, subject: &[u8], result: &mut MatchResult<T>) {
        self.count(false);
        result.plain.clear();
        result.queues.clear();
        if !has_empty_token(subject) {
            self.match_into(subject, result);
        }
    }

    /// All entries matching the literal `subject`, into a caller's buffer, uncached.
    pub fn match_into(&self, subject: &[u8], result: &mut MatchResult<T>) {
        // Tokens on the stack: this runs for every uncached publish (acks).
        const ON_STACK: usize = 32;
        let mut tokens: [&[u8]; ON_STACK] = [&[]; ON_STACK];
        let mut n = 0;
        for t in subject.split(|b| *b == b'.') {
            if n == ON_STACK {
                let all: Vec<&[u8]> = subject.split(|b| *b == b'.').collect();
                collect(&self.root, &all, result);
                return;
            }
            tokens[n] = t;
            n += 1;
        }
        collect(&self.root, &tokens[..n], result);
    }

    fn sweep_cache(&mut self) {
        let excess = self.cache.len().saturating_sub(MATCH_CACHE_SWEEP_TO);
        let victims: Vec<Box<[u8]>> = self.cache.keys().take(excess).cloned().collect();
        for key in victims {
            self.cache.remove(&key);
        }
    }
}

fn has_empty_token(subject: &[u8]) -> bool {
    subject.is_empty()
        || subject[0] == b'.'
        || subject[subject.len() - 1] == b'.'
        || memchr::memmem::find(subject, b"..").is_some()
}

fn remove_at<T: Copy + Eq>(
    node: &mut Node<T>,
    tokens: &[&[u8]],
    queue: Option<&[u8]>,
    entry: T,
) -> bool {
    let Some((token, rest)) = tokens.split_first() else {
        return remove_entry(node, queue, entry);
    };
    match *token {
        b"*" => remove_boxed(&mut node.star, rest, queue, entry),
        b">" => remove_boxed(&mut node.gt, rest, queue, entry),
        literal => {
            let Some(child) = node.literal.get_mut(literal) else {
                return false;
            };
            let removed = remove_at(child, rest, queue, entry);
            if removed && child.is_empty() {
                node.literal.remove(literal);
            }
            removed
        }
    }
}

fn remove_boxed<T: Copy + Eq>(
    slot: &mut Option<Box<Node<T>>>,
    tokens: &[&[u8]],
    queue: Option<&[u8]>,
    entry: T,
) -> bool {
    let Some(child) = slot.as_mut() else {
        return false;
    };
    let removed = remove_at(child, tokens, queue, entry);
    if removed && child.is_empty() {
        *slot = None;
    }
    removed
}

fn remove_entry<T: Copy + Eq>(node: &mut Node<T>, queue: Option<&[u8]>, entry: T) -> bool {
    match queue {
        None => remove_from(&mut node.plain, entry),
        Some(name) => {
            let Some(at) = node.queues.iter().position(|q| &*q.name == name) else {
                return false;
            };
            let removed = remove_from(&mut node.queues[at].members, entry);
            if node.queues[at].members.is_empty() {
                node.queues.swap_remove(at);
            }
            removed
        }
    }
}

fn remove_from<T: Copy + Eq>(list: &mut Vec<T>, entry: T) -> bool {
    match list.iter().position(|e| *e == entry) {
        Some(at) => {
            list.swap_remove(at);
            true
        }
        None => false,
    }
}

fn collect<T: Copy + Eq>(node: &Node<T>, tokens: &[&[u8]], result: &mut MatchResult<T>) {
    let Some((token, rest)) = tokens.split_first() else {
        add_node(node, result);
        return;
    };
    if let Some(gt) = &node.gt {
        add_node(gt, result);
    }
    if let Some(star) = &node.star {
        collect(star, rest, result);
    }
    if let Some(child) = node.literal.get(*token) {
        collect(child, rest, result);
    }
}

fn add_node<T: Copy + Eq>(node: &Node<T>, result: &mut MatchResult<T>) {
    result.plain.extend_from_slice(&node.plain);
    for group in &node.queues {
        match result.queues.iter_mut().find(|q| q.name == group.name) {
            Some(existing) => existing.members.extend_from_slice(&group.members),
            None => result.queues.push(group.clone()),
        }
    }
}

/// `for_each`'s depth-first walk; `path` is the subject down to `node`.
fn walk<T>(node: &Node<T>, path: &mut Vec<u8>, f: &mut impl FnMut(&[u8], Option<&[u8]>, &T)) {
    for e in &node.plain {
        f(path, None, e);
    }
    for q in &node.queues {
        for m in &q.members {
            f(path, Some(&q.name), m);
        }
    }
    let children = node
        .literal
        .iter()
        .map(|(t, n)| (&t[..], n))
        .chain(node.star.as_deref().map(|n| (&b"*"[..], n)))
        .chain(node.gt.as_deref().map(|n| (&b">"[..], n)));
    for (token, child) in children {
        let len = path.len();
        if len > 0 {
            path.push(b'.');
        }
        path.extend_from_slice(token);
        walk(child, path, f);
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(subs: &[(&str, Option<&str>, u32)]) -> SubjectTrie<u32> {
        let mut t = SubjectTrie::new();
        for (subject, queue, id) in subs {
            t.insert(subject.as_bytes(), queue.map(str::as_bytes), *id);
        }
        t
    }

    fn check(t: &mut SubjectTrie<u32>, subject: &str, plain: &[u32], queues: &[(&str, &[u32])]) {
        let result = t.matches(subject.as_bytes());
        let mut got = result.plain.clone();
        got.sort();
        assert_eq!(got, plain, "plain matches of {subject}");
        let mut got_q: Vec<(String, Vec<u32>)> = result
            .queues
            .iter()
            .map(|q| {
                let mut m = q.members.clone();
                m.sort();
                (String::from_utf8(q.name.to_vec()).unwrap(), m)
            })
            .collect();
        got_q.sort();
        let want_q: Vec<(String, Vec<u32>)> = queues
            .iter()
            .map(|(n, m)| (n.to_string(), m.to_vec()))
            .collect();
        assert_eq!(got_q, want_q, "queue matches of {subject}");
    }

    #[test]
    fn literal_star_and_gt_match() {
        let mut t = trie(&[
            ("foo.bar", None, 1),
            ("foo.*", None, 2),
            ("foo.>", None, 3),
            (">", None, 4),
            ("*.bar", None, 5),
            ("foo.bar.baz", None, 6),
        ]);
        check(&mut t, "foo.bar", &[1, 2, 3, 4, 5], &[]);
        check(&mut t, "foo.bar.baz", &[3, 4, 6], &[]);
        check(&mut t, "foo", &[4], &[]);
        check(&mut t, "bar.baz", &[4], &[]);
    }

    #[test]
    fn queue_groups_merge_by_name_across_branches() {
        let mut t = trie(&[
            ("a.*", Some("q"), 1),
            ("a.b", Some("q"), 2),
            ("a.b", Some("r"), 3),
        ]);
        check(&mut t, "a.b", &[], &[("q", &[1, 2]), ("r", &[3])]);
    }

    #[test]
    fn remove_prunes_and_invalidates_cache() {
        let mut t = trie(&[("a.b", None, 1), ("a.*", Some("q"), 2)]);
        check(&mut t, "a.b", &[1], &[("q", &[2])]);
        assert!(t.remove(b"a.b", None, 1));
        assert!(!t.remove(b"a.b", None, 1));
        check(&mut t, "a.b", &[], &[("q", &[2])]);
        assert!(t.remove(b"a.*", Some(b"q"), 2));
        check(&mut t, "a.b", &[], &[]);
        assert!(t.root.is_empty());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn duplicate_entries_are_kept_and_removed_one_at_a_time() {
        let mut t = trie(&[("x", None, 7), ("x", None, 7)]);
        check(&mut t, "x", &[7, 7], &[]);
        assert!(t.remove(b"x", None, 7));
        check(&mut t, "x", &[7], &[]);
    }

    #[test]
    fn subjects_with_empty_tokens_match_nothing() {
        let mut t = trie(&[(">", None, 1), ("foo.*", None, 2)]);
        check(&mut t, "foo..bar", &[], &[]);
        check(&mut t, ".foo", &[], &[]);
        check(&mut t, "foo.", &[], &[]);
        check(&mut t, "foo.*", &[1, 2], &[]);
    }

    #[test]
    fn cache_stays_bounded() {
        let mut t = trie(&[(">", None, 1)]);
        for i in 0..(MATCH_CACHE_ENTRIES_MAX * 3) {
            t.matches(format!("s.{i}").as_bytes());
            assert!(t.cache.len() <= MATCH_CACHE_ENTRIES_MAX);
        }
    }

    #[test]
    fn for_each_visits_every_entry_with_its_subject() {
        let mut t: SubjectTrie<u32> = SubjectTrie::new();
        t.insert(b"a.b", None, 1);
        t.insert(b"a.*", Some(b"q"), 2);
        t.insert(b"a.>", None, 3);
        t.insert(b"c", None, 4);
        let mut seen = Vec::new();
        t.for_each(|s, q, e| seen.push((s.to_vec(), q.map(<[u8]>::to_vec), *e)));
        seen.sort_by_key(|x| x.2);
        let want: Vec<(Vec<u8>, Option<Vec<u8>>, u32)> = vec![
            (b"a.b".to_vec(), None, 1),
            (b"a.*".to_vec(), Some(b"q".to_vec()), 2),
            (b"a.>".to_vec(), None, 3),
            (b"c".to_vec(), None, 4),
        ];
        assert_eq!(seen, want);
    }
}
