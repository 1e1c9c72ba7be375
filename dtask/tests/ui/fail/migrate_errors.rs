// `migrate` without a `version` to migrate to; a migration whose output is not the task's
// parameters now (the compiler says which types differ).

#[dtask::task(migrate = from_v1)]
async fn unversioned(_name: String) {}

fn from_v1(first: String, last: String) -> (String,) {
    (format!("{first} {last}"),)
}

#[dtask::task(version = 2, migrate = wrong_shape)]
async fn renamed(_full_name: String, _formal: bool) {}

fn wrong_shape(first: String) -> (String, u32) {
    (first, 1)
}

fn main() {}
