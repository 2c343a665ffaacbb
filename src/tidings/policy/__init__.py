"""Pure decision logic: topic matching, payload filters, routing, validation. No I/O."""
