//! What dtask's integration tests and torture run share to stand up grey faults, with no tasks
//! of its own (a crate with tasks would register them in every binary that links it): a TCP
//! proxy between dtask and Redis that can make established connections go silent.

pub mod proxy;
