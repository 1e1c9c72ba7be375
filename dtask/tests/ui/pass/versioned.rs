// A versioned task with a migration, by plain, `self::` and absolute paths.

#[dtask::task(version = 2, migrate = from_v1)]
async fn rename(full_name: String, formal: bool) {}

fn from_v1(first: String, last: String) -> (String, bool) {
    (format!("{first} {last}"), true)
}

mod nested {
    #[dtask::task(version = 3, migrate = self::from_v2)]
    pub async fn greet(name: String) {}

    fn from_v2(name: String, _loud: bool) -> (String,) {
        (name,)
    }

    #[dtask::task(version = 2, migrate = crate::one_from_v1)]
    pub async fn one(n: u64) {}
}

fn one_from_v1(n: u32) -> (u64,) {
    (u64::from(n),)
}

/// Version 1 took nothing.
#[dtask::task(version = 2, migrate = from_nothing)]
async fn hello(name: String) {}

fn from_nothing() -> (String,) {
    ("world".to_owned(),)
}

fn main() {
    use dtask::TaskDef;
    assert_eq!(rename::Task::INFO.version, 2);
    assert_eq!(nested::greet::INFO.version, 3);
    assert_eq!(nested::one::Task::PARAMS, ["n"]);
}
