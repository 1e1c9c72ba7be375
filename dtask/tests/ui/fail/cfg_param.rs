#[dtask::task]
async fn ping(#[cfg(test)] extra: u32, n: u32) -> u32 {
    n
}

fn main() {}
