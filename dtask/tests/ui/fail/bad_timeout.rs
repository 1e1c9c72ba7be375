#[dtask::task(timeout = "30 seconds")]
async fn send(_to: String) {}

fn main() {}
