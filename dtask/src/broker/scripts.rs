//! The Lua scripts behind the broker's multi-key operations, one file per operation (shared
//! pieces such as `settle.lua` are prepended), each hashed once and run with EVALSHA (redis-rs
//! reloads a script on NOSCRIPT).

use std::sync::LazyLock;

use redis::{Cmd, FromRedisValue, RedisResult, Script, ToRedisArgs};

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
script!(
    BURY,
    "settle.lua",
    "counts.lua",
    "outcomes.lua",
    "notify.lua",
    "bury.lua"
);
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

/// A call of a script on the per-job path (fetch, acknowledge), written straight into one
/// EVALSHA command: its keys first (all known when the call starts), then each argument as it
/// comes. redis-rs's `ScriptInvocation` keeps every argument in a buffer of its own and copies
/// them all again into the command: three allocations per job of an acknowledgement.
pub(crate) struct ScriptCall {
    script: &'static Script,
    cmd: Cmd,
}

impl ScriptCall {
    /// A call of `script` on `keys`, with room for `args` arguments of `bytes` bytes in all
    /// (an estimate: a command that grows copies itself at each doubling).
    pub(crate) fn new<K: ToRedisArgs>(
        script: &'static Script,
        keys: &[K],
        args: usize,
        bytes: usize,
    ) -> ScriptCall {
        let mut cmd = Cmd::with_capacity(3 + keys.len() + args, 64 + 64 * keys.len() + bytes);
        cmd.arg("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(key);
        }
        ScriptCall { script, cmd }
    }

    /// Adds `arg` (its `ARGV`).
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut ScriptCall {
        self.cmd.arg(arg);
        self
    }

    /// Runs the call; a server that does not know the script (restarted, flushed) is given it
    /// and asked again.
    pub(crate) async fn invoke_async<T: FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.script.load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            answer => answer,
        }
    }
}
