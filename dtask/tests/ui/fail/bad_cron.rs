#[dtask::task(cron = "0 0 25 * * *")]
async fn digest() {}

#[dtask::task(cron = "every morning")]
async fn report() {}

#[dtask::task(tz = "Europe/Berlin")]
async fn zoned() {}

fn main() {}
