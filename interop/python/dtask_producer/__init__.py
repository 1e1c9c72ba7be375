"""Enqueue jobs for dtask workers (Rust) from Python: dtask's wire format, version 1.

See docs/wire-format.md in the dtask repository for what is written and why.
"""

import json
import secrets
import time

__all__ = ["Producer", "new_job_id", "ENVELOPE_VERSION"]

ENVELOPE_VERSION = 1
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# How long a job's queued record is kept (dtask's default result TTL), in ms.
_RECORD_TTL_MS = 3_600_000


def new_job_id(now_ms=None):
    """A dtask job id: 22 base-62 digits, 9 of the time in ms, 13 random."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    head = []
    for _ in range(9):
        head.append(_DIGITS[millis % 62])
        millis //= 62
    tail = "".join(secrets.choice(_DIGITS) for _ in range(13))
    return "".join(reversed(head)) + tail


def _results_key(prefix, job_id):
    """The results hash of a job id, as the wire format page says."""
    millis = 0
    if len(job_id) == 22 and all(c in _DIGITS for c in job_id):
        for c in job_id[:9]:
            millis = millis * 62 + _DIGITS.index(c)
        if 1_577_836_800_000 <= millis < 7_258_118_400_000:
            return "%s:results:{t%d}" % (prefix, millis // 10)
    return "%s:results:{j%s}" % (prefix, job_id)


class Producer:
    """Enqueues jobs into the queues of dtask workers that share `prefix` (default "dtask")."""

    def __init__(self, client, prefix="dtask"):
        self._redis = client
        self._prefix = prefix

    def enqueue(self, task, args, queue, delay=None, retries=None, headers=None, job_id=None,
                version=None):
        """Enqueues one job of `task` with `args` (a list, one element per parameter) into
        `queue`, to run now or after `delay` seconds; returns its id. `version` is the version
        of the Rust task's parameters `args` follows (`#[task(version = ..)]`; 1 when None)."""
        return self.enqueue_many(task, [args], queue, delay, retries, headers,
                                 [job_id] if job_id else None, version)[0]

    def enqueue_many(self, task, args_list, queue, delay=None, retries=None, headers=None,
                     job_ids=None, version=None):
        """Enqueues one job of `task` per element of `args_list` into `queue`, in one round
        trip; returns their ids, in order."""
        now_ms = int(time.time() * 1000)
        due_ms = None
        if delay is not None:
            server_s, server_us = self._redis.time()
            due_ms = server_s * 1000 + server_us // 1000 + int(delay * 1000)
        ids, payloads = [], []
        for i, args in enumerate(args_list):
            if args is not None and not isinstance(args, (list, tuple)):
                raise TypeError("args must be a list, one element per parameter of the task")
            job_id = job_ids[i] if job_ids else new_job_id(now_ms)
            envelope = {"v": ENVELOPE_VERSION, "id": job_id, "t": task,
                        "a": list(args) if args is not None else None, "at": now_ms}
            if version is not None and int(version) != 1:
                # Format 2: a worker from before task versions puts the job off.
                envelope["v"] = 2
                envelope["tv"] = int(version)
            if retries is not None:
                envelope["r"] = int(retries)
            if headers:
                envelope["h"] = {str(k): str(v) for k, v in headers.items()}
            # allow_nan=False: a worker refuses NaN and infinities; say so here instead.
            payloads.append(json.dumps(envelope, separators=(",", ":"), allow_nan=False))
            ids.append(job_id)
        if not payloads:
            return []
        record = "q" if due_ms is None else "s%d" % due_ms
        ttl_ms = _RECORD_TTL_MS + (0 if due_ms is None else max(0, due_ms - now_ms))
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd("%s:queues" % self._prefix, queue)
        # The records go before the jobs: a quick job's outcome lands after its record.
        for job_id in ids:
            key = _results_key(self._prefix, job_id)
            pipe.hset(key, job_id, record)
            pipe.execute_command("PEXPIRE", key, ttl_ms, "NX")
            pipe.execute_command("PEXPIRE", key, ttl_ms, "GT")
        if due_ms is None:
            pipe.rpush("%s:{%s}:pending" % (self._prefix, queue), *payloads)
        else:
            pipe.zadd("%s:{%s}:scheduled" % (self._prefix, queue),
                      {payload: due_ms for payload in payloads})
        pipe.execute()
        return ids

    def status(self, job_id):
        """Where the job is: "queued", "scheduled", "running", "retrying", "succeeded",
        "dead", or None when no record of it is kept."""
        record = self._redis.hget(_results_key(self._prefix, job_id), job_id)
        if record is None:
            return None
        text = record.decode() if isinstance(record, bytes) else record
        if text == "q":
            return "queued"
        if text.startswith("s"):
            return "scheduled"
        try:
            return json.loads(text).get("state")
        except ValueError:
            return None

    def result(self, job_id):
        """The return value of a job that succeeded (decoded JSON), else None."""
        record = self._redis.hget(_results_key(self._prefix, job_id), job_id)
        if record is None or record[:1] not in (b"{", "{"):
            return None
        outcome = json.loads(record)
        return outcome.get("value") if outcome.get("state") == "succeeded" else None
