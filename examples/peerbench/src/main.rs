//! dtask in the peers harness (`../shared/peers`, driven by `run.sh`): `enqueue N bulk|conc
//! [ff]` enqueues N no-op jobs (`enqueue_many` in chunks of 1,000, or 100 concurrent
//! `enqueue` calls) and prints `ENQ_S <seconds>`; `work N CONC [ff]` runs a worker of
//! concurrency CONC until N jobs ran and writes `DRAIN_S <seconds>` (first start to last
//! finish) to `$BENCH_OUT`. `ff`: a fire-and-forget task (`result_ttl = "0s"`), as the peers
//! keep no results.
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static DONE: AtomicU64 = AtomicU64::new(0);
static FIRST: Mutex<Option<Instant>> = Mutex::new(None);
static LAST: Mutex<Option<Instant>> = Mutex::new(None);

fn mark() {
    let now = Instant::now();
    FIRST.lock().unwrap().get_or_insert(now);
    DONE.fetch_add(1, Ordering::Relaxed);
    *LAST.lock().unwrap() = Some(Instant::now());
}

#[dtask::task(queue = "peer", name = "peer.noop")]
async fn noop(i: u64) {
    let _ = i;
    mark();
}

#[dtask::task(queue = "peer", name = "peer.noop_ff", result_ttl = "0s")]
async fn noop_ff(i: u64) {
    let _ = i;
    mark();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390/0".into());
    let client = dtask::Client::connect_with_prefix(&url, "peer").await.unwrap();
    let n: u64 = args[2].parse().unwrap();
    let ff = args.get(4).is_some_and(|a| a == "ff");
    match args[1].as_str() {
        "enqueue" => {
            let start = Instant::now();
            match args[3].as_str() {
                "bulk" => {
                    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
                        if ff {
                            noop_ff::with().client(&client).enqueue_many(chunk.to_vec()).await.unwrap();
                        } else {
                            noop::with().client(&client).enqueue_many(chunk.to_vec()).await.unwrap();
                        }
                    }
                }
                _ => {
                    let next = std::sync::Arc::new(AtomicU64::new(0));
                    let mut tasks = Vec::new();
                    for _ in 0..100 {
                        let (client, next) = (client.clone(), next.clone());
                        tasks.push(tokio::spawn(async move {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= n {
                                    break;
                                }
                                if ff {
                                    noop_ff::with().client(&client).enqueue(i).await.unwrap();
                                } else {
                                    noop::with().client(&client).enqueue(i).await.unwrap();
                                }
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
            }
            println!("ENQ_S {}", start.elapsed().as_secs_f64());
        }
        "work" => {
            let conc: usize = args[3].parse().unwrap();
            let worker = dtask::Worker::new(&client).queues(["peer"]).concurrency(conc).spawn();
            while DONE.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let first = FIRST.lock().unwrap().unwrap();
            let last = LAST.lock().unwrap().unwrap();
            let s = last.duration_since(first).as_secs_f64();
            std::fs::write(
                std::env::var("BENCH_OUT").unwrap(),
                format!("DRAIN_S {s}\nCOUNT {}\n", DONE.load(Ordering::Relaxed)),
            )
            .unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(5), worker.shutdown()).await;
        }
        _ => panic!("usage"),
    }
}
