"""Realtime delivery of users' inbox messages: tokens, the catch-up/live merge, client
frames (pure), the hub that routes live messages to the sockets of this node, and the
Redis relay that carries them (and presence) across nodes."""
