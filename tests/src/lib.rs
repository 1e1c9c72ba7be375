//! Shared pieces of dtask's integration tests: a redis-server per test, unique key prefixes,
//! polling with a deadline, a TCP proxy that can make the network go silent (also used by the
//! torture run), and the tasks the tests enqueue (also run by the `test_worker` binary, so that
//! tests can kill a worker process).

pub mod harness;
pub mod proxy;
pub mod tasks;
