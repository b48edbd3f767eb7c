"""One ``POST /tasks`` client of bench_http_enqueue.py, as a process of its own.

``python bench/_http_client.py PORT START SECONDS``: from the wall-clock time START until
SECONDS later, sends ``gladd.noop`` tasks over one keep-alive ``http.client`` connection,
each as soon as the last was answered; prints how many were answered 201. Only the standard
library is imported, so twenty of these start fast and share no interpreter lock: the clients
compete with the daemon for the cores, not with each other for one GIL.
"""

from __future__ import annotations

import http.client
import json
import sys
import time

BODY = json.dumps({"kind": "gladd.noop", "payload": {}}).encode()
HEADERS = {"Content-Type": "application/json"}


def post_until(port: int, start: float, seconds: float) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    time.sleep(max(0.0, start - time.time()))
    stop = time.monotonic() + seconds
    done = 0
    while time.monotonic() < stop:
        conn.request("POST", "/tasks", body=BODY, headers=HEADERS)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 201:
            raise SystemExit(f"POST /tasks answered {answer.status}")
        done += 1
    conn.close()
    return done


if __name__ == "__main__":
    port, start, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    print(post_until(port, start, seconds))
