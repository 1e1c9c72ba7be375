//! Partitioned queues: one hot queue split over several Redis queues (`emails#0`, `emails#1`,
//! ...), whose hash slots are spread evenly over the slot space, so that on a Redis Cluster
//! they land on different masters. Owns which partition an enqueue goes to (round robin, or by
//! a key: one key, one partition, so that its jobs keep their order), which partitions a worker
//! serves, and which queue a partition belongs to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Error;

/// The most partitions a queue may have. Each costs every worker serving the queue a blocking
/// connection, and every event subscriber a subscription.
pub const MAX_PARTITIONS: u16 = 128;

/// The partitioned queues a client knows, and where its next round-robin enqueue goes.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    /// Per partitioned queue, the names of its partitions.
    names: HashMap<String, Vec<String>>,
    /// Per partition name, its queue.
    queue_of: HashMap<String, String>,
    /// Counts round-robin enqueues.
    next: AtomicUsize,
}

impl Partitions {
    /// The partitions the tasks of this binary declare, with those `configured` on the client
    /// (which win); an error when two tasks disagree, or a count is out of range.
    pub(crate) fn new(configured: &HashMap<String, u16>) -> Result<Partitions, Error> {
        let mut counts: HashMap<String, u16> = crate::registry::declared_partitions()?
            .into_iter()
            .map(|(queue, (count, _))| (queue.to_owned(), count))
            .collect();
        counts.extend(configured.iter().map(|(q, n)| (q.clone(), *n)));
        let mut partitions = Partitions::default();
        for (queue, count) in counts {
            if count == 0 || count > MAX_PARTITIONS {
                return Err(Error::Config(format!(
                    "queue `{queue}` cannot have {count} partitions: from 1 to {MAX_PARTITIONS}"
                )));
            }
            crate::enqueue::check_queue_name(&queue)?;
            if count == 1 {
                continue;
            }
            let names = partition_names(&queue, count);
            for name in &names {
                partitions.queue_of.insert(name.clone(), queue.clone());
            }
            partitions.names.insert(queue, names);
        }
        Ok(partitions)
    }

    /// The Redis queues a partitioned `queue` is made of: its partitions, then the queue
    /// itself, where jobs land from a producer that does not know the partitions (another
    /// language's, the CLI's, a binary from before the split); None when it has none.
    pub(crate) fn members(&self, queue: &str) -> Option<Vec<String>> {
        self.names.get(queue).map(|names| {
            let mut members = names.clone();
            members.push(queue.to_owned());
            members
        })
    }

    /// The Redis queue a job for `queue` goes to: `queue` itself, or one of its partitions,
    /// that of `key` when given (see [`key_hash`]), else the next in turn.
    pub(crate) fn route<'a>(&'a self, queue: &'a str, key: Option<u64>) -> &'a str {
        match self.names.get(queue) {
            None => queue,
            Some(names) => {
                let turn = match key {
                    Some(hash) => (hash % names.len() as u64) as usize,
                    None => self.next.fetch_add(1, Ordering::Relaxed) % names.len(),
                };
                &names[turn]
            }
        }
    }

    /// The Redis queues behind `queues`, each partitioned queue's members side by side (see
    /// [`Partitions::members`]), and how many each of `queues` has (1 for a queue without
    /// partitions).
    pub(crate) fn expand(&self, queues: &[String]) -> (Vec<String>, Vec<usize>) {
        let mut expanded = Vec::new();
        let mut sizes = Vec::with_capacity(queues.len());
        for queue in queues {
            match self.members(queue) {
                Some(members) => {
                    sizes.push(members.len());
                    expanded.extend(members);
                }
                None => {
                    expanded.push(queue.clone());
                    sizes.push(1);
                }
            }
        }
        (expanded, sizes)
    }

    /// The queue the Redis queue `name` belongs to: the partitioned queue when `name` is one of
    /// its partitions, else `name`.
    pub(crate) fn queue_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.queue_of.get(name).map_or(name, String::as_str)
    }
}

/// The queue a Redis queue's name says it belongs to: `emails` for a partition's name
/// (`emails#3`, `emails#3.12`), else the name itself. For labels, where no client's partitions
/// are at hand; a queue a user named like a partition is read as one.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn queue_of_name(name: &str) -> &str {
    let Some((queue, suffix)) = name.rsplit_once('#') else {
        return name;
    };
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let is_partition = match suffix.split_once('.') {
        Some((index, salt)) => digits(index) && digits(salt),
        None => digits(suffix),
    };
    if is_partition && !queue.is_empty() {
        queue
    } else {
        name
    }
}

/// The stable hash of a partition key (FNV-1a, 64 bits): the same in every process and
/// version, so that one key's jobs always go to one partition.
pub(crate) fn key_hash(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The names of `queue`'s `count` partitions: partition `i` is `queue#i` when that name's hash
/// slot lies in the `i`-th of `count` equal stretches of the slot space, else `queue#i.s` with
/// the first suffix `s` whose slot does. A cluster whose masters serve equal stretches (what
/// `redis-cli --cluster create` makes) so gets the partitions spread evenly over its masters.
fn partition_names(queue: &str, count: u16) -> Vec<String> {
    let count = usize::from(count);
    let stretch_of =
        |name: &str| usize::from(crate::broker::queue_slot(name)) * count / crate::broker::SLOTS;
    (0..count)
        .map(|i| {
            let plain = format!("{queue}#{i}");
            if stretch_of(&plain) == i {
                return plain;
            }
            (1..1_000_000)
                .map(|suffix| format!("{queue}#{i}.{suffix}"))
                .find(|name| stretch_of(name) == i)
                .unwrap_or(plain)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_the_slot_space_and_keys_stay_put() {
        let configured = HashMap::from([("emails".to_owned(), 8u16)]);
        let partitions = Partitions::new(&configured).expect("valid");
        let mut names = partitions.members("emails").expect("partitioned");
        assert_eq!(names.pop().as_deref(), Some("emails"));
        assert_eq!(names.len(), 8);
        for (i, name) in names.iter().enumerate() {
            assert!(name.starts_with(&format!("emails#{i}")), "{name}");
            let slot = usize::from(crate::broker::queue_slot(name));
            assert_eq!(slot * 8 / crate::broker::SLOTS, i, "{name} has slot {slot}");
            assert_eq!(partitions.queue_of(name), "emails");
        }
        // The names are the same in every process.
        assert_eq!(partition_names("emails", 8), names);
        assert!(partitions.members("billing").is_none());
        // One key, one partition; round robin visits each in turn.
        let key = key_hash("user-42");
        let first = partitions.route("emails", Some(key)).to_owned();
        assert!((0..20).all(|_| partitions.route("emails", Some(key)) == first));
        let turns: std::collections::HashSet<&str> =
            (0..8).map(|_| partitions.route("emails", None)).collect();
        assert_eq!(turns.len(), 8);
        assert_eq!(partitions.route("billing", None), "billing");
        let (expanded, sizes) = partitions.expand(&["billing".to_owned(), "emails".to_owned()]);
        assert_eq!(expanded.len(), 10);
        assert_eq!(sizes, [1, 9]);
        assert_eq!(expanded.last().map(String::as_str), Some("emails"));
        for name in &names {
            assert_eq!(queue_of_name(name), "emails", "{name}");
        }
        for plain in ["emails", "a#b", "#3", "x#3.", "x#.4", "x#3.4.5"] {
            assert_eq!(queue_of_name(plain), plain);
        }
        let bad = HashMap::from([("x".to_owned(), 0u16)]);
        assert!(Partitions::new(&bad).is_err());
    }
}
