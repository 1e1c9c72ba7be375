//! What dtask's broker tests, integration tests, torture run and benchmark share to stand up
//! Redis and grey faults, with no tasks of its own (a crate with tasks would register them in
//! every binary that links it): the one redis-server launcher; a Redis Cluster and a
//! Sentinel-watched master of a test's own (replicas, failover); a TCP proxy between dtask and
//! Redis that can make established connections go silent; and a minimal HTTP client for the
//! dashboard's tests.

pub mod http;
pub mod os;
pub mod process;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
