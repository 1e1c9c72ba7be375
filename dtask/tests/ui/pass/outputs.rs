//! What a task returns is decided by its type, whatever it is called.

use std::borrow::Cow;

use dtask::JobHandle;

type TaskResult = Result<(), String>;

/// A `Result` under another name: its `Err` is a failed attempt, its `Ok` the result.
#[dtask::task(retries = 2)]
async fn aliased(_x: u32) -> TaskResult {
    Err("failed".into())
}

type Fallible = anyhow::Result<u32>;

/// anyhow's `Result` alias, itself behind an alias: its error displays with its causes.
#[dtask::task]
async fn fallible(n: u32) -> Fallible {
    anyhow::ensure!(n > 0, "n must be positive");
    Ok(n)
}

#[dtask::task]
async fn io_alias(path: String) -> std::io::Result<u64> {
    Ok(path.len() as u64)
}

mod renamed {
    use std::result::Result as Outcome;

    #[dtask::task]
    pub async fn renamed(n: u32) -> Outcome<u32, String> {
        Ok(n)
    }
}

/// The error only needs `Display`: a boxed trait object or a `&'static str` will do.
#[dtask::task]
async fn boxed_error(n: u32) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    Ok(n)
}

#[dtask::task]
async fn static_str_error(n: u32) -> Result<u32, &'static str> {
    if n == 0 { Err("zero") } else { Ok(n) }
}

/// A `'static` borrowed-or-owned argument is an owned value.
#[dtask::task]
async fn greet(name: Cow<'static, str>) -> String {
    format!("hello {name}")
}

mod own_result {
    /// A type of the user's own that happens to be called `Result`: a plain value.
    #[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
    pub struct Result {
        pub rows: u64,
    }

    #[dtask::task]
    pub async fn count(table: String) -> Result {
        Result { rows: table.len() as u64 }
    }
}

#[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
struct Page<T> {
    items: Vec<T>,
}

#[dtask::task]
async fn page(n: u32) -> Page<u32> {
    Page { items: vec![n] }
}

#[dtask::task]
async fn pair(n: u32) -> (u32, Option<String>) {
    (n, None)
}

fn handles() {
    let _: JobHandle<()> = aliased::job("a");
    let _: JobHandle<u64> = io_alias::job("b");
    let _: JobHandle<u32> = fallible::job("b2");
    let _: JobHandle<u32> = renamed::renamed::job("c");
    let _: JobHandle<u32> = boxed_error::job("d");
    let _: JobHandle<u32> = static_str_error::job("e");
    let _: JobHandle<String> = greet::job("f");
    let _: JobHandle<own_result::Result> = own_result::count::job("g");
    let _: JobHandle<Page<u32>> = page::job("h");
    let _: JobHandle<(u32, Option<String>)> = pair::job("i");
}

fn main() {
    handles();
}
