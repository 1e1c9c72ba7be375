//! Two tasks registered under one name: the worker refuses to start, naming both.

use dtask::{Client, Worker};
use dtask_tests::harness::{start_redis, unique_prefix};

#[dtask::task(name = "reports.build")]
async fn build_report(_id: u64) {}

mod legacy {
    #[dtask::task(name = "reports.build")]
    pub async fn build_report_v1(_id: u64) {}
}

#[tokio::test]
async fn a_worker_refuses_two_tasks_with_one_name_and_names_both() {
    let redis = start_redis();
    let client = Client::connect_with_prefix(&redis.url(), &unique_prefix("dup"))
        .await
        .unwrap();
    let result = Worker::new(&client).run_until(async {}).await;
    match result {
        Err(dtask::Error::DuplicateTask {
            name,
            first,
            second,
        }) => {
            assert_eq!(name, "reports.build");
            assert!(
                first.starts_with("tests/tests/duplicate_names.rs:"),
                "{first}"
            );
            assert!(
                second.starts_with("tests/tests/duplicate_names.rs:"),
                "{second}"
            );
            assert_ne!(first, second);
        }
        other => panic!("expected a duplicate task error, got {other:?}"),
    }
    let _ = (build_report::NAME, legacy::build_report_v1::NAME);
}
