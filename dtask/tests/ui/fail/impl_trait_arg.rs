#[dtask::task]
async fn show(_value: impl std::fmt::Display) {}

fn main() {}
