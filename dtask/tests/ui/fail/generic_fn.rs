#[dtask::task]
async fn store<T: serde::Serialize>(_value: T) {}

fn main() {}
