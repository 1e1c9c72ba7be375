//! Workflows whose steps fit: a chain through tasks of one and of several arguments, a group,
//! a chord.

#[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
pub struct Thumb {
    pub width: u32,
}

#[dtask::task]
async fn resize(id: u64, width: u32) -> Thumb {
    let _ = id;
    Thumb { width }
}

#[dtask::task]
async fn describe(thumb: Thumb) -> (u32, String) {
    (thumb.width, "thumb".into())
}

#[dtask::task]
async fn label(width: u32, name: String) -> String {
    format!("{name} {width}")
}

#[dtask::task]
async fn album(thumbs: Vec<Thumb>) -> usize {
    thumbs.len()
}

async fn enqueue() -> Result<(), dtask::Error> {
    let _label: dtask::JobHandle<String> = dtask::chain(resize::call(1, 640))
        .then(describe::with_input())
        .then(label::with().queue("labels").with_input())
        .enqueue()
        .await?;
    let _thumbs: Vec<Thumb> = dtask::group((0..3).map(|id| resize::call(id, 64)))
        .enqueue()
        .await?
        .wait(std::time::Duration::from_secs(1))
        .await?;
    let _count: dtask::JobHandle<usize> = dtask::group((0..3).map(|id| resize::call(id, 64)))
        .skip_failed()
        .then(album::with_input())
        .enqueue()
        .await?;
    Ok(())
}

fn main() {
    let _ = enqueue;
}
