//! A workflow step whose input is not the output of the step before does not compile.

#[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
pub struct Thumb;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Report;

#[dtask::task]
async fn resize(id: u64) -> Thumb {
    let _ = id;
    Thumb
}

#[dtask::task]
async fn publish(report: Report) {
    let _ = report;
}

async fn enqueue() {
    // A chord: the callback takes `Report`, the group gives `Vec<Thumb>`.
    let _ = dtask::group((0..3).map(resize::call))
        .then(publish::with_input())
        .enqueue()
        .await;
    // A chain: `publish` takes `Report`, `resize` gives `Thumb`.
    let _ = dtask::chain(resize::call(1))
        .then(publish::with_input())
        .enqueue()
        .await;
}

fn main() {
    let _ = enqueue;
}
