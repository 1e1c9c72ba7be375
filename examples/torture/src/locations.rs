//! Where every counted job of a queue is at one instant, and a sampler that checks, many times a
//! second, that no job is ever in two places at once.
//!
//! One Lua call reads every key of a queue that can hold a job: the pending list, the scheduled,
//! retry and dead sets, the suspects and poisoned lists, every worker's in-flight hash and
//! landing list. All of them share the queue's hash tag and the script runs atomically, so a
//! snapshot never sees a job half-moved. The script finds the workers' keys itself, with `KEYS`
//! (a standalone server allows a script that): keys listed beforehand could miss a worker that
//! appeared in between. An emptied entry of an in-flight hash is a run that finished and is being
//! settled, not a job in flight: it is counted apart.
//!
//! A job in no place at all has finished: its run was acknowledged (and its outcome is stored,
//! or about to be). So once a job was seen somewhere and then nowhere, it must never be seen
//! anywhere again: that would be a stale run putting it back.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::rig::{dead_job_id, job_id};

/// How many broken invariants a sampler describes (it counts them all).
const DESCRIBED: usize = 10;

/// Reads every place of one queue at once. KEYS: pending, scheduled, retry, dead, suspects,
/// poisoned; ARGV: the patterns of the in-flight hashes and of the landing lists.
static SNAPSHOT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local function lists(pattern, read)
  local found = {}
  for _, key in ipairs(redis.call('KEYS', pattern)) do
    found[#found + 1] = { key, read(key) }
  end
  return found
end
return {
  redis.call('LRANGE', KEYS[1], 0, -1),
  redis.call('ZRANGE', KEYS[2], 0, -1),
  redis.call('ZRANGE', KEYS[3], 0, -1),
  redis.call('ZRANGE', KEYS[4], 0, -1),
  redis.call('LRANGE', KEYS[5], 0, -1),
  redis.call('LRANGE', KEYS[6], 0, -1),
  lists(ARGV[1], function(key)
    -- A settled marker (field `s:<lease>`) stands for a run that just ended: read as ''.
    local entries = redis.call('HGETALL', key)
    local values = {}
    for i = 1, #entries, 2 do
      if string.sub(entries[i], 1, 2) == 's:' then
        values[#values + 1] = ''
      else
        values[#values + 1] = entries[i + 1]
      end
    end
    return values
  end),
  lists(ARGV[2], function(key) return redis.call('LRANGE', key, 0, -1) end),
}
",
    )
});

/// The reply of [`SNAPSHOT`]: the members of the queue-wide keys, then (key, members) of every
/// in-flight hash and every landing list.
type Reply = (
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<(String, Vec<String>)>,
    Vec<(String, Vec<String>)>,
);

/// A place a job can be in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// The pending list.
    Pending,
    /// The scheduled set.
    Scheduled,
    /// The retry set.
    Retry,
    /// The dead set.
    Dead,
    /// The suspects list.
    Suspects,
    /// The poisoned list.
    Poisoned,
    /// In flight on this worker (its in-flight hash).
    Active(String),
    /// Landed on this worker by a blocking wait, not adopted yet.
    Landing(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Pending => f.write_str("pending"),
            Place::Scheduled => f.write_str("scheduled"),
            Place::Retry => f.write_str("retry"),
            Place::Dead => f.write_str("dead"),
            Place::Suspects => f.write_str("suspects"),
            Place::Poisoned => f.write_str("poisoned"),
            Place::Active(worker) => write!(f, "active:{worker}"),
            Place::Landing(worker) => write!(f, "landing:{worker}"),
        }
    }
}

/// Where the counted jobs of some queues were (one atomic read per queue: a job never changes
/// queue).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every place each counted job was found in.
    pub places: HashMap<u64, Vec<Place>>,
    /// Emptied in-flight entries: runs that finished and are being settled.
    pub settling: u64,
}

impl Snapshot {
    /// Reads where the counted jobs of `queues` are, under dtask's key `prefix`.
    pub async fn take(
        conn: &mut ConnectionManager,
        prefix: &str,
        queues: &[String],
    ) -> redis::RedisResult<Snapshot> {
        let mut snapshot = Snapshot::default();
        for queue in queues {
            let key = |kind: &str| format!("{prefix}:{{{queue}}}:{kind}");
            let reply: Reply = SNAPSHOT
                .key(key("pending"))
                .key(key("scheduled"))
                .key(key("retry"))
                .key(key("dead"))
                .key(key("suspects"))
                .key(key("poisoned"))
                .arg(key("active:*"))
                .arg(key("landing:*"))
                .invoke_async(conn)
                .await?;
            snapshot.add(reply);
        }
        Ok(snapshot)
    }

    /// Adds the jobs of one queue's reply.
    fn add(&mut self, reply: Reply) {
        let (pending, scheduled, retry, dead, suspects, poisoned, active, landing) = reply;
        for (payloads, place) in [
            (pending, Place::Pending),
            (scheduled, Place::Scheduled),
            (retry, Place::Retry),
            (suspects, Place::Suspects),
            (poisoned, Place::Poisoned),
        ] {
            for payload in payloads {
                self.put(job_id(&payload), &place);
            }
        }
        for record in dead {
            self.put(dead_job_id(&record), &Place::Dead);
        }
        for (key, payloads) in active {
            let place = Place::Active(worker_of(&key));
            for payload in payloads {
                if payload.is_empty() {
                    self.settling += 1;
                } else {
                    self.put(job_id(&payload), &place);
                }
            }
        }
        for (key, payloads) in landing {
            let place = Place::Landing(worker_of(&key));
            for payload in payloads {
                self.put(job_id(&payload), &place);
            }
        }
    }

    fn put(&mut self, id: Option<u64>, place: &Place) {
        if let Some(id) = id {
            self.places.entry(id).or_default().push(place.clone());
        }
    }
}

/// The worker id at the end of an in-flight key (`<prefix>:{queue}:<kind>:<worker>`).
fn worker_of(key: &str) -> String {
    key.rsplit(':').next().unwrap_or_default().to_owned()
}

/// What a [`Sampler`] saw.
#[derive(Debug, Default)]
pub struct Samples {
    /// Snapshots taken.
    pub taken: u64,
    /// Snapshots that failed (Redis did not answer).
    pub failed: u64,
    /// The first error of a failed snapshot.
    pub first_error: Option<String>,
    /// Times a job was in two places or more in one snapshot.
    pub doubles: u64,
    /// Times a job was seen somewhere again after it had been nowhere (finished).
    pub reappeared: u64,
    /// The first broken invariants, described (all are counted above).
    pub violations: Vec<String>,
    /// Each job's places in the order seen, a repeat of the same place merged; None for nowhere
    /// (finished).
    pub history: HashMap<u64, Vec<Option<Place>>>,
    /// The most settled markers (runs that just ended) seen in one snapshot.
    pub max_settling: u64,
    /// The longest time between two snapshots.
    pub longest_gap: Duration,
}

impl Samples {
    /// Checks and records one snapshot.
    fn record(&mut self, snapshot: &Snapshot) {
        self.taken += 1;
        let n = self.taken;
        self.max_settling = self.max_settling.max(snapshot.settling);
        for (id, places) in &snapshot.places {
            if places.len() > 1 {
                self.doubles += 1;
                let list: Vec<String> = places.iter().map(Place::to_string).collect();
                self.describe(format!(
                    "snapshot {n}: job {id} in {} places at once: {}",
                    places.len(),
                    list.join(", ")
                ));
            }
            let history = self.history.entry(*id).or_default();
            let place = Some(places[0].clone());
            if history.last() == Some(&None) {
                self.reappeared += 1;
                let seen: Vec<String> = history.iter().map(describe_place).collect();
                self.describe(format!(
                    "snapshot {n}: job {id} is back in {} after it had finished (was: {})",
                    places[0],
                    seen.join(" -> ")
                ));
            }
            let history = self.history.entry(*id).or_default();
            if history.last() != Some(&place) {
                history.push(place);
            }
        }
        for (id, history) in &mut self.history {
            if !snapshot.places.contains_key(id) && history.last() != Some(&None) {
                history.push(None);
            }
        }
    }

    fn describe(&mut self, violation: String) {
        if self.violations.len() < DESCRIBED {
            self.violations.push(violation);
        }
    }

    /// The jobs that were ever in `place` (by kind: any worker's in-flight entry matches any
    /// other's).
    pub fn ever_in(&self, kind: &Place) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .history
            .iter()
            .filter(|(_, history)| {
                history
                    .iter()
                    .flatten()
                    .any(|p| std::mem::discriminant(p) == std::mem::discriminant(kind))
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// `pending`, `active:<worker>`, or `nowhere` (finished).
pub fn describe_place(place: &Option<Place>) -> String {
    place
        .as_ref()
        .map_or_else(|| "nowhere".to_owned(), Place::to_string)
}

/// Takes a [`Snapshot`] of some queues every period, in a task of its own, and checks each.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Samples>,
}

impl Sampler {
    /// Starts sampling `queues` (under `prefix`) every `period` through `conn`.
    pub fn start(
        conn: ConnectionManager,
        prefix: &str,
        queues: &[&str],
        period: Duration,
    ) -> Sampler {
        let (stop, stopped) = watch::channel(false);
        let queues: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
        let task = tokio::spawn(sample(conn, prefix.to_owned(), queues, period, stopped));
        Sampler { stop, task }
    }

    /// Takes a last snapshot, stops, and returns what was seen.
    pub async fn stop(self) -> Result<Samples, String> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| format!("the sampler failed: {e}"))
    }
}

async fn sample(
    mut conn: ConnectionManager,
    prefix: String,
    queues: Vec<String>,
    period: Duration,
    mut stopped: watch::Receiver<bool>,
) -> Samples {
    let mut samples = Samples::default();
    let mut last: Option<Instant> = None;
    loop {
        let done = stopped.has_changed().is_err() || *stopped.borrow();
        match Snapshot::take(&mut conn, &prefix, &queues).await {
            Ok(snapshot) => {
                if let Some(last) = last {
                    samples.longest_gap = samples.longest_gap.max(last.elapsed());
                }
                last = Some(Instant::now());
                samples.record(&snapshot);
            }
            Err(error) => {
                samples.failed += 1;
                samples.first_error.get_or_insert_with(|| error.to_string());
            }
        }
        if done {
            return samples;
        }
        tokio::select! {
            _ = stopped.changed() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}
