//! Finding the Redis server that takes a synced zone's writes in the high-availability
//! deployments ([`super::sync::Topology`]): the replies of Sentinel and Redis Cluster that the
//! glue asks for, the hash slot of a zone, and the redirections a cluster node answers with.
//! Pure functions over parsed replies; every reply is the server's word, so nothing here
//! panics or trusts a length.
//!
//! All Redis keys of a zone share the hash tag `{zone}` ([`super::sync::redis_key`]): in a
//! cluster they live in one slot, on one shard, so one pipelined exchange reaches all of them.
//! Different zones spread over the shards.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::resp::Reply;

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
#[must_use]
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key, with Redis's hash tag rule: if the key has a `{` followed later by
/// a `}` with at least one byte between them, only those bytes are hashed.
#[must_use]
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open.checked_add(1)?..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| rest.get(..close)).flatten()
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// A server's address as a reply names it: `(host, port)`.
pub type Addr = (String, u16);

fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(Some(b)) | Reply::Simple(b) => {
            let s = std::str::from_utf8(b).ok()?;
            (s.len() <= 255).then(|| s.to_string())
        }
        _ => None,
    }
}

fn port(r: &Reply) -> Option<u16> {
    let p = match r {
        Reply::Int(n) => u16::try_from(*n).ok()?,
        other => text(other)?.parse().ok()?,
    };
    (p > 0).then_some(p)
}

/// The reply of `SENTINEL get-master-addr-by-name`: the master's address, or why there is
/// none.
pub fn master_addr(r: &Reply) -> Result<Addr, String> {
    match r {
        Reply::Array(None) | Reply::Bulk(None) => {
            Err("the sentinel does not know this master".into())
        }
        Reply::Array(Some(items)) => match items.as_slice() {
            [h, p] => match (text(h), port(p)) {
                (Some(h), Some(p)) if !h.is_empty() => Ok((h, p)),
                _ => Err("the sentinel answered a bad address".into()),
            },
            _ => Err("the sentinel answered a bad address".into()),
        },
        Reply::Error(e) => Err(format!(
            "the sentinel answered an error: {}",
            String::from_utf8_lossy(e)
        )),
        _ => Err("the sentinel answered something else than an address".into()),
    }
}

/// Whether a `ROLE` reply says the server is a master.
#[must_use]
pub fn is_master(r: &Reply) -> bool {
    match r {
        Reply::Array(Some(items)) => items.first().and_then(text).as_deref() == Some("master"),
        _ => false,
    }
}

/// The reply of `CLUSTER SLOTS`: the master serving `slot`. `None` when no range holds the
/// slot (the cluster is not fully configured). An empty host means "the node you asked"
/// (`seed`).
pub fn slot_owner(r: &Reply, slot: u16, seed: &Addr) -> Result<Option<Addr>, String> {
    let Reply::Array(Some(ranges)) = r else {
        return Err(match r {
            Reply::Error(e) => format!("CLUSTER SLOTS failed: {}", String::from_utf8_lossy(e)),
            _ => "CLUSTER SLOTS answered something else than slot ranges".into(),
        });
    };
    for range in ranges {
        let Reply::Array(Some(parts)) = range else {
            return Err("CLUSTER SLOTS answered a bad range".into());
        };
        let (Some(Reply::Int(lo)), Some(Reply::Int(hi)), Some(Reply::Array(Some(master)))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            return Err("CLUSTER SLOTS answered a bad range".into());
        };
        if !(*lo..=*hi).contains(&i64::from(slot)) {
            continue;
        }
        let host = master.first().and_then(text);
        let p = master.get(1).and_then(port);
        return match (host, p) {
            (Some(h), Some(p)) if h.is_empty() => Ok(Some((seed.0.clone(), p))),
            (Some(h), Some(p)) if h != "?" => Ok(Some((h, p))),
            _ => Err("CLUSTER SLOTS answered a node without a usable address".into()),
        };
    }
    Ok(None)
}

/// A cluster redirection (`-MOVED slot host:port` or `-ASK slot host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `MOVED`: the slot belongs to that node from now on (`ASK`: for this key, during a
    /// migration).
    pub moved: bool,
    pub to: Addr,
}

/// Reads a redirection from an error reply's text; `None` for any other error.
#[must_use]
pub fn redirect(err: &[u8]) -> Option<Redirect> {
    let s = std::str::from_utf8(err).ok()?;
    let mut words = s.split(' ');
    let moved = match words.next()? {
        "MOVED" => true,
        "ASK" => false,
        _ => return None,
    };
    let _slot: u16 = words.next()?.parse().ok()?;
    let to = words.next()?;
    let (h, p) = to.rsplit_once(':')?;
    let p: u16 = p.parse().ok()?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() || p == 0 || words.next().is_some() {
        return None;
    }
    Some(Redirect {
        moved,
        to: (h.to_string(), p),
    })
}

/// An address as a socket address, if its host is an IP address (servers announce IPs unless
/// configured to announce names).
#[must_use]
pub fn socket_addr(a: &Addr) -> Option<std::net::SocketAddr> {
    let ip: std::net::IpAddr = a.0.parse().ok()?;
    Some(std::net::SocketAddr::new(ip, a.1))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ratelimit::sync::redis_key;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        // Every key of a zone is in one slot.
        let a = key_slot(redis_key("api", [1, 2], 3).as_bytes());
        let b = key_slot(redis_key("api", [u64::MAX, 7], 99).as_bytes());
        assert_eq!((a, b), (key_slot(b"api"), key_slot(b"api")));
    }

    #[test]
    fn sentinel_replies() {
        let r = Reply::Array(Some(vec![bulk("10.0.0.5"), bulk("6380")]));
        assert_eq!(master_addr(&r).unwrap(), ("10.0.0.5".into(), 6380));
        assert!(master_addr(&Reply::Array(None)).is_err());
        assert!(master_addr(&Reply::Array(Some(vec![bulk("h")]))).is_err());
        assert!(master_addr(&Reply::Array(Some(vec![bulk("h"), bulk("0")]))).is_err());
        assert!(master_addr(&Reply::Error(b"ERR x".to_vec())).is_err());
        let role = Reply::Array(Some(vec![
            bulk("master"),
            Reply::Int(1),
            Reply::Array(Some(vec![])),
        ]));
        assert!(is_master(&role));
        let role = Reply::Array(Some(vec![
            bulk("slave"),
            bulk("10.0.0.5"),
            Reply::Int(6379),
        ]));
        assert!(!is_master(&role));
        assert!(!is_master(&Reply::Simple(b"master".to_vec())));
    }

    #[test]
    fn cluster_slots() {
        let node = |h: &str, p: i64| Reply::Array(Some(vec![bulk(h), Reply::Int(p), bulk("id")]));
        let range = |lo: i64, hi: i64, h: &str, p: i64| {
            Reply::Array(Some(vec![
                Reply::Int(lo),
                Reply::Int(hi),
                node(h, p),
                node("r", 1),
            ]))
        };
        let r = Reply::Array(Some(vec![
            range(0, 5460, "127.0.0.1", 7000),
            range(5461, 10922, "", 7001),
            range(10923, 16383, "127.0.0.1", 7002),
        ]));
        let seed = ("192.0.2.1".to_string(), 7005);
        assert_eq!(
            slot_owner(&r, 0, &seed).unwrap(),
            Some(("127.0.0.1".into(), 7000))
        );
        assert_eq!(
            slot_owner(&r, 5461, &seed).unwrap(),
            Some(("192.0.2.1".into(), 7001))
        );
        assert_eq!(
            slot_owner(&r, 16383, &seed).unwrap(),
            Some(("127.0.0.1".into(), 7002))
        );
        let partial = Reply::Array(Some(vec![range(0, 100, "h", 1)]));
        assert_eq!(slot_owner(&partial, 200, &seed).unwrap(), None);
        assert!(slot_owner(&Reply::Array(Some(vec![Reply::Int(1)])), 0, &seed).is_err());
        assert!(slot_owner(
            &Reply::Error(b"ERR This instance has cluster support disabled".to_vec()),
            0,
            &seed
        )
        .is_err());
        let unknown = Reply::Array(Some(vec![range(0, 16383, "?", 7000)]));
        assert!(slot_owner(&unknown, 1, &seed).is_err());
    }

    #[test]
    fn redirections() {
        assert_eq!(
            redirect(b"MOVED 3999 127.0.0.1:6381"),
            Some(Redirect {
                moved: true,
                to: ("127.0.0.1".into(), 6381)
            })
        );
        assert_eq!(
            redirect(b"ASK 3999 [::1]:6381"),
            Some(Redirect {
                moved: false,
                to: ("::1".into(), 6381)
            })
        );
        for bad in [
            &b"ERR x"[..],
            b"MOVED",
            b"MOVED x 1.2.3.4:1",
            b"MOVED 1 1.2.3.4",
            b"MOVED 1 :5",
            b"MOVED 1 h:0",
            b"MOVED 1 h:1 extra",
        ] {
            assert_eq!(redirect(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert!(socket_addr(&("::1".into(), 7)).is_some());
        assert!(socket_addr(&("redis.example".into(), 7)).is_none());
    }
}
