use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Signup {
    pub user_id: u64,
    pub email: String,
}

#[derive(Debug)]
pub struct MailError;

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mail failed")
    }
}

mod images {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Size(pub u32);

    /// Resizes an image.
    #[dtask::task]
    pub async fn resize(image_id: u64, size: self::Size) -> Result<String, std::io::Error> {
        Ok(format!("{image_id}-{}", size.0))
    }

    pub mod nested {
        #[dtask::task(queue = "bulk")]
        pub async fn crop(size: super::Size) -> u32 {
            size.0
        }
    }
}

#[dtask::task(queue = "emails", retries = 5, timeout = "30s", name = "mail.welcome")]
async fn send_welcome(signup: Signup) -> Result<(), MailError> {
    let _ = signup.user_id;
    Ok(())
}

#[dtask::task]
async fn tick() {}

async fn handlers(client: &dtask::Client) -> Result<(), dtask::Error> {
    let job = images::resize::enqueue(7, images::Size(640)).await?;
    let _path: String = job.wait(Duration::from_secs(10)).await?;
    let _id: &dtask::JobId = job.id();
    images::resize::with()
        .delay(Duration::from_secs(30))
        .enqueue(7, images::Size(640))
        .await?;
    images::resize::with()
        .at(std::time::SystemTime::now())
        .queue("bulk")
        .retries(0)
        .client(client)
        .enqueue(7, images::Size(640))
        .await?;
    images::resize::enqueue_many(vec![(1, images::Size(640)), (2, images::Size(320))]).await?;
    let _n: u32 = images::nested::crop::enqueue(images::Size(1)).await?.wait(Duration::ZERO).await?;
    send_welcome::enqueue(Signup { user_id: 1, email: "a@b.c".into() }).await?;
    send_welcome::enqueue_many(vec![Signup { user_id: 2, email: "d@e.f".into() }]).await?;
    let rebuilt: dtask::JobHandle<()> = send_welcome::job("some-id");
    let _status = rebuilt.status().await?;
    tick::enqueue().await?;
    let _direct: Result<String, std::io::Error> = images::resize(7, images::Size(640)).await;
    assert_eq!(send_welcome::NAME, "mail.welcome");
    assert_eq!(send_welcome::INFO.retries, 5);
    Ok(())
}

fn main() {
    let _ = handlers;
}

mod with_state {
    #[derive(Clone)]
    pub struct Db;

    use dtask::State;

    /// A state parameter is not part of `enqueue`.
    #[dtask::task]
    pub async fn lookup(db: State<Db>, id: u64) -> u64 {
        let _ = &*db;
        id
    }

    pub async fn enqueue_it() -> Result<(), dtask::Error> {
        lookup::enqueue(7).await?;
        lookup::enqueue_many(vec![1, 2]).await?;
        let _: u64 = lookup(State(Db), 7).await;
        Ok(())
    }
}
