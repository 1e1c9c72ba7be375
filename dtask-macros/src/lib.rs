//! The `#[task]` attribute and `#[derive(TaskOutput)]` of [dtask](https://docs.rs/dtask). Use
//! them through `dtask::task` and `dtask::TaskOutput`, whose documentation describes them; this
//! crate holds only the code generation: [`attr`] parses the options, [`ast`] reads and checks
//! the function, [`expand`] writes the generated module, [`derive`] the derived impl.

mod ast;
mod attr;
mod derive;
mod expand;

use proc_macro::TokenStream;

/// Marks an async fn as a dtask task. See `dtask::task` for the documentation.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(args.into(), item.into()).into()
}

/// Implements `dtask::TaskOutput` for a type of your own. See `dtask::TaskOutput`.
#[proc_macro_derive(TaskOutput)]
pub fn derive_task_output(item: TokenStream) -> TokenStream {
    derive::task_output(item.into()).into()
}
