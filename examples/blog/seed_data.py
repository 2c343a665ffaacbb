"""Give the two services some data: two posts and two comments by user-1.

python seed_data.py
"""

from __future__ import annotations

import store

store.save(
    "blog",
    {
        "post-1": {"title": "Hello", "author_id": "user-1", "author_name": "Ann"},
        "post-2": {"title": "Events", "author_id": "user-1", "author_name": "Ann"},
    },
)
store.save(
    "comment",
    {
        "c-1": {"post": "post-2", "author_id": "user-1", "author_name": "Ann"},
        "c-2": {"post": "post-1", "author_id": "user-2", "author_name": "Bob"},
    },
)
print("seeded")
