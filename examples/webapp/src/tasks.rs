//! The background tasks of the app. Each `#[dtask::task]` keeps its fn as written and adds a
//! module of the same name beside it (`make_thumbnail::enqueue(..)`, `make_thumbnail::job(id)`,
//! ...), which the routes use. A worker of this binary runs every task defined here.
//!
//! The work is simulated (a short sleep and a deterministic result) so the example runs with
//! nothing but Redis; the welcome mails are recorded in the app's SQLite database, which the
//! task reaches through `dtask::State<App>`, as a real task reaches the app's resources.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// The app's resources, shared by the web server and the tasks: here, its database.
#[derive(Clone, Debug)]
pub struct App {
    /// The SQLite database of welcome mails sent.
    pub db: SqlitePool,
}

impl App {
    /// Opens (creating when missing) the SQLite database at `url`
    /// (e.g. `sqlite://dtask-example.db`) and its table.
    pub async fn open(url: &str) -> Result<App, sqlx::Error> {
        let options = url.parse::<SqliteConnectOptions>()?.create_if_missing(true);
        let db = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS welcomes (
                 email TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 sent_at_ms INTEGER NOT NULL,
                 sends INTEGER NOT NULL
             )",
        )
        .execute(&db)
        .await?;
        Ok(App { db })
    }

    /// The welcome mails sent, newest first.
    pub async fn welcomes(&self) -> Result<Vec<Welcome>, sqlx::Error> {
        sqlx::query_as::<_, (String, String, i64, i64)>(
            "SELECT email, name, sent_at_ms, sends FROM welcomes ORDER BY sent_at_ms DESC LIMIT 100",
        )
        .fetch_all(&self.db)
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|(email, name, sent_at_ms, sends)| Welcome {
                    email,
                    name,
                    sent_at_ms,
                    sends,
                })
                .collect()
        })
    }
}

/// A welcome mail recorded in the database.
#[derive(Debug, Clone, Serialize)]
pub struct Welcome {
    /// Who it went to.
    pub email: String,
    /// How they were greeted.
    pub name: String,
    /// When it was (last) sent, ms since the epoch.
    pub sent_at_ms: i64,
    /// How many times it was sent: more than 1 only if a run was repeated (at least once).
    pub sends: i64,
}

/// A thumbnail made by [`make_thumbnail`]: where it was stored and how big it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// The image the thumbnail was made from.
    pub source: String,
    /// Where the thumbnail was stored.
    pub path: String,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels (the example assumes 4:3 images).
    pub height: u32,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Why a thumbnail could not be made.
#[derive(Debug)]
pub enum ThumbError {
    /// The source image could not be downloaded. Simulated for every URL containing "broken",
    /// so that such jobs are retried and end in the dead set.
    Fetch {
        /// The image's URL.
        url: String,
        /// What went wrong.
        reason: &'static str,
    },
    /// The requested width is outside what the app supports.
    BadWidth(u32),
}

impl fmt::Display for ThumbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThumbError::Fetch { url, reason } => write!(f, "could not fetch {url}: {reason}"),
            ThumbError::BadWidth(width) => write!(
                f,
                "width {width} is out of range ({MIN_WIDTH}..={MAX_WIDTH})"
            ),
        }
    }
}

impl std::error::Error for ThumbError {}

/// The smallest thumbnail width accepted.
pub const MIN_WIDTH: u32 = 16;
/// The largest thumbnail width accepted.
pub const MAX_WIDTH: u32 = 4096;

/// Downloads `image_url` and stores a `width` pixels wide thumbnail of it.
///
/// Runs on the `thumbnails` queue; a failed attempt is retried up to 3 times (with growing
/// delays: about 1 s, 2 s, 4 s) and each attempt may take at most 30 s. At most 4 run at once
/// across every worker (`max_running`), so that a burst of uploads does not take the image
/// origin down: the others wait in Redis for a slot.
#[dtask::task(
    queue = "thumbnails",
    name = "thumbnails.make",
    retries = 3,
    timeout = "30s",
    max_running = 4
)]
pub async fn make_thumbnail(image_url: String, width: u32) -> Result<Thumbnail, ThumbError> {
    if !(MIN_WIDTH..=MAX_WIDTH).contains(&width) {
        return Err(ThumbError::BadWidth(width));
    }
    // "Download and resize": takes a little longer for larger thumbnails, telling its
    // progress as it goes (`GET /jobs/{id}/watch` shows it live).
    let step = Duration::from_millis(200 + u64::from(width) / 8) / 4;
    for done in 1..=4 {
        tokio::time::sleep(step).await;
        dtask::progress(done * 25, format!("resizing: step {done} of 4"));
    }
    if image_url.contains("broken") {
        return Err(ThumbError::Fetch {
            url: image_url,
            reason: "origin answered 503 Service Unavailable (simulated)",
        });
    }
    let height = width * 3 / 4;
    let thumbnail = Thumbnail {
        path: format!("/thumbs/{:016x}-{width}.webp", fnv1a(&image_url)),
        bytes: u64::from(width) * u64::from(height) / 10 + 512,
        source: image_url,
        width,
        height,
    };
    tracing::info!(path = %thumbnail.path, bytes = thumbnail.bytes, "thumbnail stored");
    Ok(thumbnail)
}

/// A new user, as the signup form sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signup {
    /// Where to send the mail.
    pub email: String,
    /// How to greet them.
    pub name: String,
}

/// Why a mail could not be sent.
#[derive(Debug)]
pub enum MailError {
    /// The mail server refused the address (simulated for the `.invalid` domain).
    Refused {
        /// The address that was refused.
        address: String,
    },
    /// The mail server could not be reached (simulated with `SMTP_DOWN=1`: a bad deploy's
    /// configuration, to show the dashboard's "retry all dead" once it is fixed).
    Unavailable,
    /// The mail could not be recorded.
    Database(sqlx::Error),
}

impl fmt::Display for MailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailError::Refused { address } => write!(
                f,
                "mail server refused {address}: domain has no mail exchanger (simulated)"
            ),
            MailError::Unavailable => {
                write!(
                    f,
                    "mail server unreachable: connection refused (simulated, SMTP_DOWN=1)"
                )
            }
            MailError::Database(error) => write!(f, "could not record the mail: {error}"),
        }
    }
}

impl std::error::Error for MailError {}

/// Sends the welcome mail to a new user, and records it in the app's database.
///
/// Runs on the `emails` queue under the stable name `mail.welcome`, so renaming or moving the
/// fn does not strand jobs already queued. Addresses under the reserved `.invalid` domain fail,
/// to show a task with a unit result that can still fail. The database comes from the worker
/// (`Worker::state(app)`), not from the job: `send_welcome::enqueue(signup)` takes the signup
/// only. The record is an upsert, so a run repeated after a crash counts, not duplicates. The
/// mail provider takes at most 20 mails a second from the whole fleet (`rate`); mails over it
/// wait in Redis and go out as the budget allows.
#[dtask::task(
    queue = "emails",
    name = "mail.welcome",
    retries = 2,
    timeout = "10s",
    rate = "20/s"
)]
pub async fn send_welcome(app: dtask::State<App>, signup: Signup) -> Result<(), MailError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    if std::env::var_os("SMTP_DOWN").is_some_and(|down| down == "1") {
        return Err(MailError::Unavailable);
    }
    if signup.email.ends_with(".invalid") {
        return Err(MailError::Refused {
            address: signup.email,
        });
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    sqlx::query(
        "INSERT INTO welcomes (email, name, sent_at_ms, sends) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT(email) DO UPDATE SET name = ?2, sent_at_ms = ?3, sends = sends + 1",
    )
    .bind(&signup.email)
    .bind(&signup.name)
    .bind(now_ms)
    .execute(&app.db)
    .await
    .map_err(MailError::Database)?;
    tracing::info!(to = %signup.email, "welcome mail sent: \"Hello {}!\"", signup.name);
    Ok(())
}

/// Every minute, on the minute (UTC), counts the welcome mails sent in the minute before and
/// logs it: a periodic job. Every worker keeps the schedule and each minute's job is
/// enqueued once, by whichever worker claims the tick first; a job missed while no worker ran
/// is enqueued once when one is back. `dtask periodic` lists it with its last and next tick.
/// It has a queue of its own, so that its jobs do not mix with the mails' in their figures.
#[dtask::task(
    queue = "digests",
    name = "mail.digest",
    cron = "0 * * * * *",
    retries = 1
)]
pub async fn welcome_digest(app: dtask::State<App>) -> Result<i64, MailError> {
    let since_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
        - 60_000;
    let (sent,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM welcomes WHERE sent_at_ms >= ?1")
        .bind(since_ms)
        .fetch_one(&app.db)
        .await
        .map_err(MailError::Database)?;
    tracing::info!(sent, "digest: welcome mails sent in the last minute");
    Ok(sent)
}

/// Word statistics of a text, from [`count_words`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, dtask::TaskOutput)]
pub struct WordCount {
    /// Lines in the text.
    pub lines: usize,
    /// Whitespace-separated words.
    pub words: usize,
    /// Characters (Unicode scalar values).
    pub chars: usize,
    /// The most frequent word (lowercased, punctuation trimmed), and how often it appears.
    pub top_word: Option<(String, usize)>,
}

/// Counts the lines, words and characters of `text`.
///
/// A task with every option left at its default: queue `default`, 3 retries, no timeout, and
/// its module path as its name. It cannot fail, so it returns its value directly.
#[dtask::task]
pub async fn count_words(text: String) -> WordCount {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for word in text.split_whitespace() {
        let word = word
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if !word.is_empty() {
            *counts.entry(word).or_default() += 1;
        }
    }
    // Highest count first, then alphabetical, so that ties always give the same answer.
    let top_word = counts
        .into_iter()
        .max_by(|(a, m), (b, n)| m.cmp(n).then_with(|| b.cmp(a)));
    WordCount {
        lines: text.lines().count(),
        words: text.split_whitespace().count(),
        chars: text.chars().count(),
        top_word,
    }
}

/// FNV-1a: a tiny hash that is the same on every machine and Rust version, so a URL always
/// maps to the same thumbnail path.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn thumbnails_are_deterministic_and_broken_urls_fail() {
        let a = make_thumbnail("https://img.example/cat.png".into(), 64)
            .await
            .unwrap();
        let b = make_thumbnail("https://img.example/cat.png".into(), 64)
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!((a.width, a.height), (64, 48));
        let error = make_thumbnail("https://img.example/broken.png".into(), 64)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
        assert!(matches!(
            make_thumbnail("x".into(), 1).await,
            Err(ThumbError::BadWidth(1))
        ));
    }

    #[tokio::test]
    async fn words_are_counted() {
        let count = count_words("The cat.\nthe dog, THE end".into()).await;
        assert_eq!((count.lines, count.words, count.chars), (2, 6, 25));
        assert_eq!(count.top_word, Some(("the".into(), 3)));
    }
}
