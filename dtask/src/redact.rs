//! Keeps secrets out of logs and error messages.
//!
//! - [`redis_url`] hides the passwords of a Redis URL, or of each node of a comma-separated
//!   cluster list: the password of the user-info part (`redis://user:***@host`) and the values of
//!   the `password` and `pass` query parameters (`?password=***`).
//! - [`decode_error`] renders a failure to decode a job's arguments without the values of the
//!   payload: serde's messages quote the offending value (`invalid type: string "sk_live_…"`),
//!   which may be a secret the job carries.

use serde_json::error::Category;

/// Returns `url` with its passwords replaced by `***`: the password of the user-info part of each
/// comma-separated node (`redis://u:p@h1:1,redis://u:p@h2:2`; later nodes may omit the scheme:
/// `h2:2`, `u:p@h2:2`), and the values of the query parameters `password` and `pass` (any case).
///
/// The user info runs to the last `@` of its node (but for one in the value of a secret query
/// parameter), so a password holding `/`, `?`, `#` or `@` is hidden whole; the value of a secret
/// query parameter runs to the next `&`. A password holding `,` (which the broker would take for
/// a node separator) is hidden too: a scheme-less node holding `@` is joined to the nodes before
/// it that hold none (back to the one with a scheme), and a node after an unterminated secret
/// query value is taken as part of that value; so `redis://h1:1,u:p@h2:2` shows as
/// `redis://h1:***@h2:2`, safe if not exact. Text without `@` or a query comes back as it was.
/// Never panics.
pub(crate) fn redis_url(url: &str) -> String {
    let mut nodes: Vec<String> = Vec::new();
    for segment in url.split(',') {
        let has_scheme = segment.contains("://");
        if !has_scheme
            && let Some(node) = nodes.last_mut()
            && ends_in_secret_value(node)
        {
            // `?password=a,b`: the rest of the password, not a node.
            node.push(',');
            node.push_str(segment);
        } else if !has_scheme && segment.contains('@') {
            // `u:p@h2:2` after `redis://h1:1`, or the end of `redis://u:pa,ss@h`: take the
            // nodes before it that have no user info as part of its user info.
            let mut start = nodes.len();
            while start > 0 && !nodes[start - 1].contains('@') {
                start -= 1;
                if nodes[start].contains("://") {
                    break;
                }
            }
            let mut joined: Vec<String> = nodes.drain(start..).collect();
            joined.push(segment.to_owned());
            nodes.push(joined.join(","));
        } else {
            nodes.push(segment.to_owned());
        }
    }
    nodes
        .iter()
        .map(|node| redact_node(node))
        .collect::<Vec<_>>()
        .join(",")
}

/// Hides the password of one node's URL (with or without its scheme): its user info and its
/// secret query values.
fn redact_node(node: &str) -> String {
    let (scheme, rest) = split_scheme(node);
    let (user_info, host) = split_user_info(rest);
    let user_info = match user_info.map(|info| info.split_once(':')) {
        Some(Some((user, _))) => format!("{user}:***@"),
        Some(None) => "***@".to_owned(),
        None => String::new(),
    };
    let host = match host.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => host.to_owned(),
    };
    format!("{scheme}{user_info}{host}")
}

/// Splits `node` after its `scheme://`, if it has one.
fn split_scheme(node: &str) -> (&str, &str) {
    match node.find("://") {
        Some(at) => node.split_at(at + "://".len()),
        None => ("", node),
    }
}

/// Splits what follows the scheme into the user info (without its `@`), if any, and the rest.
/// The user info runs to the last `@`, unless that `@` is in the value of a secret query
/// parameter (`h?password=a@b`): then to the last `@` before the query.
fn split_user_info(rest: &str) -> (Option<&str>, &str) {
    let at = match rest.rfind('@') {
        Some(at) if query_ends_in_secret_value(&rest[..at]) => {
            let query = rest.find('?').unwrap_or(rest.len());
            rest[..query].rfind('@')
        }
        at => at,
    };
    match at {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    }
}

/// Replaces the values of the `password` and `pass` parameters of `query` (without its `?`).
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether the query parameter named `key` (percent-encoded) holds a password.
fn is_secret_key(key: &str) -> bool {
    let key = percent_decode(key);
    key.eq_ignore_ascii_case(b"password")
        || key.eq_ignore_ascii_case(b"pass")
        || key.eq_ignore_ascii_case(b"sentinel_password")
}

/// Decodes the `%XX` escapes of `text`, leaving malformed ones as they are.
fn percent_decode(text: &str) -> Vec<u8> {
    let hex = |b: Option<&u8>| {
        b.and_then(|&b| char::from(b).to_digit(16))
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            decoded.push(high * 16 + low);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    decoded
}

/// Whether `node` ends inside the value of a secret query parameter (`…?password=abc`), so that a
/// comma after it belongs to the password.
fn ends_in_secret_value(node: &str) -> bool {
    let (_, rest) = split_scheme(node);
    query_ends_in_secret_value(split_user_info(rest).1)
}

/// Whether the query of `text` (from its first `?`) ends inside the value of a secret parameter.
fn query_ends_in_secret_value(text: &str) -> bool {
    text.split_once('?')
        .and_then(|(_, query)| query.rsplit('&').next())
        .and_then(|pair| pair.split_once('='))
        .is_some_and(|(key, _)| is_secret_key(key))
}

/// Renders a failure to decode a job's arguments without the values of the payload.
///
/// serde's messages quote the value that did not fit (`invalid type: string "sk_live_abc",
/// expected u32 at line 1 column 13`); this keeps their structure and drops the value:
/// `invalid type: a string, expected u32 at line 1 column 13`. Kept: what was expected, the
/// position, the kind of value found, lengths, missing and duplicate field names (from the
/// type, not the payload). Dropped: values, unknown variant and field names (from the payload),
/// and any message of a shape not known here (`invalid data (message hidden)`). Syntax, EOF and
/// I/O errors have fixed wordings without payload and come back as they were.
pub(crate) fn decode_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if error.classify() != Category::Data {
        return text;
    }
    let position = if error.line() == 0 {
        String::new()
    } else {
        format!(" at line {} column {}", error.line(), error.column())
    };
    match text.strip_suffix(&position) {
        Some(message) => format!("{}{position}", data_message(message)),
        None => data_message(&text),
    }
}

/// The payload-free form of the message (without position) of a data error.
fn data_message(message: &str) -> String {
    const HIDDEN: &str = "invalid data (message hidden)";
    for prefix in ["invalid type", "invalid value"] {
        if let Some(rest) = message
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(": "))
        {
            // The value comes first and is parsed exactly; what follows it is the expectation,
            // written by the type's `Deserialize`, not taken from the payload.
            return match unexpected_kind(rest) {
                Some((kind, rest)) => match rest.strip_prefix(", expected ") {
                    Some(expected) => format!("{prefix}: {kind}, expected {expected}"),
                    None => format!("{prefix}: {kind}"),
                },
                None => format!("{prefix}: (value hidden)"),
            };
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        return match rest.split_once(", expected ") {
            Some((len, expected)) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                format!("invalid length {len}, expected {expected}")
            }
            _ => "invalid length (value hidden)".to_owned(),
        };
    }
    for (what, plural) in [("variant", "variants"), ("field", "fields")] {
        if message.starts_with(&format!("unknown {what} `")) {
            // The name comes from the payload and may hold anything, `, expected` included;
            // the list of names that follows it comes from the type: read from the end.
            let none = format!("`, there are no {plural}");
            return if message.ends_with(&none) {
                format!("unknown {what}, there are no {plural}")
            } else {
                match message.rsplit_once("`, expected ") {
                    Some((_, expected)) if expected.ends_with('`') => {
                        format!("unknown {what}, expected {expected}")
                    }
                    _ => format!("unknown {what} (name hidden)"),
                }
            };
        }
    }
    for prefix in ["missing field `", "duplicate field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The name is the type's (a `&'static str`), not the payload's.
            return match rest.strip_suffix('`') {
                Some(name) if !name.contains('`') => message.to_owned(),
                _ => HIDDEN.to_owned(),
            };
        }
    }
    if message.starts_with("data did not match any variant of untagged enum ") {
        return message.to_owned();
    }
    HIDDEN.to_owned()
}

/// Parses the start of `text` as serde's description of an unexpected value (`de::Unexpected`,
/// or serde_json's `null`); returns the kind of value without the value, and the rest of `text`.
fn unexpected_kind(text: &str) -> Option<(&'static str, &str)> {
    const FIXED: [(&str, &str); 12] = [
        ("null", "null"),
        ("unit value", "a unit value"),
        ("Option value", "an option"),
        ("byte array", "a byte array"),
        ("newtype struct", "a newtype struct"),
        ("sequence", "a sequence"),
        ("map", "a map"),
        ("enum", "an enum"),
        ("unit variant", "a unit variant"),
        ("newtype variant", "a newtype variant"),
        ("tuple variant", "a tuple variant"),
        ("struct variant", "a struct variant"),
    ];
    if let Some(quoted) = text.strip_prefix("string \"") {
        // `{:?}` of the string: `\` escapes the next character, the first bare `"` closes it.
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next()?;
                }
                '"' => return Some(("a string", &quoted[i + 1..])),
                _ => {}
            }
        }
        return None;
    }
    for (prefix, kind) in [
        ("integer `", "an integer"),
        ("floating point `", "a floating point number"),
        ("boolean `", "a boolean"),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            // Numbers and booleans hold no backtick.
            return rest.split_once('`').map(|(_, rest)| (kind, rest));
        }
    }
    if let Some(rest) = text.strip_prefix("character `") {
        // One character, which may be a backtick itself.
        let mut chars = rest.chars();
        chars.next()?;
        return chars
            .as_str()
            .strip_prefix('`')
            .map(|rest| ("a character", rest));
    }
    FIXED.iter().find_map(|&(name, kind)| {
        let rest = text.strip_prefix(name)?;
        (rest.is_empty() || rest.starts_with(',')).then_some((kind, rest))
    })
}

#[cfg(test)]
mod tests {
    use super::{data_message, decode_error, redis_url};
    use serde::Deserialize;

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

    #[test]
    fn the_password_of_each_cluster_node_is_hidden() {
        for (url, shown) in [
            (
                "redis://u:s3cret@h1:1,redis://u:s3cret@h2:2",
                "redis://u:***@h1:1,redis://u:***@h2:2",
            ),
            (
                "rediss://:s3cret@h1:1, rediss://:s3cret@h2:2",
                "rediss://:***@h1:1, rediss://:***@h2:2",
            ),
            (
                "redis://u:s3cret@h1:1,u:s3cret@h2:2,s3cret@h3:3",
                "redis://u:***@h1:1,u:***@h2:2,***@h3:3",
            ),
            ("redis://u:s3cret@h1:1,h2:2", "redis://u:***@h1:1,h2:2"),
            // Could be a password holding a comma: hidden with the first node's port.
            ("redis://h1:1,u:s3cret@h2:2", "redis://h1:***@h2:2"),
            (
                "redis://h1:1,redis://h2:2,h3:3",
                "redis://h1:1,redis://h2:2,h3:3",
            ),
        ] {
            assert_eq!(redis_url(url), shown, "{url}");
        }
    }

    #[test]
    fn secret_query_values_are_hidden() {
        for (url, shown) in [
            (
                "redis://h:6379/0?password=s3cret&protocol=resp3",
                "redis://h:6379/0?password=***&protocol=resp3",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("redis://h?PassWord=s3cret", "redis://h?PassWord=***"),
            (
                "redis://h?PASS=s3cret&pass=s3cret",
                "redis://h?PASS=***&pass=***",
            ),
            ("redis://h?p%61ss=s3cret", "redis://h?p%61ss=***"),
            (
                "redis://h?%50ASSWORD=s3cret&%=x&%zz=x",
                "redis://h?%50ASSWORD=***&%=x&%zz=x",
            ),
            (
                "redis://u:s3cret@h/0?protocol=resp3&password=s3cret",
                "redis://u:***@h/0?protocol=resp3&password=***",
            ),
            (
                "redis://h1?password=s3cret,redis://h2?pass=s3cret",
                "redis://h1?password=***,redis://h2?pass=***",
            ),
            // Not secrets: other parameters, and a parameter without value.
            (
                "redis://h?passwords=x&user=u&password",
                "redis://h?passwords=x&user=u&password",
            ),
            ("redis://h:1?", "redis://h:1?"),
        ] {
            assert_eq!(redis_url(url), shown, "{url}");
        }
    }

    #[test]
    fn passwords_holding_separators_are_hidden_whole() {
        for (url, shown) in [
            ("redis://u:s3/cr?e#t@h:1/0", "redis://u:***@h:1/0"),
            ("redis://u:s3,cr@et@h:1", "redis://u:***@h:1"),
            ("redis://u:s3,cr,et@h:1", "redis://u:***@h:1"),
            ("redis://s3,cr,et@h:1", "redis://***@h:1"),
            (
                "redis://u:s3,cr,et@h1:1,u:s3,cr,et@h2:2",
                "redis://u:***@h1:1,u:***@h2:2",
            ),
            (
                "redis://h?password=s3,cr,et&protocol=resp3",
                "redis://h?password=***&protocol=resp3",
            ),
            ("redis://h?password=s3,cr@et", "redis://h?password=***"),
            (
                "redis://h?password=s3cr@et&db=0",
                "redis://h?password=***&db=0",
            ),
            (
                "redis://u:s3cr@et@h/0?pass=s3@cr@et&protocol=resp3",
                "redis://u:***@h/0?pass=***&protocol=resp3",
            ),
        ] {
            let redacted = redis_url(url);
            assert_eq!(redacted, shown, "{url}");
            for part in ["s3", "cr", "et"] {
                assert!(!redacted.contains(part), "{url} -> {redacted}");
            }
        }
    }

    #[test]
    fn odd_urls_do_not_panic() {
        for url in [
            "",
            "@",
            "@@",
            ":",
            "://",
            "://@",
            "@://",
            ",",
            ",,",
            "?",
            "&",
            "&=",
            "?&=",
            "=?",
            "?password",
            "?password=",
            "?pass=,",
            "%",
            "%%",
            "%4",
            "?p%=x",
            "?%C3%A9=x",
            "redis://",
            "redis://@",
            "redis://:@",
            "redis://:@?",
            "redis://@,@,://@",
            "é://ü:ö@ß?pässwörd=x&pass=ü",
            "日本語,@,://,?,&",
            "\u{0}@\u{0}",
            "a@b@c,d@e",
            ",u:p@h",
            "redis://h?pass=a,,b",
            "🦀://🦀:🦀@🦀?🦀=🦀&pass=🦀",
        ] {
            let _ = redis_url(url);
        }
        assert_eq!(redis_url(""), "");
        assert_eq!(redis_url(",,"), ",,");
        assert_eq!(redis_url("é://ü:ö@ß?pass=ü"), "é://ü:***@ß?pass=***");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Two {
        A,
        B,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Three {
        A,
        B,
        C,
    }

    #[derive(Debug, Deserialize)]
    enum Never {}

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Args {
        level: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum Either {
        Number(u32),
        Flag(bool),
    }

    #[derive(Debug, Deserialize)]
    #[serde(try_from = "String")]
    struct Checked;

    impl TryFrom<String> for Checked {
        type Error = String;
        fn try_from(value: String) -> Result<Checked, String> {
            Err(format!("bad key {value}"))
        }
    }

    /// What `decode_error` makes of decoding `json` as a `T`.
    fn decoded<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        decode_error(&serde_json::from_str::<T>(json).unwrap_err())
    }

    #[test]
    fn decode_errors_keep_the_structure_and_drop_the_values() {
        for (got, want) in [
            (
                decoded::<u32>(r#""sk_live_abc""#),
                "invalid type: a string, expected u32 at line 1 column 13",
            ),
            (
                decoded::<u8>("-5"),
                "invalid value: an integer, expected u8 at line 1 column 2",
            ),
            (
                decoded::<u32>("1.5"),
                "invalid type: a floating point number, expected u32 at line 1 column 3",
            ),
            (
                decoded::<f32>("true"),
                "invalid type: a boolean, expected f32 at line 1 column 4",
            ),
            (
                decoded::<u32>("null"),
                "invalid type: null, expected u32 at line 1 column 4",
            ),
            (
                decoded::<u32>("{}"),
                "invalid type: a map, expected u32 at line 1 column 0",
            ),
            (
                decoded::<u32>("[]"),
                "invalid type: a sequence, expected u32 at line 1 column 0",
            ),
            (
                decoded::<char>(r#""sk""#),
                "invalid value: a string, expected a character at line 1 column 4",
            ),
            (
                decoded::<Two>(r#""sk_live""#),
                "unknown variant, expected `A` or `B` at line 1 column 9",
            ),
            (
                decoded::<Three>(r#""sk_live""#),
                "unknown variant, expected one of `A`, `B`, `C` at line 1 column 9",
            ),
            (
                decoded::<Never>(r#""sk_live""#),
                "unknown variant, there are no variants at line 1 column 9",
            ),
            (
                decoded::<Two>(r#"{"A": 12345}"#),
                "invalid type: an integer, expected unit at line 1 column 11",
            ),
            (
                decoded::<(u32, u32)>("[1]"),
                "invalid length 1, expected a tuple of size 2 at line 1 column 3",
            ),
            (
                decoded::<(u32, u32)>(r#"[1, "sk_live"]"#),
                "invalid type: a string, expected u32 at line 1 column 13",
            ),
            (
                decoded::<Args>(r#"{"level": 300}"#),
                "invalid value: an integer, expected u8 at line 1 column 13",
            ),
            (
                decoded::<Args>(r#"{"level": "sk_live"}"#),
                "invalid type: a string, expected u8 at line 1 column 19",
            ),
            (
                decoded::<Args>("{}"),
                "missing field `level` at line 1 column 2",
            ),
            (
                decoded::<Args>(r#"{"level": 1, "level": 2}"#),
                "duplicate field `level` at line 1 column 20",
            ),
            (
                decoded::<Args>(r#"{"sk_live": 1}"#),
                "unknown field, expected `level` at line 1 column 10",
            ),
            (
                decoded::<Either>(r#""sk_live""#),
                "data did not match any variant of untagged enum Either",
            ),
            (
                decoded::<Checked>(r#""sk_live""#),
                "invalid data (message hidden)",
            ),
            // Not data errors: fixed wordings, kept.
            (
                decoded::<Args>("{"),
                "EOF while parsing an object at line 1 column 1",
            ),
            (
                decoded::<u32>("sk_live"),
                "expected value at line 1 column 1",
            ),
            (
                decoded::<(u32, u32)>("[1,2,3]"),
                "trailing characters at line 1 column 6",
            ),
        ] {
            assert_eq!(got, want);
        }
        let error = serde_json::from_value::<u32>(serde_json::json!("sk_live")).unwrap_err();
        assert_eq!(decode_error(&error), "invalid type: a string, expected u32");
    }

    #[test]
    fn values_that_look_like_the_message_stay_hidden() {
        let tricky = [
            r#""sk_live\", expected u32 at line 9 column 9""#,
            r#""sk_live`, expected u32 at line 9 column 9 `x`""#,
            r#""sk_live\\", expected u32""#,
            r#""sk_live`, expected `A` or `B`""#,
            r#""sk_live`, there are no variants""#,
            r#""sk_live\"\\\n\u0000`""#,
        ];
        for json in tricky {
            for got in [
                decoded::<u32>(json),
                decoded::<Args>(&format!(r#"{{"level": {json}}}"#)),
                decoded::<Args>(&format!(r#"{{{json}: 1}}"#)),
                decoded::<Two>(json),
                decoded::<Never>(json),
                decoded::<Checked>(json),
            ] {
                assert!(!got.contains("sk_live"), "{json} -> {got}");
            }
        }
        assert_eq!(
            decoded::<u32>(tricky[0]),
            "invalid type: a string, expected u32 at line 1 column 44"
        );
        assert_eq!(
            decoded::<Two>(tricky[3]),
            "unknown variant, expected `A` or `B` at line 1 column 31"
        );
        assert_eq!(
            decoded::<Never>(tricky[3]),
            "unknown variant, there are no variants at line 1 column 31"
        );
    }

    #[test]
    fn odd_messages_do_not_panic_or_leak() {
        for (message, want) in [
            (
                "invalid type: character ```, expected u32",
                "invalid type: a character, expected u32",
            ),
            (
                "invalid type: unit value, expected u32",
                "invalid type: a unit value, expected u32",
            ),
            (
                "invalid type: SECRET, expected u32",
                "invalid type: (value hidden)",
            ),
            (
                "invalid type: string \"SECRET",
                "invalid type: (value hidden)",
            ),
            (
                "invalid type: string \"SECRET\\",
                "invalid type: (value hidden)",
            ),
            ("invalid type: string \"SECRET\"", "invalid type: a string"),
            (
                "invalid value: integer `SECRET",
                "invalid value: (value hidden)",
            ),
            (
                "invalid value: character `",
                "invalid value: (value hidden)",
            ),
            ("invalid value: mapSECRET", "invalid value: (value hidden)"),
            ("invalid type: ", "invalid type: (value hidden)"),
            (
                "invalid length SECRET, expected x",
                "invalid length (value hidden)",
            ),
            (
                "invalid length , expected x",
                "invalid length (value hidden)",
            ),
            ("unknown variant `SECRET", "unknown variant (name hidden)"),
            ("unknown variant `", "unknown variant (name hidden)"),
            (
                "unknown field `SECRET`, expected SECRET",
                "unknown field (name hidden)",
            ),
            (
                "missing field `SECRET` and more",
                "invalid data (message hidden)",
            ),
            ("missing field `", "invalid data (message hidden)"),
            ("SECRET", "invalid data (message hidden)"),
            ("", "invalid data (message hidden)"),
            ("invalid type", "invalid data (message hidden)"),
            ("é🦀 SECRET", "invalid data (message hidden)"),
        ] {
            let got = data_message(message);
            assert_eq!(got, want, "{message}");
            assert!(!got.contains("SECRET"), "{message} -> {got}");
        }
    }
}
