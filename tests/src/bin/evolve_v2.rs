//! The second deploy of the tasks of `evolve_v1`: `greet` gained a trailing `Option`
//! parameter and `order` a field with a default (compatible changes), `count` a plain
//! parameter (an incompatible one), and `rename` a new shape as version 2, with a migration
//! from version 1. See tests/evolution.rs.

use dtask_tests::evolve::{self, saw};
use serde::{Deserialize, Serialize};

/// An order with a field the first deploy did not have.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    #[serde(default)]
    note: String,
}

#[dtask::task(name = "evolve.greet", queue = "evolve")]
async fn greet(name: String, shout: Option<bool>) {
    saw(format!("greet {name} shout={shout:?}")).await;
}

#[dtask::task(name = "evolve.order", queue = "evolve")]
async fn order(order: Order) {
    saw(format!("order {} note={:?}", order.id, order.note)).await;
}

#[dtask::task(name = "evolve.count", queue = "evolve")]
async fn count(name: String, times: u32) {
    saw(format!("count {name} times={times}")).await;
}

/// Version 2 takes the whole name and a flag; jobs of version 1 (first and last name) are
/// converted by [`rename_from_v1`].
#[dtask::task(
    name = "evolve.rename",
    queue = "evolve",
    version = 2,
    migrate = rename_from_v1
)]
async fn rename(full_name: String, formal: bool) {
    saw(format!("rename {full_name} formal={formal}")).await;
}

fn rename_from_v1(first: String, last: String) -> (String, bool) {
    (format!("{first} {last}"), true)
}

#[tokio::main]
async fn main() -> Result<(), dtask::Error> {
    evolve::main(|client| async move {
        let greeting = greet::with()
            .client(&client)
            .enqueue("Bob".into(), Some(true))
            .await?;
        let renaming = rename::with()
            .client(&client)
            .enqueue("Grace Hopper".into(), false)
            .await?;
        Ok(vec![
            ("greet".to_owned(), greeting.id().clone()),
            ("rename".to_owned(), renaming.id().clone()),
        ])
    })
    .await
}
