//! Keeps secrets out of logs and error messages.

/// Returns `url` with the password of its user-info part replaced by `***`.
pub(crate) fn redis_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            if user_info.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://***@{host}{path}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redis_url;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redis_url("redis://app:s3cret@db:6379/0"),
            "redis://app:***@db:6379/0"
        );
        assert_eq!(redis_url("redis://s3cret@db:6379"), "redis://***@db:6379");
        assert_eq!(
            redis_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redis_url("not a url"), "not a url");
    }
}
