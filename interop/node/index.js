// Enqueue jobs for dtask workers (Rust) from Node.js: dtask's wire format, version 1.
// See docs/wire-format.md in the dtask repository for what is written and why.
"use strict";

const crypto = require("crypto");

const ENVELOPE_VERSION = 1;
const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
// How long a job's queued record is kept (dtask's default result TTL), in ms.
const RECORD_TTL_MS = 3600000;

/** A dtask job id: 22 base-62 digits, 9 of the time in ms, 13 random. */
function newJobId(nowMs = Date.now()) {
  let millis = nowMs;
  const head = [];
  for (let i = 0; i < 9; i++) {
    head.push(DIGITS[millis % 62]);
    millis = Math.floor(millis / 62);
  }
  const random = crypto.randomBytes(13);
  let tail = "";
  for (const byte of random) tail += DIGITS[byte % 62];
  return head.reverse().join("") + tail;
}

/** The results hash of a job id, as the wire format page says. */
function resultsKey(prefix, jobId) {
  if (jobId.length === 22 && [...jobId].every((c) => DIGITS.includes(c))) {
    let millis = 0;
    for (const c of jobId.slice(0, 9)) millis = millis * 62 + DIGITS.indexOf(c);
    if (millis >= 1577836800000 && millis < 7258118400000) {
      return `${prefix}:results:{t${Math.floor(millis / 10)}}`;
    }
  }
  return `${prefix}:results:{j${jobId}}`;
}

/** Refuses what JSON cannot carry to a Rust worker (NaN, infinities). */
function checkFinite(value, path) {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`${path} is ${value}: JSON cannot carry it, and a dtask worker would refuse it`);
  }
  if (value && typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) checkFinite(inner, `${path}.${key}`);
  }
}

class Producer {
  /** Enqueues jobs into the queues of dtask workers that share `prefix` (default "dtask"). */
  constructor(redis, { prefix = "dtask" } = {}) {
    this.redis = redis;
    this.prefix = prefix;
  }

  /** Enqueues one job of `task` with `args` (an array, one element per parameter) into
   * `queue`, to run now or after `delayMs`; resolves to its id. */
  async enqueue(task, args, options) {
    const ids = await this.enqueueMany(task, [args], options);
    return ids[0];
  }

  /** Enqueues one job of `task` per element of `argsList` in one round trip; resolves to
   * their ids, in order. */
  async enqueueMany(task, argsList, { queue, delayMs, retries, headers, version } = {}) {
    if (!queue) throw new TypeError("a queue is needed");
    const nowMs = Date.now();
    let dueMs = null;
    if (delayMs !== undefined && delayMs !== null) {
      const [seconds, micros] = await this.redis.time();
      dueMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) + Math.round(delayMs);
    }
    const ids = [];
    const payloads = [];
    argsList.forEach((args, i) => {
      if (args !== null && !Array.isArray(args)) {
        throw new TypeError("args must be an array, one element per parameter of the task");
      }
      checkFinite(args, `job ${i} args`);
      const id = newJobId(nowMs);
      const envelope = { v: ENVELOPE_VERSION, id, t: task, a: args, at: nowMs };
      // The version of the Rust task's parameters `args` follows (`#[task(version = ..)]`).
      // Format 2 with it: a worker from before task versions puts the job off.
      if (version !== undefined && version !== 1) {
        envelope.v = 2;
        envelope.tv = version;
      }
      if (retries !== undefined) envelope.r = retries;
      if (headers) envelope.h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [String(k), String(v)]));
      payloads.push(JSON.stringify(envelope));
      ids.push(id);
    });
    if (payloads.length === 0) return [];
    const record = dueMs === null ? "q" : `s${dueMs}`;
    const ttlMs = RECORD_TTL_MS + (dueMs === null ? 0 : Math.max(0, dueMs - nowMs));
    const pipe = this.redis.pipeline();
    pipe.sadd(`${this.prefix}:queues`, queue);
    // The records go before the jobs: a quick job's outcome lands after its record.
    for (const id of ids) {
      const key = resultsKey(this.prefix, id);
      pipe.hset(key, id, record);
      pipe.call("PEXPIRE", key, ttlMs, "NX");
      pipe.call("PEXPIRE", key, ttlMs, "GT");
    }
    if (dueMs === null) {
      pipe.rpush(`${this.prefix}:{${queue}}:pending`, ...payloads);
    } else {
      const members = [];
      for (const payload of payloads) members.push(dueMs, payload);
      pipe.zadd(`${this.prefix}:{${queue}}:scheduled`, ...members);
    }
    const replies = await pipe.exec();
    for (const [error] of replies) if (error) throw error;
    return ids;
  }

  /** Where the job is: "queued", "scheduled", "running", "retrying", "succeeded", "dead",
   * or null when no record of it is kept. */
  async status(jobId) {
    const record = await this.redis.hget(resultsKey(this.prefix, jobId), jobId);
    if (record === null) return null;
    if (record === "q") return "queued";
    if (record.startsWith("s")) return "scheduled";
    try {
      return JSON.parse(record).state ?? null;
    } catch {
      return null;
    }
  }

  /** The return value of a job that succeeded, else null. */
  async result(jobId) {
    const record = await this.redis.hget(resultsKey(this.prefix, jobId), jobId);
    if (record === null || !record.startsWith("{")) return null;
    const outcome = JSON.parse(record);
    return outcome.state === "succeeded" ? outcome.value : null;
  }
}

module.exports = { Producer, newJobId, ENVELOPE_VERSION };
