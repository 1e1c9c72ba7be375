#[dtask::task]
async fn resize(_image_id: u64, _width: u32) {}

async fn handler() -> Result<(), dtask::Error> {
    resize::enqueue("seven", 640).await?;
    resize::enqueue(7).await?;
    Ok(())
}

fn main() {}
