#[dtask::task(rate = "10 per second")]
async fn call_partner() {}

#[dtask::task(max_running = 0)]
async fn export() {}

#[dtask::task(max_running = "5")]
async fn report() {}

#[dtask::task(queue = "emails", partitions = 0)]
async fn mail() {}

fn main() {}
