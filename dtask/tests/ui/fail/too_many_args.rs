#[dtask::task]
#[rustfmt::skip]
async fn wide(
    _a1: u8, _a2: u8, _a3: u8, _a4: u8, _a5: u8, _a6: u8, _a7: u8, _a8: u8, _a9: u8,
    _a10: u8, _a11: u8, _a12: u8, _a13: u8, _a14: u8, _a15: u8, _a16: u8, _a17: u8,
) {}

fn main() {}
