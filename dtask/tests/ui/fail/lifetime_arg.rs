use std::borrow::Cow;

#[dtask::task]
async fn greet(_name: Cow<'_, str>) {}

fn main() {}
