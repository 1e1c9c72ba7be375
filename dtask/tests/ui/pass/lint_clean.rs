//! Generated code carries the user's spans: lints a crate turns on for its own code must not
//! fire on it. Also qualified paths from `self` and `super` in parameter types.
#![deny(
    warnings,
    unreachable_pub,
    unused_qualifications,
    missing_debug_implementations,
    missing_docs
)]

mod q {
    pub(crate) mod tr {
        pub(crate) trait Tr {
            type A;
        }
    }
}

mod p {
    use serde::{Deserialize, Serialize};

    pub(crate) trait Tr {
        type A;
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub(crate) struct S;

    impl Tr for S {
        type A = u32;
    }

    impl super::q::tr::Tr for S {
        type A = String;
    }

    /// A private task whose parameter types are qualified paths (needlessly, here: the allow
    /// covers the fn as written, not what `#[task]` generates beside it).
    #[allow(unused_qualifications)]
    #[dtask::task]
    pub(crate) async fn qualified(x: <self::S as self::Tr>::A, y: <S as super::q::tr::Tr>::A) -> u32 {
        x + u32::try_from(y.len()).unwrap_or(u32::MAX)
    }

    /// A private task.
    #[dtask::task]
    async fn private_one(table: String, n: u32) -> Result<u64, String> {
        Ok(table.len() as u64 + u64::from(n))
    }

    pub(crate) fn enqueue_private() -> dtask::Call<u64> {
        private_one::call("t".into(), 1)
    }
}

fn main() {
    let _calls = (p::qualified::call(1, "a".into()), p::enqueue_private());
}
