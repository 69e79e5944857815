//! The live connections of a server, by connection id, and the ids themselves.
//!
//! The registry is sharded: each shard is a small `RwLock<HashMap>`, so a message on one
//! connection never waits on a lock held for another. The message hot path of a
//! connection touches it only for `broadcast`.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

/// How many frames may wait for a connection's task to write them; a full queue answers
/// `@connections` POSTs with 429, as API Gateway does when a client's buffer is full.
pub const OUTBOUND_QUEUE: usize = 64;

/// Something the server wants written to one client.
#[derive(Debug)]
pub enum Outbound {
    /// A text message.
    Text(String),
    /// A binary message (an `@connections` POST whose body is not UTF-8).
    Binary(Bytes),
}

/// What is known about a live connection, shared with `@connections` GET.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// When the handshake was accepted.
    pub connected_at: SystemTime,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// Milliseconds since the Unix epoch of the last inbound message (or the connect).
    last_active_ms: AtomicU64,
}

impl ConnectionInfo {
    /// A connection that starts now.
    pub fn new(source_ip: IpAddr, user_agent: Option<String>) -> Self {
        let now = SystemTime::now();
        Self {
            connected_at: now,
            source_ip,
            user_agent,
            last_active_ms: AtomicU64::new(epoch_ms(now)),
        }
    }

    /// Records inbound activity now (`lastActiveAt`).
    pub fn touch(&self) {
        self.last_active_ms
            .store(epoch_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// When the connection last had inbound activity.
    pub fn last_active_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A registry entry: how to reach a connection's task, and what is known about it.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    /// Frames for the connection's task to write.
    pub outbound: mpsc::Sender<Outbound>,
    /// Notified by `@connections` DELETE: the task closes the connection with 1000. A
    /// permit is kept if the task is busy, so the request is never lost.
    pub close: Arc<Notify>,
    /// What `@connections` GET reports.
    pub info: Arc<ConnectionInfo>,
}

const SHARDS: usize = 16;

/// Live connections by id.
#[derive(Debug)]
pub struct Registry {
    shards: Vec<RwLock<HashMap<String, ConnectionHandle>>>,
    live: AtomicUsize,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            live: AtomicUsize::new(0),
        }
    }
}

impl Registry {
    fn shard(&self, id: &str) -> &RwLock<HashMap<String, ConnectionHandle>> {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        // The modulo keeps the index in range.
        &self.shards[(hasher.finish() as usize) % SHARDS]
    }

    /// Adds a connection.
    pub fn insert(&self, id: String, handle: ConnectionHandle) {
        let mut shard = self.shard(&id).write().unwrap_or_else(|e| e.into_inner());
        if shard.insert(id, handle).is_none() {
            self.live.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Removes a connection; `None` if it was already gone.
    pub fn remove(&self, id: &str) -> Option<ConnectionHandle> {
        let removed = self
            .shard(id)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if removed.is_some() {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// A live connection by id.
    pub fn get(&self, id: &str) -> Option<ConnectionHandle> {
        self.shard(id)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Every live connection's sender, collected so no lock is held while sending.
    pub fn senders(&self) -> Vec<mpsc::Sender<Outbound>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            all.extend(shard.values().map(|handle| handle.outbound.clone()));
        }
        all
    }
}

/// Makes connection and request ids that look like API Gateway's (16 base64 characters
/// ending in `=`) and are unique for the life of the server: 8 of the 11 encoded bytes are
/// a counter run through a bijective mixer, so two ids never collide, and 3 are random.
#[derive(Debug)]
pub struct IdGenerator {
    counter: AtomicU64,
    seed: u64,
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self {
            counter: AtomicU64::new(0),
            seed: rand::random(),
        }
    }
}

impl IdGenerator {
    /// A fresh id.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mixed = mix(n ^ self.seed);
        let mut bytes = [0u8; 11];
        bytes[..8].copy_from_slice(&mixed.to_be_bytes());
        let noise: [u8; 3] = rand::random();
        bytes[8..].copy_from_slice(&noise);
        // URL-safe alphabet [U]: an id never holds `/` or `+`, so it can go into an
        // `@connections` path as it is; the `=` may be sent raw or as `%3D`.
        base64::engine::general_purpose::URL_SAFE.encode(bytes)
    }
}

/// splitmix64's finaliser: a bijection on u64 whose output looks random.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_look_like_api_gateway_ids_and_are_unique() {
        let ids = IdGenerator::default();
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = ids.next_id();
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.ends_with('='), "{id}");
            assert!(
                id[..15]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id}"
            );
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn registry_counts_connections() {
        let registry = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        let info = Arc::new(ConnectionInfo::new([127, 0, 0, 1].into(), None));
        registry.insert(
            "a".into(),
            ConnectionHandle {
                outbound: tx.clone(),
                close: Arc::default(),
                info: info.clone(),
            },
        );
        registry.insert(
            "b".into(),
            ConnectionHandle {
                outbound: tx,
                close: Arc::default(),
                info,
            },
        );
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.senders().len(), 2);
        assert!(registry.remove("a").is_some());
        assert!(registry.remove("a").is_none());
        assert!(registry.get("b").is_some());
        assert!(registry.remove("b").is_some());
        assert_eq!(registry.len(), 0);
    }
}
