struct Pool;

#[dtask::task]
async fn query(pool: dtask::State<Pool>, id: u64) -> u64 {
    let _ = &pool.0;
    id
}

fn main() {}
