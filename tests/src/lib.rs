//! Shared pieces of dtask's integration tests: a redis-server per test, unique key prefixes,
//! polling with a deadline, and the tasks the tests enqueue (also run by the `test_worker`
//! binary, so that tests can kill a worker process), and what a failover test measures. The TCP proxy for network faults is in
//! `dtask-testkit`, shared with the torture run.

pub mod events;
pub mod evolve;
pub mod failover;
pub mod harness;
pub mod tasks;
