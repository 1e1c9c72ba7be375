#[dtask::task]
fn resize(_image_id: u64) {}

fn main() {}
