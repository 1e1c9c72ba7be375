//! The dashboard over HTTP against a real Redis, nested under a path of an app as a user
//! would: pages, live counts, every repair as a form post, and the CSRF and origin checks that
//! keep another site from posting them. (`examples/webapp/tests/dashboard_browser.rs` drives
//! it in a real browser.)

use std::time::Duration;

use dtask::{JobState, Worker};
use dtask_testkit::http::{Response, request};
use dtask_tests::harness::{start_with_client, wait_dead};
use dtask_tests::tasks;

const WAIT: Duration = Duration::from_secs(10);

/// Serves `client`'s dashboard under `/ops/dtask` of an app on a free port; the port.
async fn serve(client: &dtask::Client) -> u16 {
    let app = axum::Router::new().nest("/ops/dtask", dtask::dashboard::router(client.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn get(port: u16, path: &str, cookie: Option<&str>) -> Response {
    get_with(port, path, cookie, &[]).await
}

/// A GET with `cookie` and extra `headers`.
async fn get_with(
    port: u16,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&'static str, &'static str)],
) -> Response {
    let (path, cookie) = (path.to_owned(), cookie.map(|c| format!("dtask_csrf={c}")));
    let extra = headers.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut headers: Vec<(&str, &str)> =
            cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        headers.extend(extra);
        request(port, "GET", &path, &headers, b"").unwrap()
    })
    .await
    .unwrap()
}

/// Posts `form` to `path` with `cookie` and, when given, a `Sec-Fetch-Site` header (or, for
/// a value starting with `http`, an `Origin` header).
async fn post(port: u16, path: &str, cookie: &str, form: &str, site: Option<&str>) -> Response {
    let (path, cookie, form, site) = (
        path.to_owned(),
        format!("dtask_csrf={cookie}"),
        form.to_owned(),
        site.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || {
        let mut headers = vec![
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", cookie.as_str()),
        ];
        if let Some(site) = &site {
            let name = if site.starts_with("http") {
                "Origin"
            } else {
                "Sec-Fetch-Site"
            };
            headers.push((name, site.as_str()));
        }
        request(port, "POST", &path, &headers, form.as_bytes()).unwrap()
    })
    .await
    .unwrap()
}

/// The CSRF token a page set in its cookie.
fn token(page: &Response) -> String {
    let cookie = page.header("set-cookie").expect("a CSRF cookie");
    assert!(
        cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(cookie.contains("Path=/ops/dtask"), "{cookie}");
    let value = cookie.split(';').next().unwrap();
    value.trim_start_matches("dtask_csrf=").to_owned()
}

#[tokio::test]
async fn every_repair_is_a_checked_post_and_the_pages_show_the_queues() {
    let (_redis, client, _raw, _prefix) = start_with_client("dashboard").await;
    let port = serve(&client).await;
    // A dead job (its error carries markup), a pending one, a delayed one.
    // The worker also keeps a nightly schedule (its name carries markup too).
    let nightly = tasks::add::with()
        .queue("reports")
        .call("nightly".into(), 1, 1);
    let worker = Worker::new(&client)
        .queues(["doomed"])
        .periodic(
            dtask::periodic("nightly <b>report</b>", "0 0 3 * * *", nightly).tz("Europe/Berlin"),
        )
        .spawn();
    dtask_tests::harness::eventually(WAIT, "the schedule recorded", || async {
        (!client.periodic_jobs().await.unwrap().is_empty()).then_some(())
    })
    .await;
    let dead = tasks::doomed::with()
        .client(&client)
        .retries(0)
        .enqueue("dash".into(), "<script>alert(1)</script>".into())
        .await
        .unwrap();
    wait_dead(&dead, WAIT).await;
    worker.shutdown().await.unwrap();
    let later = tasks::nap::with()
        .client(&client)
        .delay(Duration::from_secs(600))
        .enqueue("dash-later".into(), 0)
        .await
        .unwrap();
    tasks::nap::with()
        .client(&client)
        .enqueue("dash-now".into(), 0)
        .await
        .unwrap();

    // The overview: every queue with its counts, links under the app's path, a cookie.
    let overview = get(port, "/ops/dtask", None).await;
    assert_eq!(overview.status, 200);
    let csrf = token(&overview);
    assert!(
        overview.body.contains("href=\"/ops/dtask/queues/doomed\""),
        "{}",
        overview.body
    );
    assert!(
        overview
            .body
            .contains("data-q=\"doomed\" data-k=\"dead\">1<"),
        "{}",
        overview.body
    );
    // The periodic schedules, escaped.
    assert!(
        overview.body.contains("<td>nightly &lt;b&gt;report&lt;/b&gt;</td><td>reports</td><td><code>0 0 3 * * *</code> <span class=\"muted\">Europe/Berlin</span>"),
        "{}",
        overview.body
    );
    // The live counts the pages refresh from.
    let stats = get(port, "/ops/dtask/api/stats", None).await;
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    let naps = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "naps")
        .unwrap();
    assert_eq!(
        (naps["pending"].as_u64(), naps["scheduled"].as_u64()),
        (Some(1), Some(1))
    );

    // A dead job's page: its error escaped, never markup.
    let page = get(
        port,
        &format!("/ops/dtask/queues/doomed/jobs/{}", dead.id()),
        Some(&csrf),
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.header("set-cookie").is_none(), "the cookie is kept");
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
    // Searching by id leads to the job; an unknown id says so.
    let found = get(
        port,
        &format!("/ops/dtask/queues/doomed?id={}", dead.id()),
        None,
    )
    .await;
    assert_eq!(found.status, 303);
    assert_eq!(
        found.header("location"),
        Some(format!("/ops/dtask/queues/doomed/jobs/{}", dead.id()).as_str())
    );
    assert_eq!(
        get(port, "/ops/dtask/queues/doomed?id=nope", None)
            .await
            .status,
        404
    );

    // Every answer forbids framing and sniffing; the brand link leads to the overview.
    assert_eq!(overview.header("x-frame-options"), Some("DENY"));
    assert!(
        overview
            .header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(overview.header("x-content-type-options"), Some("nosniff"));
    assert!(
        overview
            .body
            .contains("class=\"brand\" href=\"/ops/dtask\""),
        "{}",
        overview.body
    );
    // Another site's page cannot read a page in the background (an image, a script)...
    let background = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "no-cors"),
    ];
    let refused = get_with(port, "/ops/dtask/queues/doomed?id=x", None, &background).await;
    assert_eq!(refused.status, 403);
    // ... and a page number past every queue is only an empty page.
    let far = get(port, "/ops/dtask/queues/naps?page=368934881474191033", None).await;
    assert_eq!(far.status, 200);
    // A token planted by someone who can set cookies for the host (another port, a sibling
    // domain) is not the dashboard's: a page replaces it, and a post carrying it is refused.
    let planted = "0123456789abcdef0123456789abcdef0123456789abcdef";
    let page = get(port, "/ops/dtask", Some(planted)).await;
    assert!(token(&page) != planted);
    let pause = "/ops/dtask/queues/naps/pause";
    let refused = post(port, pause, planted, &format!("csrf={planted}"), None).await;
    assert_eq!(refused.status, 403);

    // Posts without the page's token, with another token, from another site, or from another
    // origin are refused.
    for (cookie, form, site) in [
        (csrf.as_str(), String::new(), None),
        (csrf.as_str(), format!("csrf={}", "0".repeat(48)), None),
        (csrf.as_str(), format!("csrf={csrf}"), Some("cross-site")),
        (
            csrf.as_str(),
            format!("csrf={csrf}"),
            Some("http://evil.example"),
        ),
    ] {
        let refused = post(port, pause, cookie, &form, site).await;
        assert_eq!(refused.status, 403, "{form} {site:?}");
    }
    assert!(!client.queue("naps").is_paused().await.unwrap());

    // Each repair with the token: it is done, and the page it leads back to says so.
    let form = format!("csrf={csrf}");
    let paused = post(port, pause, &csrf, &form, Some("same-origin")).await;
    assert_eq!(paused.status, 303);
    assert_eq!(
        paused.header("location"),
        Some("/ops/dtask/queues/naps?done=paused&n=0")
    );
    assert!(client.queue("naps").is_paused().await.unwrap());
    let page = get(port, "/ops/dtask/queues/naps?done=paused&n=0", Some(&csrf)).await;
    assert!(
        page.body.contains("class=\"notice\"") && page.body.contains("badge paused"),
        "{}",
        page.body
    );
    post(port, "/ops/dtask/queues/naps/resume", &csrf, &form, None).await;
    assert!(!client.queue("naps").is_paused().await.unwrap());

    let cancelled = post(
        port,
        &format!("/ops/dtask/queues/naps/jobs/{}/cancel", later.id()),
        &csrf,
        &form,
        None,
    )
    .await;
    assert_eq!(cancelled.status, 303);
    assert!(
        cancelled
            .header("location")
            .unwrap()
            .ends_with("done=cancelled&n=1")
    );
    let (_, error) = wait_dead(&later, WAIT).await;
    assert_eq!(error, dtask::CANCELLED_ERROR);

    let purged = post(
        port,
        "/ops/dtask/queues/naps/purge",
        &csrf,
        &format!("{form}&state=pending"),
        None,
    )
    .await;
    assert_eq!(
        purged.header("location"),
        Some("/ops/dtask/queues/naps?done=purged&n=1")
    );

    let retried = post(
        port,
        "/ops/dtask/queues/doomed/dead/retry",
        &csrf,
        &format!("{form}&id={}", dead.id()),
        None,
    )
    .await;
    assert_eq!(
        retried.header("location"),
        Some("/ops/dtask/queues/doomed?done=retried&n=1")
    );
    let queue = client.queue("doomed");
    let pending = queue
        .jobs(JobState::Pending, dtask::Order::OldestFirst, 0, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(&pending[0].id, dead.id());
    // It dies again (the task always fails): delete every dead job at once.
    let worker = Worker::new(&client).queues(["doomed"]).spawn();
    wait_dead(&dead, WAIT).await;
    worker.shutdown().await.unwrap();
    let deleted = post(
        port,
        "/ops/dtask/queues/doomed/dead/delete",
        &csrf,
        &format!("{form}&all=1"),
        None,
    )
    .await;
    assert_eq!(
        deleted.header("location"),
        Some("/ops/dtask/queues/doomed?done=deleted&n=1")
    );
    assert_eq!(queue.stats().await.unwrap().dead, 0);
}

#[tokio::test]
async fn a_queue_that_cannot_be_read_is_reported_beside_the_others() {
    let (_redis, client, mut raw, prefix) = start_with_client("dashboard-broken").await;
    let port = serve(&client).await;
    tasks::nap::with()
        .client(&client)
        .enqueue("broken-nap".into(), 0)
        .await
        .unwrap();
    // Another queue's pending key holds a string: every list command on it fails.
    let _: () = redis::cmd("SADD")
        .arg(format!("{prefix}:queues"))
        .arg("broken")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:{{broken}}:pending"))
        .arg("garbage")
        .query_async(&mut raw)
        .await
        .unwrap();
    let overview = get(port, "/ops/dtask", None).await;
    assert_eq!(overview.status, 200);
    assert!(
        overview
            .body
            .contains("data-q=\"naps\" data-k=\"pending\">1<"),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("cannot be read: "),
        "{}",
        overview.body
    );
    let stats = get(port, "/ops/dtask/api/stats", None).await;
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    assert_eq!(stats["unreadable"][0]["queue"], "broken");
    assert_eq!(stats["queues"][0]["queue"], "naps");
}
