//! The second deploy of the tasks of `evolve_v1`: `greet` gained a trailing `Option`
//! parameter and `order` a field with a default (compatible changes), `count` a plain
//! parameter (an incompatible one). See tests/evolution.rs.

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

#[tokio::main]
async fn main() -> Result<(), dtask::Error> {
    evolve::main(|client| async move {
        let job = greet::with()
            .client(&client)
            .enqueue("Bob".into(), Some(true))
            .await?;
        Ok(vec![("greet".to_owned(), job.id().clone())])
    })
    .await
}
