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

async fn enqueue_all() -> Result<(), dtask::Error> {
    named_with::enqueue("w".into()).await?;
    named_const::enqueue(1).await?;
    patterns::enqueue((1, 2), 3).await?;
    old_task::enqueue(4).await?;
    bare::add::enqueue_many(vec![(1, 2)]).await?;
    Ok(())
}

fn main() {
    let _ = enqueue_all();
}
