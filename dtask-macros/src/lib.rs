//! The `#[task]` attribute of [dtask](https://docs.rs/dtask). Use it through `dtask::task`,
//! whose documentation describes it; this crate holds only the code generation:
//! [`attr`] parses the options, [`ast`] reads and checks the function, [`expand`] writes the
//! generated module.

mod ast;
mod attr;
mod expand;

use proc_macro::TokenStream;

/// Marks an async fn as a dtask task. See `dtask::task` for the documentation.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(args.into(), item.into()).into()
}
