//! The serialized forms dtask keeps in Redis: the job envelope, the outcome record behind a
//! job's result key, and the dead record. All are JSON, so `redis-cli` and admin tools can read
//! them; field names are short because a queue may hold millions of envelopes.

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The newest envelope format this worker reads: 2 is 1 with a task version (`tv`). A job
/// without one is written as version 1, so that every worker reads it; a job of a task version
/// above 1 is written as version 2, so that a worker from before task versions puts it off
/// (for a newer worker) instead of reading its arguments as the parameters it knows.
pub(crate) const ENVELOPE_VERSION: u32 = 2;

/// The envelope format of a job of `task_version` (see [`ENVELOPE_VERSION`]).
pub(crate) fn format_for(task_version: u32) -> u32 {
    if task_version > 1 { 2 } else { 1 }
}

/// The digits of a job id, in order.
const ID_DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The value of `b` among [`ID_DIGITS`] (without looking through them: ids are read per job).
fn id_digit(b: u8) -> Option<u64> {
    let value = match b {
        b'0'..=b'9' => b - b'0',
        b'A'..=b'Z' => b - b'A' + 10,
        b'a'..=b'z' => b - b'a' + 36,
        _ => return None,
    };
    Some(u64::from(value))
}
/// How many digits a job id has.
const ID_LEN: usize = 22;
/// How many of them spell the creation time.
const TIME_DIGITS: usize = 9;

/// The id of a job: unique, time-ordered, and printable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A fresh, unique id: 22 base-62 digits, the first 9 the time in milliseconds and the
    /// other 13 random (77 bits), so that ids sort by creation time as text too. Drawn from the
    /// thread's random generator: no system call per id.
    pub(crate) fn generate() -> JobId {
        JobId::at_ms(crate::clock::now_ms())
    }

    /// A fresh, unique id created at `millis` (ms since the Unix epoch).
    pub(crate) fn at_ms(mut millis: u64) -> JobId {
        let mut text = [b'0'; ID_LEN];
        for digit in text[..TIME_DIGITS].iter_mut().rev() {
            *digit = ID_DIGITS[(millis % 62) as usize];
            millis /= 62;
        }
        let mut rng = rand::rng();
        let (mut high, mut low): (u64, u64) = (rng.random(), rng.random());
        for (i, digit) in text[TIME_DIGITS..].iter_mut().enumerate() {
            let source = if i < 7 { &mut high } else { &mut low };
            *digit = ID_DIGITS[(*source % 62) as usize];
            *source /= 62;
        }
        JobId(text.iter().map(|&b| char::from(b)).collect())
    }

    /// When the job `id` was created (ms since the Unix epoch), read from the id; `None` for an
    /// id dtask did not make (not 22 base-62 digits, or a time before 2020 or after 2200).
    pub(crate) fn created_ms(id: &str) -> Option<u64> {
        /// 2020-01-01 and 2200-01-01, ms since the Unix epoch.
        const PLAUSIBLE: std::ops::Range<u64> = 1_577_836_800_000..7_258_118_400_000;
        if id.len() != ID_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let ms = id
            .bytes()
            .take(TIME_DIGITS)
            .try_fold(0u64, |ms, b| ms.checked_mul(62)?.checked_add(id_digit(b)?))?;
        PLAUSIBLE.contains(&ms).then_some(ms)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for JobId {
    fn from(id: String) -> JobId {
        JobId(id)
    }
}

impl From<&str> for JobId {
    fn from(id: &str) -> JobId {
        JobId(id.to_owned())
    }
}

impl std::str::FromStr for JobId {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<JobId, Self::Err> {
        Ok(JobId(s.to_owned()))
    }
}

/// One job as it travels through the queues.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// Format version.
    pub(crate) v: u32,
    /// Unique job id.
    pub(crate) id: JobId,
    /// The task's registered name.
    #[serde(rename = "t")]
    pub(crate) task: String,
    /// The arguments, as a JSON array (or `null` for a task without arguments).
    #[serde(rename = "a")]
    pub(crate) args: Box<RawValue>,
    /// The version of its task's parameters the arguments follow (`#[task(version = ..)]`).
    #[serde(
        rename = "tv",
        default = "first_version",
        skip_serializing_if = "is_first_version",
        deserialize_with = "null_as_first_version"
    )]
    pub(crate) version: u32,
    /// Attempts already made (0 for a job that has not run yet).
    #[serde(rename = "n", default, skip_serializing_if = "is_zero")]
    pub(crate) attempt: u32,
    /// The retry limit for this job, when the enqueuer overrode the task's default.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<u32>,
    /// When the job was first enqueued, ms since the epoch.
    #[serde(rename = "at")]
    pub(crate) enqueued_at_ms: u64,
    /// The error of the last failed attempt.
    #[serde(rename = "err", default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
    /// Headers the enqueuing client's middleware gave the job (a tenant, a trace id).
    #[serde(
        rename = "h",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub(crate) headers: BTreeMap<String, String>,
}

/// Reads a map that a producer may have written as `null` (as `r` and `err` may be).
fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Reads a task version that a producer may have written as `null` (the first).
fn null_as_first_version<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u32, D::Error> {
    Ok(Option::<u32>::deserialize(deserializer)?.unwrap_or(1))
}

/// A task's first version, which an envelope without `tv` follows.
pub(crate) fn first_version() -> u32 {
    1
}

/// Whether `version` is a task's first (left out of an envelope or a workflow step).
pub(crate) fn is_first_version(version: &u32) -> bool {
    *version == 1
}

impl Envelope {
    /// Serializes the envelope; envelopes hold only strings, numbers and valid JSON, so this
    /// cannot fail.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a worker can read of an envelope it cannot run (a newer version, say): enough to tell
/// how long the job has waited and which task it is for.
#[derive(Debug, Deserialize)]
pub(crate) struct Peek {
    /// The job's id.
    #[serde(default)]
    pub(crate) id: Option<JobId>,
    /// The task's registered name.
    #[serde(rename = "t", default)]
    pub(crate) task: String,
    /// When the job was first enqueued, ms since the epoch.
    #[serde(rename = "at")]
    pub(crate) enqueued_at_ms: u64,
}

/// Reads the task and enqueue time of any envelope, whatever its version; None when the payload
/// holds no such fields.
pub(crate) fn peek(payload: &[u8]) -> Option<Peek> {
    serde_json::from_slice(payload).ok()
}

/// Why a payload fetched from a queue is not a job this worker can run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("payload is not valid UTF-8 JSON: {0}")]
    NotJson(String),
    #[error("payload is not a dtask job envelope: {0}")]
    NotEnvelope(String),
    #[error(
        "envelope version {0} is newer than this worker understands ({ENVELOPE_VERSION}); upgrade the worker"
    )]
    NewerVersion(u32),
}

/// Decodes a fetched payload, telling malformed bytes, malformed JSON and foreign JSON apart.
pub(crate) fn decode(payload: &[u8]) -> Result<Envelope, DecodeError> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| DecodeError::NotJson(format!("invalid UTF-8 ({e})")))?;
    // One pass for a good payload; a bad one is read again to tell why (not JSON, or JSON that
    // is no envelope), as the two passes below always did.
    let envelope = match serde_json::from_str::<Envelope>(text) {
        Ok(envelope) => envelope,
        Err(_) => return Err(why_not_an_envelope(text)),
    };
    if envelope.v > ENVELOPE_VERSION {
        return Err(DecodeError::NewerVersion(envelope.v));
    }
    Ok(envelope)
}

/// Why `text`, which does not decode as an envelope, is not one.
fn why_not_an_envelope(text: &str) -> DecodeError {
    let value: &RawValue = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return DecodeError::NotJson(e.to_string()),
    };
    match serde_json::from_str::<Envelope>(value.get()) {
        Err(e) => DecodeError::NotEnvelope(crate::redact::decode_error(&e)),
        Ok(_) => DecodeError::NotEnvelope("the payload does not read as an envelope".to_owned()),
    }
}

/// The two-pass decode [`decode`] replaced, kept to check that both read every payload alike.
#[cfg(test)]
fn decode_in_two_passes(payload: &[u8]) -> Result<Envelope, DecodeError> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| DecodeError::NotJson(format!("invalid UTF-8 ({e})")))?;
    let value: &RawValue =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    // The error names what was expected and where, never the values found (payloads may hold
    // secrets, and the reason reaches logs and the dead set).
    let envelope: Envelope = serde_json::from_str(value.get())
        .map_err(|e| DecodeError::NotEnvelope(crate::redact::decode_error(&e)))?;
    if envelope.v > ENVELOPE_VERSION {
        return Err(DecodeError::NewerVersion(envelope.v));
    }
    Ok(envelope)
}

/// Where a job stands, as its result record says.
///
/// Running and retrying are passing states, written best effort as the job moves (see
/// `lua/set_passing.lua`): a final outcome (succeeded, dead) is never replaced by one of them.
/// Before it runs, a job has a short record instead ([`QUEUED_MARKER`], [`scheduled_marker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutcomeState {
    /// An attempt (`attempts`, counting it) started at `at_ms`; `progress` is its latest
    /// progress, if it told any.
    Running,
    /// The job succeeded; the record holds its value.
    Succeeded,
    /// An attempt failed; another is scheduled for `at_ms`.
    Retrying,
    /// The job is in the dead set since `at_ms`.
    Dead,
}

/// What is kept under a job's result key: its latest outcome. (A flat struct rather than a
/// tagged enum: serde cannot buffer a `RawValue` through a tag.)
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OutcomeRecord {
    pub(crate) state: OutcomeState,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// When it finished, when it will be retried, or when it died, ms since the epoch.
    pub(crate) at_ms: u64,
    /// The JSON-encoded return value, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<Box<RawValue>>,
    /// The last error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The latest progress a running attempt told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) progress: Option<crate::events::Progress>,
}

impl OutcomeRecord {
    /// The record of a job that succeeded after `attempts`, at `at_ms`, with `value` (JSON
    /// text; text that is not JSON is left out): what [`OutcomeRecord::to_json`] writes for
    /// it, written by hand, as one is written per job.
    pub(crate) fn succeeded_json(attempts: u32, at_ms: u64, value: &str) -> String {
        let value = serde_json::from_str::<&RawValue>(value).ok();
        let mut out = String::with_capacity(96 + value.map_or(0, |value| value.get().len()));
        out.push_str("{\"state\":\"succeeded\",\"attempts\":");
        crate::events::push_digits(&mut out, u64::from(attempts));
        out.push_str(",\"at_ms\":");
        crate::events::push_digits(&mut out, at_ms);
        if let Some(value) = value {
            out.push_str(",\"value\":");
            out.push_str(value.get());
        }
        out.push('}');
        out
    }
}

/// The short record of a job waiting in its queue (enqueued, or back after its worker died):
/// a queue may hold millions, so it is one byte rather than a JSON record.
pub(crate) const QUEUED_MARKER: &str = "q";

/// The short record of a delayed job, due at `due_ms`: `s<due_ms>`.
pub(crate) fn scheduled_marker(due_ms: u64) -> String {
    format!("s{due_ms}")
}

/// What a short record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Waiting in its queue.
    Queued,
    /// Delayed, due at this time (ms since the epoch).
    Scheduled(u64),
    /// A workflow step waiting for the steps before it (`w`).
    Waiting,
}

/// What a short record says; None when `record` is not a short record (a JSON one).
pub(crate) fn read_marker(record: &str) -> Option<Marker> {
    match record {
        QUEUED_MARKER => Some(Marker::Queued),
        crate::workflow::WAITING_MARKER => Some(Marker::Waiting),
        _ => record
            .strip_prefix('s')?
            .parse()
            .ok()
            .map(Marker::Scheduled),
    }
}

impl OutcomeRecord {
    /// A record with no value, error nor progress.
    pub(crate) fn bare(state: OutcomeState, attempts: u32, at_ms: u64) -> OutcomeRecord {
        OutcomeRecord {
            state,
            attempts,
            at_ms,
            value: None,
            error: None,
            progress: None,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A member of a queue's dead set: a job that will not run again, and why.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DeadRecord {
    /// The job's id, or a fresh one when the payload had none.
    pub(crate) id: JobId,
    /// The task's name, when the payload named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) task: Option<String>,
    /// Why the job died.
    pub(crate) error: String,
    /// How many times it ran.
    pub(crate) attempts: u32,
    /// When it died, ms since the epoch.
    pub(crate) died_at_ms: u64,
    /// The job's envelope, when the payload was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) job: Option<Box<RawValue>>,
    /// The payload as it was found, when it was not an envelope (lossily decoded as UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) raw: Option<String>,
}

impl DeadRecord {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_digits_are_their_places() {
        for (place, &b) in ID_DIGITS.iter().enumerate() {
            assert_eq!(id_digit(b), Some(place as u64));
        }
        assert_eq!(id_digit(b'-'), None);
    }

    #[test]
    fn one_pass_decodes_and_fails_as_two_passes_did() {
        let payloads: [&[u8]; 9] = [
            br#"{"v":1,"id":"abc","t":"mail.send","a":[1,"x"],"at":5}"#,
            br#"  {"v":1,"id":"abc","t":"mail.send","a":null,"at":5,"h":{"k":"v"},"n":2}  "#,
            br#"{"v":99,"id":"abc","t":"x","a":[],"at":5}"#,
            br#"{"v":1,"id":"abc","t":"x","a":[],"at":5} trailing"#,
            br#"{"v":"one","id":"abc","t":"x","a":[],"at":5}"#,
            br#"{"v":1,"id":"abc","t":"x","a":[],"#,
            br#"{"v":1,"t":"x","a":[],"at":5}"#,
            b"not json",
            b"\xff\xfe",
        ];
        for payload in payloads {
            let one = format!("{:?}", decode(payload));
            let two = format!("{:?}", decode_in_two_passes(payload));
            assert_eq!(one, two, "{}", String::from_utf8_lossy(payload));
        }
    }

    #[test]
    fn a_succeeded_record_written_by_hand_reads_as_serde_writes_it() {
        for value in [
            "null",
            "42",
            " {\"a\": [1, \"x\"]} ",
            "\"é\\n\"",
            "not json",
            "",
        ] {
            let by_serde = OutcomeRecord {
                state: OutcomeState::Succeeded,
                attempts: 3,
                at_ms: 1_764_485_000_123,
                value: RawValue::from_string(value.to_owned()).ok(),
                error: None,
                progress: None,
            }
            .to_json();
            assert_eq!(
                OutcomeRecord::succeeded_json(3, 1_764_485_000_123, value),
                by_serde,
                "{value:?}"
            );
        }
    }

    fn envelope(args: &str) -> Envelope {
        Envelope {
            v: 1,
            id: JobId::from("j1"),
            task: "t".into(),
            args: RawValue::from_string(args.into()).unwrap(),
            version: 1,
            attempt: 0,
            retries: None,
            enqueued_at_ms: 1,
            headers: Default::default(),
            last_error: None,
        }
    }

    #[test]
    fn a_task_version_is_carried_and_null_reads_as_the_first() {
        let job = decode(br#"{"v":2,"id":"a","t":"t","a":[],"tv":3,"at":1}"#).unwrap();
        assert_eq!(job.version, 3);
        assert!(job.to_json().contains(r#""tv":3"#));
        let job = decode(br#"{"v":1,"id":"a","t":"t","a":[],"tv":null,"at":1}"#).unwrap();
        assert_eq!(job.version, 1);
        assert!(!job.to_json().contains("tv"), "version 1 is left out");
        assert_eq!((format_for(1), format_for(2)), (1, 2));
    }

    #[test]
    fn envelope_round_trips_and_stays_compact() {
        let json = envelope("[7,640]").to_json();
        assert_eq!(json, r#"{"v":1,"id":"j1","t":"t","a":[7,640],"at":1}"#);
        let back = decode(json.as_bytes()).unwrap();
        assert_eq!(back.args.get(), "[7,640]");
    }

    #[test]
    fn an_envelope_of_any_version_can_be_peeked_at() {
        let newer = r#"{"v":9,"id":"j","t":"mail.send","a":null,"at":42,"new":{}}"#;
        let peek = peek(newer.as_bytes()).unwrap();
        assert_eq!((peek.task.as_str(), peek.enqueued_at_ms), ("mail.send", 42));
        assert_eq!(peek.id, Some(JobId::from("j")));
        assert!(super::peek(b"not json").is_none());
    }

    #[test]
    fn ids_are_22_base62_digits_and_sort_by_creation() {
        let first = JobId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = JobId::generate();
        assert_eq!(first.as_str().len(), 22);
        assert!(first.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(first < second);
        let now = crate::clock::now_ms();
        let created = JobId::created_ms(second.as_str()).unwrap();
        assert!(
            created <= now && now - created < 60_000,
            "{created} vs {now}"
        );
        let at = 1_764_485_000_042;
        assert_eq!(JobId::created_ms(JobId::at_ms(at).as_str()), Some(at));
        // Ids that only look like dtask's: a "time" no job could have been created at.
        assert_eq!(JobId::created_ms(JobId::at_ms(42).as_str()), None);
        assert_eq!(JobId::created_ms("zzzzzzzzzzzzzzzzzzzzzz"), None);
        assert_eq!(JobId::created_ms("invoice-42"), None);
        assert_eq!(JobId::created_ms("zzzzzzzzzzzzzzzzzzzzz-"), None);
    }

    /// Inputs kept from fuzzing (`fuzz/`), and edge cases next to them: none may panic, and
    /// every envelope among them must survive re-encoding.
    #[test]
    fn fuzz_regressions() {
        let cases: &[&[u8]] = &[
            include_bytes!("../../fuzz/seeds/seed1"),
            include_bytes!("../../fuzz/seeds/seed2"),
            b"",
            b"{}",
            b"null",
            br#"{"v":1,"id":"a","t":"t","a":"\ud800","at":1}"#,
            br#"{"v":1,"id":"a","t":"t","a":1e999,"at":1}"#,
            br#"{"v":1,"id":"a","t":"t","a":[],"at":18446744073709551615,"n":4294967295}"#,
            br#"{"d":1,"d":2,"v":1,"id":"a","t":"t","a":[],"at":1}"#,
            &[b'['; 100_000],
        ];
        for case in cases {
            crate::__private::fuzz_envelope(case);
        }
    }

    #[test]
    fn decode_tells_bad_bytes_bad_json_and_foreign_json_apart() {
        assert!(matches!(
            decode(&[0xff, 0xfe]),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(decode(b"{\"v\":1,"), Err(DecodeError::NotJson(_))));
        assert!(matches!(
            decode(b"{\"hello\":1}"),
            Err(DecodeError::NotEnvelope(_))
        ));
        let newer = r#"{"v":9,"id":"j","t":"t","q":"q","a":null,"at":1}"#;
        assert!(matches!(
            decode(newer.as_bytes()),
            Err(DecodeError::NewerVersion(9))
        ));
    }
}
