#[derive(Clone)]
struct App;

#[dtask::task]
async fn query(app: dtask::State<&'static App>, id: u64) -> u64 {
    let _ = app;
    id
}

fn main() {}
