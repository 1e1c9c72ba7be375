struct Opaque;

#[dtask::task]
async fn keep(_value: Opaque) {}

fn main() {}
