"""The blog example's two services, each a `tidings.Consumer` run in its own process:

    tidings consume services:blog
    tidings consume services:comment

The blog service keeps each post's author name; when a user is renamed it updates its
posts and tells the others (`blog.user-updated`). The comment service keeps each
comment's author name and reacts to the blog's event. Set COMMENT_BUG=1 to start the
comment service with a bug: its handler raises, 5 times, and the event lands in the
dead letters.
"""

from __future__ import annotations

import os

import store
import tidings

blog = tidings.Consumer(group="blog")
comment = tidings.Consumer(group="comment")


@blog.handler("user.name-updated")
def on_user_renamed(event: tidings.LeasedEvent) -> None:
    print(f"Event! - [{event.topic}]", flush=True)
    user, name = event.payload["user_id"], event.payload["name"]
    posts = store.load("blog")
    for post in posts.values():
        if post["author_id"] == user:
            post["author_name"] = name
    store.save("blog", posts)
    # Caused by the rename: Tidings links it to it (causation and correlation).
    blog.publish("blog.user-updated", {"user_id": user, "name": name}, key=user)


@comment.handler("blog.user-updated")
def on_blog_user_updated(event: tidings.LeasedEvent) -> None:
    print(f"Event! - [{event.topic}]", flush=True)
    if os.environ.get("COMMENT_BUG") == "1":
        lease = comment.current
        attempt = lease.attempt if lease else 0
        print(f"Failed {attempt} times, group: comment, event: {event.id}", flush=True)
        raise RuntimeError("Test Error!!")
    user, name = event.payload["user_id"], event.payload["name"]
    comments = store.load("comment")
    for item in comments.values():
        if item["author_id"] == user:
            item["author_name"] = name
    store.save("comment", comments)
