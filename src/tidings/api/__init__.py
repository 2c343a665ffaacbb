"""HTTP API: ingest, management, operations. Routes are thin: validate, call the store,
render. Must never hold SQL or delivery logic."""
