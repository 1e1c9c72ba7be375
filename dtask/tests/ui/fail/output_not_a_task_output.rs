#[derive(serde::Serialize, serde::Deserialize)]
struct Summary {
    rows: u64,
}

#[dtask::task]
async fn summarize(table: String) -> Summary {
    Summary { rows: table.len() as u64 }
}

fn main() {}
