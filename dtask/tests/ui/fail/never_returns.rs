#[dtask::task]
async fn forever() -> ! {
    loop {}
}

fn main() {}
