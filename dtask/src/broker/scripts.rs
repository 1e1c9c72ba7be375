//! The Lua scripts behind the broker's multi-key operations, one file per operation, each
//! hashed once and run with EVALSHA (redis-rs reloads a script on NOSCRIPT).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
}

script!(FETCH, "fetch.lua");
script!(RETRY, "retry.lua");
script!(BURY, "bury.lua");
script!(FORWARD_DUE, "forward_due.lua");
script!(REQUEUE_INFLIGHT, "requeue_inflight.lua");
script!(HEARTBEAT, "heartbeat.lua");
