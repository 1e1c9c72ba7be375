"""Used by tests/tests/interop.rs: enqueues jobs of `interop.greet` into the queue `interop`
(`enqueue`: prints `label id` lines), or tells what became of jobs (`check ID..`: prints
`id status result-json` lines). Reads DTASK_REDIS_URL and DTASK_PREFIX."""

import json
import os
import sys

import redis

from dtask_producer import Producer


def main():
    client = redis.Redis.from_url(os.environ["DTASK_REDIS_URL"])
    producer = Producer(client, prefix=os.environ.get("DTASK_PREFIX", "dtask"))
    if sys.argv[1] == "enqueue":
        # A trailing Option parameter left out, as the wire format allows.
        print("now", producer.enqueue("interop.greet", ["Ann", 2], queue="interop"))
        print("delayed", producer.enqueue("interop.greet", ["Bob", 1, "from python"],
                                           queue="interop", delay=0.3))
        for i, job_id in enumerate(producer.enqueue_many(
                "interop.greet", [["Cy", 1], ["Di", 3, None]], queue="interop")):
            print("many%d" % i, job_id)
        try:
            producer.enqueue("interop.greet", ["Eve", float("nan")], queue="interop")
            print("nan accepted")
        except ValueError:
            print("nan refused")
    elif sys.argv[1] == "check":
        for job_id in sys.argv[2:]:
            print(job_id, producer.status(job_id), json.dumps(producer.result(job_id)))


if __name__ == "__main__":
    main()
