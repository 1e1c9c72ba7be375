//! Parses the options of `#[task(...)]`: `queue`, `partitions`, `retries`, `timeout`, `result_ttl`, `cron`,
//! `tz`, `unique_for`, `rate`, `max_running`, `version`, `migrate`, `name`, `crate`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, MetaNameValue, Token};

/// The options a user may give, as written.
#[derive(Default)]
pub(crate) struct TaskArgs {
    pub(crate) queue: Option<LitStr>,
    pub(crate) retries: Option<u32>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) result_ttl_ms: Option<u64>,
    pub(crate) name: Option<LitStr>,
    pub(crate) crate_path: Option<syn::Path>,
    /// A cron pattern, checked here: the task is then enqueued on that schedule.
    pub(crate) cron: Option<LitStr>,
    /// The time zone of `cron` (an IANA name, checked by the worker).
    pub(crate) tz: Option<LitStr>,
    /// The default uniqueness window, in ms.
    pub(crate) unique_for_ms: Option<u64>,
    /// The task's rate limit, as written (checked by a constant of the runtime's).
    pub(crate) rate: Option<LitStr>,
    /// The most runs of the task at once, across every worker.
    pub(crate) max_running: Option<u32>,
    /// How many partitions the task's queue is split into (`partitions = 8`).
    pub(crate) partitions: Option<u16>,
    /// The version of the task's parameters (1 when not given).
    pub(crate) version: Option<u32>,
    /// The fn that converts a job of an older version.
    pub(crate) migrate: Option<syn::Path>,
}

const VALID_KEYS: &str = "`queue`, `partitions`, `retries`, `timeout`, `result_ttl`, `cron`, `tz`, `unique_for`, `rate`, `max_running`, `version`, `migrate`, `name`, `crate`";

impl TaskArgs {
    /// Parses the attribute's arguments, reporting every mistake, each on its own tokens. The
    /// options read well are kept beside the errors (the others are left at their defaults),
    /// so that the task is still generated and code using it adds no errors of its own.
    pub(crate) fn parse(tokens: TokenStream) -> (TaskArgs, Option<syn::Error>) {
        let pairs = match Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(tokens) {
            Ok(pairs) => pairs,
            Err(error) => return (TaskArgs::default(), Some(error)),
        };
        let mut args = TaskArgs::default();
        let mut errors: Option<syn::Error> = None;
        let mut push = |error: syn::Error| match &mut errors {
            Some(errors) => errors.combine(error),
            None => errors = Some(error),
        };
        let mut cron_given = false;
        for pair in pairs {
            let key = pair.path.get_ident().map(ToString::to_string);
            cron_given |= key.as_deref() == Some("cron");
            let result = match key.as_deref() {
                Some("queue") => string(&pair.value, "queue").and_then(|queue| {
                    check_queue(&queue)?;
                    args.queue = Some(queue);
                    Ok(())
                }),
                Some("name") => string(&pair.value, "name").and_then(|name| {
                    if name.value().is_empty() {
                        return Err(syn::Error::new(name.span(), "`name` must not be empty"));
                    }
                    args.name = Some(name);
                    Ok(())
                }),
                Some("retries") => {
                    integer(&pair.value, "retries", "5").map(|n| args.retries = Some(n))
                }
                Some("rate") => string(&pair.value, "rate").map(|rate| args.rate = Some(rate)),
                Some("max_running") => integer(&pair.value, "max_running", "5").and_then(|n| {
                    if n == 0 {
                        return Err(syn::Error::new_spanned(
                            &pair.value,
                            "`max_running` must be at least 1",
                        ));
                    }
                    args.max_running = Some(n);
                    Ok(())
                }),
                Some("partitions") => integer(&pair.value, "partitions", "8").and_then(|n: u32| {
                    if !(1..=128).contains(&n) {
                        return Err(syn::Error::new_spanned(
                            &pair.value,
                            "`partitions` must be between 1 and 128",
                        ));
                    }
                    args.partitions = Some(n as u16);
                    Ok(())
                }),
                Some("timeout") => string(&pair.value, "timeout").and_then(|text| {
                    args.timeout_ms = Some(parse_duration_ms(&text, "timeout", false)?);
                    Ok(())
                }),
                Some("result_ttl") => string(&pair.value, "result_ttl").and_then(|text| {
                    args.result_ttl_ms = Some(parse_duration_ms(&text, "result_ttl", true)?);
                    Ok(())
                }),
                Some("cron") => string(&pair.value, "cron").and_then(|pattern| {
                    <croner::Cron as core::str::FromStr>::from_str(&pattern.value()).map_err(
                        |error| {
                            syn::Error::new(
                                pattern.span(),
                                format!(
                                    "invalid cron pattern ({}): expected six fields `sec min hour day-of-month month day-of-week` (or five, without seconds), such as \"0 0 7 * * *\"",
                                    error.to_string().trim_end_matches('.')
                                ),
                            )
                        },
                    )?;
                    args.cron = Some(pattern);
                    Ok(())
                }),
                Some("tz") => string(&pair.value, "tz").map(|tz| args.tz = Some(tz)),
                Some("version") => integer(&pair.value, "version", "2").and_then(|n| {
                    if n == 0 {
                        return Err(syn::Error::new_spanned(
                            &pair.value,
                            "`version` counts from 1 (a task without `version` is version 1)",
                        ));
                    }
                    args.version = Some(n);
                    Ok(())
                }),
                Some("migrate") => match &pair.value {
                    Expr::Path(path) => {
                        args.migrate = Some(path.path.clone());
                        Ok(())
                    }
                    other => Err(syn::Error::new_spanned(
                        other,
                        "`migrate` takes the name of a fn, such as `migrate = from_v1`",
                    )),
                },
                Some("unique_for") => string(&pair.value, "unique_for").and_then(|text| {
                    args.unique_for_ms = Some(parse_duration_ms(&text, "unique_for", false)?);
                    Ok(())
                }),
                Some("crate") => string(&pair.value, "crate").and_then(|path| {
                    args.crate_path = Some(path.parse()?);
                    Ok(())
                }),
                _ => Err(syn::Error::new_spanned(
                    &pair.path,
                    format!("unknown option; expected one of: {VALID_KEYS}"),
                )),
            };
            if let Err(error) = result {
                push(error);
            }
        }
        if let Some(migrate) = &args.migrate
            && args.version.is_none_or(|version| version < 2)
        {
            push(syn::Error::new_spanned(
                migrate,
                "`migrate` converts jobs of an older version of the task: give it `version = 2` (or more) too",
            ));
            args.migrate = None;
        }
        if let (Some(tz), false) = (&args.tz, cron_given) {
            push(syn::Error::new(
                tz.span(),
                "`tz` is the time zone of a `cron` schedule: add `cron = \"..\"`",
            ));
            args.tz = None;
        }
        (args, errors)
    }
}

fn string(value: &Expr, key: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a string literal, such as `{key} = \"...\"`"),
        )),
    }
}

fn integer(value: &Expr, key: &str, example: &str) -> syn::Result<u32> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        }) => n.base10_parse(),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a whole number, such as `{key} = {example}`"),
        )),
    }
}

fn check_queue(queue: &LitStr) -> syn::Result<()> {
    let name = queue.value();
    if name.is_empty() || name.contains(['{', '}']) {
        return Err(syn::Error::new(
            queue.span(),
            "a queue name must be non-empty and hold no `{` or `}`",
        ));
    }
    Ok(())
}

/// Parses `"500ms"`, `"30s"`, `"5m"` or `"1h"` into milliseconds, for the option `key`; zero
/// only when `zero_ok`.
fn parse_duration_ms(text: &LitStr, key: &str, zero_ok: bool) -> syn::Result<u64> {
    let value = text.value();
    let value = value.trim();
    let digits = value.len() - value.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = value.split_at(digits);
    let factor = match unit.trim() {
        "ms" => Some(1),
        "s" => Some(1_000),
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        _ => None,
    };
    match (number.parse::<u64>(), factor) {
        (Ok(n), Some(factor)) if n > 0 || zero_ok => n
            .checked_mul(factor)
            .ok_or_else(|| syn::Error::new(text.span(), format!("`{key}` is too long"))),
        _ => Err(syn::Error::new(
            text.span(),
            format!(
                "invalid `{key}` \"{value}\"; expected a {} whole number followed by `ms`, `s`, `m` or `h`, such as \"30s\"",
                if zero_ok { "non-negative" } else { "positive" }
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> syn::Result<u64> {
        parse_duration_ms(
            &LitStr::new(text, proc_macro2::Span::call_site()),
            "timeout",
            false,
        )
    }

    #[test]
    fn durations() {
        assert_eq!(ms("500ms").unwrap(), 500);
        assert_eq!(ms("30s").unwrap(), 30_000);
        assert_eq!(ms("5m").unwrap(), 300_000);
        assert_eq!(ms("1h").unwrap(), 3_600_000);
        assert!(ms("0s").is_err());
        assert!(ms("30").is_err());
        assert!(ms("s").is_err());
        assert!(ms("1.5s").is_err());
        let zero = LitStr::new("0s", proc_macro2::Span::call_site());
        assert_eq!(parse_duration_ms(&zero, "result_ttl", true).unwrap(), 0);
    }
}
