//! Rate limits against a real Redis: three workers together start no more than a queue's limit
//! (a token bucket in Redis, on the server's clock); jobs over the limit wait in the queue, not
//! in any worker; a limit can be read back and removed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dtask::{RateLimit, Worker};
use dtask_tests::harness::{eventually, start_with_client};

const WAIT: Duration = Duration::from_secs(20);

static STARTS: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

fn starts(key: &str) -> Vec<Instant> {
    STARTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, at)| *at)
        .collect()
}

/// Notes when it starts.
#[dtask::task(queue = "limited")]
async fn call_api(key: String, _n: u32) {
    STARTS.lock().unwrap().push((key, Instant::now()));
}

#[tokio::test]
async fn three_workers_together_start_no_more_jobs_than_the_queue_limit() {
    let (_redis, client, _raw, _prefix) = start_with_client("rate-limit").await;
    let queue = client.queue("limited");
    let limit = RateLimit::new(40, Duration::from_secs(1));
    queue.set_rate_limit(limit).await.unwrap();
    assert_eq!(queue.rate_limit().await.unwrap(), Some(limit));
    call_api::with()
        .client(&client)
        .enqueue_many((0..80).map(|n| ("fleet".to_owned(), n)))
        .await
        .unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| Worker::new(&client).queues(["limited"]).spawn())
        .collect();
    eventually(WAIT, "all 80 jobs started", || async {
        (starts("fleet").len() == 80).then_some(())
    })
    .await;
    let mut times = starts("fleet");
    times.sort();
    let span = times[79] - times[0];
    let rate = 79.0 / span.as_secs_f64();
    println!("80 jobs, 3 workers, limit 40/s: {rate:.1} jobs/s over {span:?}");
    // 79 more tokens after the first take 1.975 s at 40/s; a little slack for the time between
    // a fetch and the start it is measured at.
    assert!(
        span >= Duration::from_millis(1_850),
        "{span:?}: {rate:.1} jobs/s"
    );
    for (i, first) in times.iter().enumerate() {
        let within_a_second = times[i..]
            .iter()
            .take_while(|at| **at - *first < Duration::from_secs(1))
            .count();
        assert!(
            within_a_second <= 42,
            "{within_a_second} starts within one second"
        );
    }
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn jobs_over_the_limit_wait_in_the_queue_until_it_is_lifted() {
    let (_redis, client, _raw, _prefix) = start_with_client("rate-wait").await;
    let queue = client.queue("limited");
    queue
        .set_rate_limit(RateLimit::new(1, Duration::from_secs(3600)))
        .await
        .unwrap();
    call_api::with()
        .client(&client)
        .enqueue_many((0..5).map(|n| ("waiting".to_owned(), n)))
        .await
        .unwrap();
    let worker = Worker::new(&client).queues(["limited"]).spawn();
    eventually(WAIT, "the one job the budget allows", || async {
        (starts("waiting").len() == 1).then_some(())
    })
    .await;
    // The rest wait in the queue: none is held in flight by the idle worker (a waiter's
    // blocking move may hold one for a moment before it goes back).
    eventually(
        WAIT,
        "four jobs waiting in the queue, none in flight",
        || async {
            let stats = queue.stats().await.unwrap();
            (stats.running == 0 && stats.pending == 4).then_some(())
        },
    )
    .await;
    assert_eq!(starts("waiting").len(), 1);
    // Setting a limit again grants no fresh burst.
    queue
        .set_rate_limit(RateLimit::new(1, Duration::from_secs(3600)))
        .await
        .unwrap();
    // Workers look at a spent budget again within a second: 1.5 s covers one look.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        starts("waiting").len(),
        1,
        "no job started on a re-set limit"
    );
    queue.clear_rate_limit().await.unwrap();
    assert_eq!(queue.rate_limit().await.unwrap(), None);
    eventually(WAIT, "the others once the limit is lifted", || async {
        (starts("waiting").len() == 5).then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn after_a_quiet_spell_no_more_than_the_burst_start_at_once() {
    let (_redis, client, _raw, _prefix) = start_with_client("rate-quiet").await;
    let queue = client.queue("limited");
    // 4 per second, one at a time: starts 250 ms apart, also after the bucket sat full.
    queue
        .set_rate_limit(RateLimit::new(4, Duration::from_secs(1)))
        .await
        .unwrap();
    let worker = Worker::new(&client).queues(["limited"]).spawn();
    call_api::with()
        .client(&client)
        .enqueue("quiet-first".to_owned(), 0)
        .await
        .unwrap();
    eventually(WAIT, "the first job started", || async {
        (starts("quiet-first").len() == 1).then_some(())
    })
    .await;
    // A quiet second: the bucket refills, but holds no more than the burst.
    tokio::time::sleep(Duration::from_secs(1)).await;
    call_api::with()
        .client(&client)
        .enqueue_many((0..3).map(|n| ("quiet".to_owned(), n)))
        .await
        .unwrap();
    eventually(WAIT, "the three jobs started", || async {
        (starts("quiet").len() == 3).then_some(())
    })
    .await;
    let mut times = starts("quiet");
    times.sort();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(200),
            "two starts {gap:?} apart"
        );
    }
    worker.shutdown().await.unwrap();
}
