//! Parameter names and settings that must not clash with what `#[task]` generates.
#![deny(deprecated)]
#![allow(non_snake_case)]

/// A parameter named like the builder function.
#[dtask::task]
async fn named_with(with: String) -> usize {
    with.len()
}

/// A parameter named like the generated constant.
#[dtask::task]
async fn named_const(NAME: u32) -> u32 {
    NAME
}

/// A tuple pattern beside a parameter called `arg0`.
#[dtask::task]
async fn patterns((a, b): (u32, u32), arg0: u32) -> u32 {
    a + b + arg0
}

/// A deprecated task: the generated code calls it without a warning.
#[deprecated(note = "use named_with")]
#[dtask::task]
async fn old_task(n: u32) -> u32 {
    n
}

#[no_implicit_prelude]
mod bare {
    /// Generated code that needs no prelude.
    #[::dtask::task]
    pub async fn add(a: u32, b: u32) -> u32 {
        a + b
    }
}

/// Types of the user's named like the items the generated module holds.
mod clash {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Output(pub u32);
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Builder;
    pub type Task = u8;
    pub use std::string::String as Text;

    #[dtask::task]
    pub async fn shadowed(a: Output, _b: Builder, c: Task, d: Text) -> u32 {
        a.0 + u32::from(c) + d.len() as u32
    }
}

async fn enqueue_all() -> Result<(), dtask::Error> {
    named_with::enqueue("w".into()).await?;
    named_const::enqueue(1).await?;
    patterns::enqueue((1, 2), 3).await?;
    old_task::enqueue(4).await?;
    bare::add::enqueue_many(vec![(1, 2)]).await?;
    clash::shadowed::enqueue(clash::Output(1), clash::Builder, 2, "three".into()).await?;
    Ok(())
}

fn main() {
    let _ = enqueue_all();
}
