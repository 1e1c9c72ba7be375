//! Periodic jobs: a task without arguments scheduled by its attribute, one with arguments
//! scheduled in code with typed arguments and options.

#[derive(serde::Serialize, serde::Deserialize)]
enum Region {
    Eu,
}

#[dtask::task(cron = "0 0 7 * * *", tz = "Europe/Berlin")]
async fn morning_digest() {}

#[dtask::task(queue = "reports")]
async fn report(region: Region, top: u32) -> Result<u32, String> {
    let _ = region;
    Ok(top)
}

fn main() {
    let _worker = dtask::Worker::from_env().map(|worker| {
        worker
            .periodic(dtask::periodic("eu-report", "0 0 * * * *", report::call(Region::Eu, 10)))
            .periodic(
                dtask::periodic(
                    "eu-report-slow",
                    "0 30 6 * * 1-5",
                    report::with().queue("slow").retries(1).call(Region::Eu, 100),
                )
                .tz("Europe/Berlin")
                .missed(dtask::Missed::Skip),
            )
    });
    let _call: dtask::Call<u32> = report::call(Region::Eu, 1);
    let _ = morning_digest::INFO.cron;
}
