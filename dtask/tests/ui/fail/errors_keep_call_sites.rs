//! On a mistake in `#[task]`, the module is still generated: the code that enqueues the task
//! adds no errors of its own.

#[dtask::task(retries = "three", queue = "mail")]
async fn bad_option(_to: String) {}

#[dtask::task]
async fn borrowed(_name: &str, count: u32) -> u32 {
    count
}

#[dtask::task]
fn not_async(_id: u64) {}

#[dtask::task]
async fn opaque_output(id: u64) -> impl std::fmt::Display {
    id
}

#[dtask::task]
async fn generic<T: serde::Serialize>(_value: T) {}

async fn handler() -> Result<(), dtask::Error> {
    bad_option::enqueue("a@example.com".into()).await?;
    let _ = bad_option::with().delay(std::time::Duration::from_secs(1)).enqueue("b".into()).await?;
    let _: &str = bad_option::NAME;
    borrowed::enqueue("x", 3).await?;
    not_async::enqueue_many(vec![1, 2]).await?;
    let handle = opaque_output::enqueue(7).await?;
    handle.wait(std::time::Duration::from_secs(1)).await?;
    generic::enqueue(5).await?;
    let _ = not_async::job("some-id");
    Ok(())
}

fn main() {
    let _ = handler();
}
