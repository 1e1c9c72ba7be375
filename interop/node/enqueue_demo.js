// Used by tests/tests/interop.rs: enqueues jobs of `interop.greet` into the queue `interop`
// (`enqueue`: prints `label id` lines), or tells what became of jobs (`check ID..`: prints
// `id status result-json` lines). Reads DTASK_REDIS_URL and DTASK_PREFIX.
"use strict";

const Redis = require("ioredis");
const { Producer } = require("./index");

async function main() {
  const redis = new Redis(process.env.DTASK_REDIS_URL);
  const producer = new Producer(redis, { prefix: process.env.DTASK_PREFIX || "dtask" });
  try {
    const [mode, ...ids] = process.argv.slice(2);
    if (mode === "enqueue") {
      // A trailing Option parameter left out, as the wire format allows.
      console.log("now", await producer.enqueue("interop.greet", ["Ann", 2], { queue: "interop" }));
      console.log("delayed", await producer.enqueue("interop.greet", ["Bob", 1, "from node"], { queue: "interop", delayMs: 300 }));
      const many = await producer.enqueueMany("interop.greet", [["Cy", 1], ["Di", 3, null]], { queue: "interop" });
      many.forEach((id, i) => console.log(`many${i}`, id));
      try {
        await producer.enqueue("interop.greet", ["Eve", NaN], { queue: "interop" });
        console.log("nan accepted");
      } catch (error) {
        console.log("nan refused");
      }
    } else if (mode === "check") {
      for (const id of ids) {
        console.log(id, await producer.status(id), JSON.stringify(await producer.result(id)));
      }
    }
  } finally {
    redis.disconnect();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
