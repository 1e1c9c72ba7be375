//! The README's least-privilege ACL users (its "Least privilege" lines, read from README.md as a
//! reader would copy them), and setting up such users on a running server.

use redis::aio::ConnectionManager;

/// The README's worker user.
pub const WORKER: &str = "worker";

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
