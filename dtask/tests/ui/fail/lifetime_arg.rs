use std::borrow::Cow;

#[dtask::task]
async fn greet(_name: Cow<'static, str>) {}

fn main() {}
