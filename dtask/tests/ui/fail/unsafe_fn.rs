#[dtask::task]
async unsafe fn ping() {}

fn main() {}
