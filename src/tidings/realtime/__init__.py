"""Realtime delivery of users' inbox messages: tokens, the catch-up/live merge, client
frames (pure), and the hub that routes live messages to the sockets of this node."""
