//! The Lua scripts behind the broker's multi-key operations, one file per operation (shared
//! pieces such as `settle.lua` are prepended), each hashed once and run with EVALSHA (redis-rs
//! reloads a script on NOSCRIPT).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $($file:literal),+) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!($(include_str!(concat!("lua/", $file)), "\n"),+)));
    };
}

script!(LAPSED, "lapsed.lua");
script!(TIME, "time.lua");
script!(FETCH, "lease.lua", "rate.lua", "limits.lua", "fetch.lua");
script!(ADMIT, "rate.lua", "limits.lua", "admit.lua");
script!(ADOPT, "lease.lua", "rate.lua", "adopt.lua");
script!(
    ACK,
    "settle.lua",
    "outcomes.lua",
    "counts.lua",
    "notify.lua",
    "ack.lua"
);
script!(NOTIFY_FINISHED, "notify.lua", "notify_finished.lua");
script!(RETRY, "settle.lua", "counts.lua", "retry.lua");
script!(BURY, "settle.lua", "counts.lua", "bury.lua");
script!(BURY_POISONED, "settle.lua", "bury_poisoned.lua");
script!(SET_PASSING, "outcomes.lua", "set_passing.lua");
script!(SET_OUTCOMES, "outcomes.lua", "set_outcomes.lua");
script!(FORWARD_DUE, "forward_due.lua");
script!(REQUEUE_INFLIGHT, "requeue_inflight.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(RECLAIM, "reclaim.lua");
script!(REVIVE, "revive.lua");
script!(PURGE, "purge.lua");
script!(CANCEL, "cancel.lua");
script!(CANCEL_RUNNING, "cancel_running.lua");
script!(FIND, "find.lua");
script!(TICK, "tick.lua");
script!(PERIODIC_STATE, "periodic_state.lua");
script!(ENQUEUE_UNIQUE, "enqueue_unique.lua");
script!(RELEASE_UNIQUE, "release_unique.lua");
script!(SPAWN, "spawn.lua");
script!(CLAIM_ERRANDS, "claim_errands.lua");
script!(MARK_GROUP, "mark_group.lua");
script!(GROUP_MEMBER, "group_member.lua");
#[cfg(feature = "testing")]
script!(LEFT_TO_RUN, "left_to_run.lua");
