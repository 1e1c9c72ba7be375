//! Injected state: a task's `State<T>` parameters are filled by the worker from the values
//! given to `Worker::state`, are not part of the job, and a worker missing one refuses to start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dtask::{State, Worker};
use dtask_tests::harness::{start_redis, unique_prefix};

const WAIT: Duration = Duration::from_secs(10);

/// The application's resources, as a web app would hold them.
#[derive(Clone)]
struct App {
    greeting: String,
    sent: Arc<AtomicU64>,
}

/// A second resource of another type.
#[derive(Clone)]
struct Mailer {
    from: &'static str,
}

/// One injected state, first.
#[dtask::task(queue = "stateful")]
async fn greet(app: State<App>, name: String) -> String {
    app.sent.fetch_add(1, Ordering::Relaxed);
    format!("{} {name}", app.greeting)
}

/// Two injected states, one between the job's arguments.
#[dtask::task(queue = "stateful")]
async fn mail(
    user_id: u64,
    mailer: dtask::State<Mailer>,
    subject: String,
    app: State<App>,
) -> String {
    app.sent.fetch_add(1, Ordering::Relaxed);
    format!("{} -> {user_id}: {subject} ({})", mailer.from, app.greeting)
}

async fn client(label: &str, url: &str) -> dtask::Client {
    dtask::Client::connect_with_prefix(url, &unique_prefix(label))
        .await
        .expect("connect")
}

#[tokio::test]
async fn tasks_get_the_workers_states_and_jobs_carry_only_their_arguments() {
    let redis = start_redis();
    let client = client("state", &redis.url()).await;
    let app = App {
        greeting: "hello".into(),
        sent: Arc::new(AtomicU64::new(0)),
    };
    let worker = Worker::new(&client)
        .queues(["stateful"])
        .state(app.clone())
        .state(Mailer {
            from: "ops@example.com",
        })
        .spawn();
    // `enqueue` takes the job's arguments only: the states are the worker's.
    let greeted = greet::with()
        .client(&client)
        .enqueue("ada".into())
        .await
        .unwrap();
    let mailed = mail::with()
        .client(&client)
        .enqueue(7, "welcome".into())
        .await
        .unwrap();
    assert_eq!(greeted.wait(WAIT).await.unwrap(), "hello ada");
    assert_eq!(
        mailed.wait(WAIT).await.unwrap(),
        "ops@example.com -> 7: welcome (hello)"
    );
    assert_eq!(
        app.sent.load(Ordering::Relaxed),
        2,
        "both ran with the app's own counter"
    );
    worker.shutdown().await.unwrap();

    // The fn is still a plain fn.
    assert_eq!(greet(State(app.clone()), "bob".into()).await, "hello bob");
}

#[tokio::test]
async fn a_worker_missing_a_state_refuses_to_start_and_names_the_task_and_the_type() {
    let redis = start_redis();
    let client = client("state-missing", &redis.url()).await;
    let error = Worker::new(&client)
        .queues(["stateful"])
        .state(App {
            greeting: "hi".into(),
            sent: Arc::default(),
        })
        .run_until(std::future::ready(()))
        .await
        .expect_err("the Mailer is missing");
    let message = error.to_string();
    assert!(matches!(error, dtask::Error::Config(_)), "{error:?}");
    assert!(message.contains(mail::NAME), "{message}");
    assert!(message.contains("Mailer"), "{message}");
    // A worker of other queues needs none of them.
    let other = Worker::new(&client).queues(["elsewhere"]).spawn();
    other.shutdown().await.unwrap();
}
