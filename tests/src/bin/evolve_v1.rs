//! The first deploy of three tasks (see `dtask_tests::evolve` and tests/evolution.rs).

use dtask_tests::evolve::{self, saw};
use serde::{Deserialize, Serialize};

/// An order as the first deploy knows it.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
}

#[dtask::task(name = "evolve.greet", queue = "evolve")]
async fn greet(name: String) {
    saw(format!("greet {name}")).await;
}

#[dtask::task(name = "evolve.order", queue = "evolve")]
async fn order(order: Order) {
    saw(format!("order {}", order.id)).await;
}

#[dtask::task(name = "evolve.count", queue = "evolve")]
async fn count(name: String) {
    saw(format!("count {name}")).await;
}

#[dtask::task(name = "evolve.rename", queue = "evolve")]
async fn rename(first: String, last: String) {
    saw(format!("rename {first} {last}")).await;
}

#[tokio::main]
async fn main() -> Result<(), dtask::Error> {
    evolve::main(|client| async move {
        Ok(vec![
            (
                "greet".to_owned(),
                greet::with()
                    .client(&client)
                    .enqueue("Ann".into())
                    .await?
                    .id()
                    .clone(),
            ),
            (
                "order".to_owned(),
                order::with()
                    .client(&client)
                    .enqueue(Order { id: 7 })
                    .await?
                    .id()
                    .clone(),
            ),
            (
                "count".to_owned(),
                count::with()
                    .client(&client)
                    .enqueue("Cy".into())
                    .await?
                    .id()
                    .clone(),
            ),
            (
                "rename".to_owned(),
                rename::with()
                    .client(&client)
                    .enqueue("Ada".into(), "Lovelace".into())
                    .await?
                    .id()
                    .clone(),
            ),
        ])
    })
    .await
}
