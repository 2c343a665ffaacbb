"""Create the blog example's two pull groups (run once, against a running Tidings).

    python create_groups.py

`blog` takes the user service's events; `comment` takes the blog service's. Both are
fifo (one user's events in order) and give up after 5 failed attempts: the event then
waits in the dead letters until it is retried.
"""

from __future__ import annotations

import tidings

RETRY = {"max_attempts": 5, "initial_ms": 200, "multiplier": 2.0, "jitter": 0.0}

with tidings.Client() as client:  # TIDINGS_URL, TIDINGS_API_KEY
    existing = {d.name for d in client.iter_destinations()}
    for name, topics in (("blog", ["user.*"]), ("comment", ["blog.*"])):
        if name not in existing:
            client.create_destination("group", topics, name=name, retry=RETRY, lease_ms=10_000)
        print(f"group {name}: {', '.join(topics)}")
