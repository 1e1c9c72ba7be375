#[dtask::task(queue = "emails", retry = 5)]
async fn send(_to: String) {}

fn main() {}
