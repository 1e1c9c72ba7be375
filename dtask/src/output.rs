//! What a task may return, decided by its type (not by how it is spelled): a `Result<T, E>`
//! under any name (an alias, `io::Result`, `anyhow::Result`) is a success with `T` or a failed
//! attempt with `E`'s message; anything else is the job's result as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Display;

use serde::Serialize;

/// A type a task may return. Implemented for `Result<T, E>` where `T: Serialize` and
/// `E: Display` (the error never travels: only its message is kept), for `()`, for the standard library's values (numbers, `bool`,
/// `char`, `String`, `Vec`, `Option`, maps, sets, tuples, arrays, `Box`) and `serde_json::Value`,
/// and derived for a type of your own with `#[derive(dtask::TaskOutput)]`:
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, dtask::TaskOutput)]
/// struct Summary {
///     rows: u64,
/// }
///
/// #[dtask::task]
/// async fn summarize(table: String) -> Summary {
///     Summary { rows: table.len() as u64 }
/// }
/// # fn main() {}
/// ```
#[diagnostic::on_unimplemented(
    message = "a task cannot return `{Self}`: it does not implement `dtask::TaskOutput`",
    label = "not a task output",
    note = "a task returns `()`, a `Result<T, E>` (T: Serialize, E: Display), a standard value, or a type of yours with `#[derive(serde::Serialize, dtask::TaskOutput)]`"
)]
pub trait TaskOutput: Send + 'static {
    /// What a successful run stores as the job's result, and what waiting on the job yields.
    type Value: Serialize + Send + 'static;

    /// The run's result, or the message of its failure.
    fn into_result(self) -> Result<Self::Value, String>;
}

impl<T, E> TaskOutput for Result<T, E>
where
    T: Serialize + Send + 'static,
    E: Display + Send + 'static,
{
    type Value = T;

    fn into_result(self) -> Result<T, String> {
        self.map_err(|error| format!("{error:#}"))
    }
}

/// Implements [`TaskOutput`] for values that are their own result.
macro_rules! plain_outputs {
    ($($ty:ty),* $(,)?) => {
        $(
            impl TaskOutput for $ty {
                type Value = Self;

                fn into_result(self) -> Result<Self, String> {
                    Ok(self)
                }
            }
        )*
    };
}

plain_outputs!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    serde_json::Value,
);

/// Implements [`TaskOutput`] for generic containers of serializable values.
macro_rules! container_outputs {
    ($($ty:ident < $($param:ident),+ >),* $(,)?) => {
        $(
            impl<$($param),+> TaskOutput for $ty<$($param),+>
            where
                $ty<$($param),+>: Serialize + Send + 'static,
            {
                type Value = Self;

                fn into_result(self) -> Result<Self, String> {
                    Ok(self)
                }
            }
        )*
    };
}

container_outputs!(
    Vec<T>, VecDeque<T>, Option<T>, Box<T>, HashSet<T, S>, BTreeSet<T>, HashMap<K, V, S>,
    BTreeMap<K, V>,
);

impl<T, const N: usize> TaskOutput for [T; N]
where
    [T; N]: Serialize + Send + 'static,
{
    type Value = Self;

    fn into_result(self) -> Result<Self, String> {
        Ok(self)
    }
}

/// Implements [`TaskOutput`] for tuples of serializable values.
macro_rules! tuple_outputs {
    ($(($($param:ident),+)),* $(,)?) => {
        $(
            impl<$($param),+> TaskOutput for ($($param,)+)
            where
                $($param: Serialize + Send + 'static),+
            {
                type Value = Self;

                fn into_result(self) -> Result<Self, String> {
                    Ok(self)
                }
            }
        )*
    };
}

tuple_outputs!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H),
);
