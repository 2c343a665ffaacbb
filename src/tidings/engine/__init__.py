"""The delivery engine: dispatcher (claims, sends, records), alerts and retention."""
