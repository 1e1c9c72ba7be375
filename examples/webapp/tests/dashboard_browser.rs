//! The dashboard in a real browser: the example app against a real Redis, a bad deploy that
//! kills welcome mails, and an operator who opens `/dtask` in headless Chromium (driven over
//! WebDriver by `chromedriver`), clicks "Retry all dead" once the fix is deployed, and sees the
//! mails go out. A screenshot of each page is kept in `target/dashboard-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (the test script installs them); set
//! `DTASK_NO_BROWSER=1` to skip it on a machine without them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use dtask_testkit::os::free_port;
use dtask_testkit::process::{KillOnDrop, eventually};
use dtask_testkit::redis_server::RedisServer;
use serde_json::{Value, json};

/// One JSON request to `127.0.0.1:port`; the status and the body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let headers = [("Content-Type", "application/json")];
    let response = dtask_testkit::http::request(port, method, path, &headers, body.as_bytes())?;
    Ok((response.status, response.body))
}

/// A WebDriver session on a chromedriver of our own.
struct Browser {
    port: u16,
    session: String,
    _driver: KillOnDrop,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port().expect("a free port");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (install chromium-driver, or set DTASK_NO_BROWSER=1)");
        let driver = KillOnDrop(driver);
        eventually(Duration::from_secs(20), "chromedriver answers", || {
            http(port, "GET", "/status", None)
                .ok()
                .filter(|(s, _)| *s == 200)
        });
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
            }
        }}});
        let (status, body) =
            http(port, "POST", "/session", Some(&capabilities)).expect("a session");
        assert_eq!(status, 200, "{body}");
        let reply: Value = serde_json::from_str(&body).expect("JSON");
        let session = reply["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser {
            port,
            session,
            _driver: driver,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, reply) =
            http(self.port, method, &path, body.as_ref()).expect("WebDriver answers");
        assert_eq!(status, 200, "{method} {path}: {reply}");
        serde_json::from_str::<Value>(&reply).expect("JSON")["value"].take()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The text of the first element matching `css`, if any.
    fn text(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let (status, reply) = http(
            self.port,
            "POST",
            &path,
            Some(&json!({"using": "css selector", "value": css})),
        )
        .ok()?;
        if status != 200 {
            return None;
        }
        let element = element_id(&serde_json::from_str::<Value>(&reply).ok()?["value"])?;
        Some(
            self.call("GET", &format!("/element/{element}/text"), None)
                .as_str()?
                .to_owned(),
        )
    }

    /// Runs `script` in the page and returns what it returns.
    fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let element = element_id(&found).expect("an element");
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Saves a screenshot of the page as `name`.png among the test's artifacts.
    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64_decode(png.as_str().expect("base64 PNG"));
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).expect("a screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("the screenshot is saved");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = http(self.port, "DELETE", &path, None);
    }
}

/// The id of a WebDriver element reference.
fn element_id(value: &Value) -> Option<String> {
    value
        .get("element-6066-11e4-a5d1-4a5d1-2c3f4a5d")
        .or_else(|| value.as_object()?.values().next())
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n =
                chunk.iter().fold(0u32, |n, d| n << 6 | u32::from(*d)) << (6 * (4 - chunk.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len().saturating_sub(1))
        })
        .collect()
}

/// The example app in one mode, on its own port and database, against `redis`.
fn example(
    mode: &str,
    redis: &RedisServer,
    prefix: &str,
    port: u16,
    db: &str,
    smtp_down: bool,
) -> KillOnDrop {
    let child = Command::new(env!("CARGO_BIN_EXE_dtask-example"))
        .arg(mode)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DTASK_REDIS_URL", redis.url())
        .env("DTASK_PREFIX", prefix)
        .env("DATABASE_URL", db)
        .env("SMTP_DOWN", if smtp_down { "1" } else { "0" })
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example app starts");
    KillOnDrop(child)
}

/// A Redis of its own and the example's web server on it (under `label`), answering: the
/// Redis, the key prefix, the app's database URL and folder, the server's port, and the server.
struct Site {
    redis: RedisServer,
    prefix: String,
    db: String,
    dir: PathBuf,
    port: u16,
    _web: KillOnDrop,
}

impl Site {
    /// None when `DTASK_NO_BROWSER=1` (the browser tests are skipped).
    fn start(label: &str) -> Option<Site> {
        if std::env::var_os("DTASK_NO_BROWSER").is_some_and(|skip| skip == "1") {
            eprintln!("DTASK_NO_BROWSER=1: the browser test is skipped");
            return None;
        }
        let redis = RedisServer::start().expect("a redis-server");
        let prefix = format!("{label}-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("dtask-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = format!("sqlite://{}/app.db", dir.display());
        let port = free_port().unwrap();
        let web = example("web", &redis, &prefix, port, &db, false);
        eventually(Duration::from_secs(30), "the app answers", || {
            http(port, "GET", "/", None).ok().filter(|(s, _)| *s == 200)
        });
        Some(Site {
            redis,
            prefix,
            db,
            dir,
            port,
            _web: web,
        })
    }

    /// A worker of the example (a bad deploy's when `smtp_down`).
    fn worker(&self, smtp_down: bool) -> KillOnDrop {
        let port = free_port().unwrap();
        example(
            "worker",
            &self.redis,
            &self.prefix,
            port,
            &self.db,
            smtp_down,
        )
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn an_operator_retries_a_bad_deploys_dead_jobs_from_the_dashboard() {
    // The web server, and a worker of a bad deploy: the mail server is unreachable.
    let Some(site) = Site::start("browser") else {
        return;
    };
    let port = site.port;
    let base = format!("http://127.0.0.1:{port}");
    let bad_worker = site.worker(true);
    let names = ["ada", "grace", "linus"];
    for name in names {
        let signup = json!({"email": format!("{name}@example.com"), "name": name});
        let (status, body) = http(port, "POST", "/signups", Some(&signup)).unwrap();
        assert_eq!(status, 202, "{body}");
    }
    let dead_count = || -> Option<u64> {
        let (_, body) = http(port, "GET", "/dtask/api/stats", None).ok()?;
        let stats: Value = serde_json::from_str(&body).ok()?;
        stats["queues"]
            .as_array()?
            .iter()
            .find(|q| q["queue"] == "emails")?["dead"]
            .as_u64()
    };
    // Each mail fails 3 times (2 retries, about 1 s and 2 s apart), then is dead.
    eventually(Duration::from_secs(30), "the 3 mails are dead", || {
        (dead_count() == Some(3)).then_some(())
    });
    drop(bad_worker);

    let browser = Browser::start();
    browser.open(&format!("{base}/dtask"));
    let title = eventually(Duration::from_secs(10), "the overview shows", || {
        browser.text("h1")
    });
    assert_eq!(title, "Queues");
    let emails_dead = browser
        .text("td[data-q='emails'][data-k='dead']")
        .expect("the emails row");
    assert_eq!(emails_dead, "3");
    browser.screenshot("1-overview");

    browser.click("a[href$='/queues/emails']");
    eventually(Duration::from_secs(10), "the queue page", || {
        browser.text("h1").filter(|h| h.starts_with("emails"))
    });
    browser.click("a[href$='?state=dead']");
    let error = eventually(Duration::from_secs(10), "the dead jobs list", || {
        browser.text("td.err")
    });
    assert!(error.contains("mail server unreachable"), "{error}");
    browser.screenshot("2-dead-jobs");
    browser.click("td a[href*='/jobs/']");
    eventually(Duration::from_secs(10), "the job page", || {
        browser.text("h1").filter(|h| h.starts_with("Job"))
    });
    let details = browser.text("dl").expect("the job's details");
    assert!(
        details.contains("mail.welcome") && details.contains("3"),
        "{details}"
    );
    browser.screenshot("3-job");

    // The fix is deployed: a healthy worker. The operator retries every dead mail.
    let good_worker = site.worker(false);
    browser.open(&format!("{base}/dtask/queues/emails?state=dead"));
    eventually(Duration::from_secs(10), "the retry button", || {
        browser.text("form[action$='/dead/retry'] button")
    });
    browser.click("form[action$='/dead/retry'] button");
    let notice = eventually(Duration::from_secs(10), "the notice", || {
        browser.text(".notice")
    });
    assert_eq!(notice, "Queued 3 dead job(s) again.");
    browser.screenshot("4-retried");

    // The mails go out: the app's own record says so, and the dead set stays empty.
    let sent = eventually(
        Duration::from_secs(30),
        "the 3 welcome mails are sent",
        || {
            let (_, body) = http(port, "GET", "/welcomes", None).ok()?;
            let welcomes: Value = serde_json::from_str(&body).ok()?;
            let count = welcomes["welcomes"].as_array().map_or(0, Vec::len);
            (count == 3).then_some(welcomes)
        },
    );
    for name in names {
        assert!(
            sent.to_string().contains(&format!("{name}@example.com")),
            "{sent}"
        );
    }
    assert_eq!(dead_count(), Some(0));
    browser.open(&format!("{base}/dtask"));
    eventually(Duration::from_secs(10), "the overview again", || {
        browser.text("h1")
    });
    // The counts refresh live, without a reload: a new signup shows up as pending while the
    // page stays open (no worker serves it now).
    drop(good_worker);
    let signup = json!({"email": "ken@example.com", "name": "ken"});
    assert_eq!(
        http(port, "POST", "/signups", Some(&signup)).unwrap().0,
        202
    );
    eventually(
        Duration::from_secs(10),
        "the pending count updates live",
        || {
            let pending = browser.run(
            "return document.querySelector(\"td[data-q='emails'][data-k='pending']\").textContent",
        );
            (pending == "1").then_some(())
        },
    );
    browser.screenshot("5-overview-after");
}

#[test]
fn a_user_watches_a_thumbnail_being_made_live() {
    let Some(site) = Site::start("watch") else {
        return;
    };
    let port = site.port;
    let base = format!("http://127.0.0.1:{port}");
    let _worker = site.worker(false);
    // Due in 2 s, so that the page is open before it starts; the widest thumbnail takes the
    // longest (about 0.7 s, in four steps).
    let request =
        json!({"image_url": "https://img.example/cat.png", "width": 4096, "delay_secs": 2});
    let (status, body) = http(port, "POST", "/thumbnails", Some(&request)).unwrap();
    assert_eq!(status, 202, "{body}");
    let job_id = serde_json::from_str::<Value>(&body).unwrap()["job_id"]
        .as_str()
        .expect("a job id")
        .to_owned();

    let browser = Browser::start();
    browser.open(&format!("{base}/jobs/{job_id}/watch"));
    eventually(
        Duration::from_secs(30),
        "the page shows the job done",
        || {
            browser
                .text("#state")
                .filter(|state| state == "succeeded 100%")
        },
    );
    browser.screenshot("6-job-watched");
    let log = browser.text("#log").expect("the states seen");
    let seen: Vec<&str> = log.lines().collect();
    assert!(
        seen.first().is_some_and(|s| s.starts_with("scheduled")),
        "{log}"
    );
    assert!(
        seen.iter()
            .any(|s| s.starts_with("running 50%") && s.contains("resizing: step 2 of 4")),
        "the progress was streamed as it happened: {log}"
    );
    assert_eq!(seen.last(), Some(&"succeeded 100%"), "{log}");
    let result = browser.text("#result").expect("the result");
    assert!(result.contains("\"width\": 4096"), "{result}");
}
