#[dtask::task]
async fn describe(n: u32) -> impl serde::Serialize {
    n
}

fn main() {}
