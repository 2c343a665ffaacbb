"""The user service's command: rename a user and publish what happened.

    python rename_user.py user-1 "Ann Smith"

Prints the event's id: `tidings events chain ID` shows what followed.
"""

from __future__ import annotations

import sys

import tidings

user_id, name = sys.argv[1], sys.argv[2]
with tidings.Client() as client:
    sent = client.publish("user.name-updated", {"user_id": user_id, "name": name}, key=user_id)
print(sent.id)
