#[dtask::task]
async fn greet(_name: &str) {}

fn main() {}
