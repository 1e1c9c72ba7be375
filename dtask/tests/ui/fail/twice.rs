#[dtask::task]
#[dtask::task]
async fn ping() {}

fn main() {}
