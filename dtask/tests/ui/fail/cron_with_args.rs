#[dtask::task(cron = "0 0 7 * * *")]
async fn digest(_user_id: u64) {}

fn main() {}
