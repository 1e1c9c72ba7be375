//! The README's least-privilege ACL users (its "Least privilege" lines, read from README.md as a
//! reader would copy them), setting up such users, and the `--acl` mode of the suite: every
//! redis-server starts with the README's `producer` and `worker` users loaded verbatim from an
//! ACL file (so that they survive its restarts), the producer enqueues as `producer`, the
//! workers run as `worker`, and a [`Killer`] kills every connection of `worker` every 2 s.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;

/// The README's producer user.
pub const PRODUCER: &str = "producer";
/// The README's worker user.
pub const WORKER: &str = "worker";
/// The key prefix the README's users are limited to (`~dtask:*`).
pub const README_PREFIX: &str = "dtask";
/// How often a [`Killer`] kills the worker user's connections.
const KILL_EVERY: Duration = Duration::from_secs(2);

/// The README, as built into this binary.
const README: &str = include_str!("../../../README.md");

/// The README's ACL line for `user`, exactly as written (`user <name> <rules>`).
fn readme_line(user: &str) -> Result<&'static str, String> {
    let prefix = format!("user {user} ");
    README
        .lines()
        .find(|line| line.starts_with(&prefix))
        .ok_or_else(|| format!("README.md has no ACL line for `{user}`"))
}

/// The rules of the README's ACL line for `user` (what follows `user <name> `), one per item.
pub fn readme_rules(user: &str) -> Result<Vec<String>, String> {
    Ok(readme_line(user)?
        .split_whitespace()
        .skip(2)
        .map(str::to_owned)
        .collect())
}

/// Whether `rule` grants keys (`~pattern`, `%R~pattern`, `%RW~pattern`, `allkeys`).
fn is_key_rule(rule: &str) -> bool {
    rule.starts_with('~') || rule.starts_with('%') || rule == "allkeys"
}

/// `rules` with their key patterns replaced by `patterns` (put where the first one was).
pub fn with_keys(rules: &[String], patterns: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(rules.len() + patterns.len());
    let mut placed = false;
    for rule in rules {
        if is_key_rule(rule) {
            if !placed {
                out.extend(patterns.iter().cloned());
                placed = true;
            }
        } else {
            out.push(rule.clone());
        }
    }
    if !placed {
        out.extend(patterns.iter().cloned());
    }
    out
}

/// The password of `rules` (its `>password` rule).
pub fn password(rules: &[String]) -> Result<&str, String> {
    rules
        .iter()
        .find_map(|rule| rule.strip_prefix('>'))
        .ok_or_else(|| "the ACL rules set no password".to_owned())
}

/// Makes `user` exactly `rules` (starting from `reset`).
pub async fn set_user(
    conn: &mut ConnectionManager,
    user: &str,
    rules: &[String],
) -> redis::RedisResult<()> {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("reset")
        .arg(rules)
        .query_async(conn)
        .await
}

/// Replaces the key patterns of `user` by `patterns`; its connections keep going under them.
pub async fn set_keys(
    conn: &mut ConnectionManager,
    user: &str,
    patterns: &[String],
) -> redis::RedisResult<()> {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("resetkeys")
        .arg(patterns)
        .query_async(conn)
        .await
}

/// `redis://<user>:<password>@127.0.0.1:<port>`.
pub fn url(port: u16, user: &str, password: &str) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{port}")
}

/// A user and its password.
#[derive(Clone, Debug)]
pub struct Login {
    /// The user.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl Login {
    /// The login of the README's `user`.
    fn readme(user: &str) -> Result<Login, String> {
        Ok(Login {
            user: user.to_owned(),
            password: password(&readme_rules(user)?)?.to_owned(),
        })
    }

    /// `redis://<user>:<password>@127.0.0.1:<port>`.
    pub fn url(&self, port: u16) -> String {
        url(port, &self.user, &self.password)
    }
}

/// The README's two users, as written to an ACL file.
#[derive(Clone, Debug)]
pub struct Users {
    /// Who enqueues.
    pub producer: Login,
    /// Who works.
    pub worker: Login,
}

impl Users {
    /// Writes an ACL file at `path` with the README's producer and worker lines verbatim and an
    /// unrestricted `default` user without password (the driver's own connections); returns
    /// the two users.
    pub fn write_acl_file(path: &Path) -> Result<Users, String> {
        let text = format!(
            "user default on nopass ~* &* +@all\n{}\n{}\n",
            readme_line(PRODUCER)?,
            readme_line(WORKER)?
        );
        std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(Users {
            producer: Login::readme(PRODUCER)?,
            worker: Login::readme(WORKER)?,
        })
    }
}

/// How often the worker user's connections were killed, summed over a run.
#[derive(Debug, Default)]
pub struct Kills {
    /// `CLIENT KILL USER worker` commands that succeeded.
    pub rounds: AtomicU64,
    /// Connections they killed.
    pub connections: AtomicU64,
}

impl Kills {
    /// (rounds, connections) so far.
    pub fn read(&self) -> (u64, u64) {
        (
            self.rounds.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

/// Kills every connection of the worker user every 2 s, in a task of its own, until dropped.
pub struct Killer {
    task: JoinHandle<()>,
}

impl Killer {
    /// Starts killing through `conn` (a connection that is not the worker user's), counting into
    /// `kills`.
    pub fn start(mut conn: ConnectionManager, kills: Arc<Kills>) -> Killer {
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(KILL_EVERY).await;
                let killed: redis::RedisResult<u64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("USER")
                    .arg(WORKER)
                    .query_async(&mut conn)
                    .await;
                // Redis may be down (a scenario crashed it): the next round tries again.
                if let Ok(killed) = killed {
                    kills.rounds.fetch_add(1, Ordering::Relaxed);
                    kills.connections.fetch_add(killed, Ordering::Relaxed);
                }
            }
        });
        Killer { task }
    }
}

impl Drop for Killer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_has_both_users_and_key_patterns_are_replaced() {
        let worker = readme_rules("worker").unwrap();
        assert!(worker.contains(&"+evalsha".to_owned()));
        assert!(readme_rules("producer").is_ok());
        let narrowed = with_keys(&worker, &["~p:{a}:*".to_owned()]);
        assert!(narrowed.contains(&"~p:{a}:*".to_owned()));
        assert!(!narrowed.iter().any(|r| r.starts_with("~dtask")));
        assert_eq!(password(&worker).unwrap(), "worker-password");
    }
}
