"""The OpenAPI 3.1 document, built once from the wire structs and a table of routes."""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from tidings import __version__
from tidings.api import compat, groups, users, wire, ws
from tidings.api.deliveries import RetryManyIn
from tidings.api.destinations import ReplayIn
from tidings.model import BatchIn, DestinationBase, DestinationSpec, EventIn
from tidings.policy.topics import MAX_TOPIC_LENGTH, PATTERN_SCHEMA, TOPIC_SCHEMA

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("ErrorOut"), "Error")
_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]


_TOPIC = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_TOPIC_LENGTH,
    "pattern": TOPIC_SCHEMA,
}
_PATTERN = {**_TOPIC, "pattern": PATTERN_SCHEMA}


def _refine(schemas: dict[str, Any]) -> None:
    """What the validators check beyond the structs' types, said in the document too, so
    that clients (and schemathesis) know a topic's form before a 400 tells them."""
    schemas["EventIn"]["properties"]["topic"] = _TOPIC
    for kind in spec_types():
        properties = schemas[kind.__name__]["properties"]
        properties["topics"]["items"] = _PATTERN
        if "url" in properties:  # a pull group has none
            properties["url"]["format"] = "uri"
        properties["alert_url"]["anyOf"][0]["format"] = "uri"
    for bound in ("since", "until"):
        schemas["ReplayIn"]["properties"][bound]["anyOf"][0]["format"] = "date-time"


# operationId of every operation: names for generated clients and for the links below.
_OPERATION_IDS = {
    ("post", "/v1/events"): "publishEvent",
    ("get", "/v1/events"): "listEvents",
    ("post", "/v1/events/batch"): "publishBatch",
    ("get", "/v1/events/{id}"): "getEvent",
    ("get", "/v1/events/{id}/chain"): "getEventChain",
    ("post", "/v1/uploads"): "upload",
    ("get", "/v1/uploads/{id}"): "getUpload",
    ("post", "/v1/destinations"): "createDestination",
    ("get", "/v1/destinations"): "listDestinations",
    ("get", "/v1/destinations/{id}"): "getDestination",
    ("patch", "/v1/destinations/{id}"): "updateDestination",
    ("delete", "/v1/destinations/{id}"): "deleteDestination",
    ("post", "/v1/destinations/{id}/rotate-secret"): "rotateSecret",
    ("post", "/v1/destinations/{id}/replay"): "replayDestination",
    ("get", "/v1/deliveries"): "listDeliveries",
    ("get", "/v1/deliveries/{id}"): "getDelivery",
    ("delete", "/v1/deliveries/{id}"): "purgeDelivery",
    ("post", "/v1/deliveries/{id}/retry"): "retryDelivery",
    ("post", "/v1/deliveries/retry"): "retryDeliveries",
    ("post", "/v1/groups/{name}/lease"): "leaseGroup",
    ("post", "/v1/groups/{name}/ack"): "ackLeases",
    ("post", "/v1/groups/{name}/nack"): "nackLeases",
    ("post", "/v1/groups/{name}/extend"): "extendLeases",
    ("get", "/v1/users/{user_id}/inbox"): "readInbox",
    ("post", "/v1/users/{user_id}/inbox/ack"): "ackInbox",
    ("post", "/v1/users/{user_id}/token"): "socketToken",
    ("get", "/v1/ws"): "openSocket",
    ("get", "/v1/presence"): "presence",
    ("get", "/ws/{user_id}"): "compatSocket",
    ("post", "/notifications"): "compatNotify",
    ("get", "/notifications/offline/{user_id}"): "compatOfflineInbox",
    ("post", "/notifications/offline/{user_id}/ack"): "compatOfflineAck",
    ("post", "/publish-event"): "compatPublishEvent",
    ("post", "/upload"): "compatUpload",
    ("get", "/retry"): "compatRetryAll",
    ("post", "/retry"): "compatRetryAllPost",
    ("get", "/metrics"): "metrics",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/openapi.json"): "openapi",
    ("get", "/docs"): "docs",
    ("get", "/"): "startPage",
}

# Response links: the id an answer carries, and the calls that take it (so that tools
# walking the API, schemathesis' stateful phase among them, reach real resources).
_LINKS: dict[tuple[str, str, str], dict[str, str]] = {
    ("post", "/v1/events", "202"): {
        "getEvent": "$response.body#/id",
        "getEventChain": "$response.body#/id",
    },
    ("post", "/v1/destinations", "201"): {
        op: "$response.body#/id"
        for op in (
            "getDestination",
            "updateDestination",
            "deleteDestination",
            "rotateSecret",
            "replayDestination",
        )
    },
    ("get", "/v1/events", "200"): {"getEvent": "$response.body#/items/0/id"},
    ("post", "/v1/uploads", "202"): {"getUpload": "$response.body#/upload_id"},
    ("get", "/v1/events/{id}", "200"): {
        op: "$response.body#/deliveries/0/id"
        for op in ("getDelivery", "retryDelivery", "purgeDelivery")
    },
    ("get", "/v1/deliveries", "200"): {
        op: "$response.body#/items/0/id" for op in ("getDelivery", "retryDelivery", "purgeDelivery")
    },
}


def _name_operations(paths: dict[str, Any]) -> None:
    for path, operations in paths.items():
        for method, operation in operations.items():
            operation["operationId"] = _OPERATION_IDS[(method, path)]
    for (method, path, status), targets in _LINKS.items():
        paths[path][method]["responses"][status]["links"] = {
            op: {"operationId": op, "parameters": {"id": value}} for op, value in targets.items()
        }


_CODED = (
    "The body may come with Content-Encoding gzip or deflate (a body over "
    "TIDINGS_MAX_REQUEST_BYTES once undone is a 413, one that is not what its coding says "
    "a 400, another coding a 415), and may nest arrays and objects 64 levels deep in all."
)


def _take_coded_bodies(paths: dict[str, Any]) -> None:
    """Every operation with a body: its codings said, their 413 and 415 listed."""
    for operations in paths.values():
        for operation in operations.values():
            if "requestBody" in operation:
                operation["requestBody"].setdefault("description", _CODED)
                operation["responses"].setdefault("413", _ERR)
                operation["responses"].setdefault("415", _ERR)


def _path_id(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": f"{what} id",
    }


_USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_AFTER = {
    "name": "after",
    "in": "query",
    "description": "the offset after which messages are listed (default 0: from the start)",
    "schema": {"type": "integer", "minimum": 0},
}


_SOCKET_TOKEN = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "from POST /v1/users/{user_id}/token",
    "schema": {"type": "string"},
}
_AFTER_SOCKET = {
    **_AFTER,
    "description": "send the messages after this offset first (default: only new ones)",
}
_SOCKET_RESPONSES = {
    "101": {"description": "Switching to the WebSocket protocol"},
    "400": _ERR,
    "401": _ERR,
    "503": _ERR,
}


def _ack_body() -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref("AckIn")}}}


def _user_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """Users' inboxes (issue 15), and the notification platform's names for them."""
    return {
        "/v1/users/{user_id}/inbox": {
            "get": {
                "summary": "A user's inbox messages after an offset, oldest first",
                "parameters": [_USER_ID, _AFTER, _PAGING[0]],
                "responses": {"200": _json(_ref("InboxOut")), **errors},
            }
        },
        "/v1/users/{user_id}/inbox/ack": {
            "post": {
                "summary": "Acknowledge a user's messages up to an offset",
                "parameters": [_USER_ID],
                "requestBody": _ack_body(),
                "responses": {"200": _json(_ref("AckedOut")), **errors},
            }
        },
        "/v1/users/{user_id}/token": {
            "post": {
                "summary": "A token for the user's WebSocket (ttl_s default 3600, at most 86400)",
                "parameters": [_USER_ID],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("TokenIn")}},
                },
                "responses": {"200": _json(_ref("TokenOut")), **errors},
            }
        },
        "/v1/ws": {
            "get": {
                "summary": "The WebSocket gateway: a welcome frame, the messages after "
                "`after`, then live ones (the token, not the API key, authorizes it)",
                "security": [],
                "parameters": [
                    {**_USER_ID, "in": "query"},
                    _SOCKET_TOKEN,
                    _AFTER_SOCKET,
                ],
                "responses": _SOCKET_RESPONSES,
            }
        },
        "/v1/presence": {
            "get": {
                "summary": "Is a user connected (sockets on every node)",
                "parameters": [{**_USER_ID, "in": "query"}],
                "responses": {"200": _json(_ref("PresenceOut")), **errors},
            }
        },
        "/ws/{user_id}": {
            "get": {
                "summary": "Compatibility (notification platform): GET /v1/ws",
                "security": [],
                "parameters": [_USER_ID, _SOCKET_TOKEN, _AFTER_SOCKET],
                "responses": _SOCKET_RESPONSES,
            }
        },
        "/notifications": {
            "post": {
                "summary": "Compatibility (notification platform): an event for one "
                "recipient (topic default notification)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NotificationIn")}},
                },
                "responses": {"202": _json(_ref("AcceptedOut"), "Stored"), "413": _ERR, **errors},
            }
        },
        "/notifications/offline/{user_id}": {
            "get": {
                "summary": "Compatibility (notification platform): the unacked inbox",
                "parameters": [_USER_ID, _PAGING[0]],
                "responses": {"200": _json(_ref("InboxOut")), **errors},
            }
        },
        "/notifications/offline/{user_id}/ack": {
            "post": {
                "summary": "Compatibility (notification platform): ack up to an offset",
                "parameters": [_USER_ID],
                "requestBody": _ack_body(),
                "responses": {"200": _json(_ref("AckedOut")), **errors},
            }
        },
    }


_GROUP_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the group's name (a destination of kind group)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def _group_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """Pull groups (issue 16): lease, ack, nack, extend."""

    def operation(summary: str, body: str, out: str, required: bool = True) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [_GROUP_NAME],
                "requestBody": {
                    "required": required,
                    "content": {"application/json": {"schema": _ref(body)}},
                },
                "responses": {"200": _json(_ref(out)), "404": _ERR, **errors},
            }
        }

    settled = "answers which lease ids were held (`ok`) and which had expired or moved on "
    return {
        "/v1/groups/{name}/lease": operation(
            "Lease up to `max` due deliveries of a pull group (only lane heads in a fifo "
            "group), waiting up to `wait_ms` for some",
            "GroupLeaseIn",
            "GroupLeaseOut",
            required=False,  # empty: every default
        ),
        "/v1/groups/{name}/ack": operation(
            "Acknowledge leases: delivered, their lanes move on; " + settled + "(`lost`)",
            "GroupAckIn",
            "GroupSettledOut",
        ),
        "/v1/groups/{name}/nack": operation(
            "Fail leases (an attempt with `error`): retried after `delay_ms` or the "
            "group's backoff, dead after max_attempts; " + settled + "(`lost`)",
            "GroupNackIn",
            "GroupSettledOut",
        ),
        "/v1/groups/{name}/extend": operation(
            "Extend leases to `lease_ms` from now; " + settled + "(`lost`)",
            "GroupExtendIn",
            "GroupSettledOut",
        ),
    }


def spec_types() -> tuple[type[DestinationBase], ...]:
    """The struct of each destination kind."""
    return get_args(DestinationSpec) or (DestinationSpec,)


def build_openapi() -> dict[str, Any]:
    (spec, out, *_), components = msgspec.json.schema_components(
        [
            DestinationSpec,
            wire.DestinationOut,
            EventIn,
            BatchIn,
            wire.ErrorOut,
            wire.AcceptedOut,
            wire.BatchAcceptedOut,
            wire.DestinationList,
            wire.EventOut,
            wire.EventList,
            wire.ChainOut,
            wire.UploadOut,
            wire.DeliveryOut,
            wire.DeliveryList,
            wire.ReplayOut,
            wire.RetryManyOut,
            ReplayIn,
            RetryManyIn,
            compat.PublishEventIn,
            compat.RetriedOut,
            compat.NotificationIn,
            users.InboxOut,
            users.AckIn,
            users.AckedOut,
            ws.TokenIn,
            ws.TokenOut,
            ws.PresenceOut,
            groups.GroupLeaseIn,
            groups.GroupLeaseOut,
            groups.GroupAckIn,
            groups.GroupNackIn,
            groups.GroupExtendIn,
            groups.GroupSettledOut,
        ],
        ref_template=_REF,
    )
    # The unions on `kind` (a `$ref` while there is one kind), named for the operations.
    components["DestinationSpec"] = spec
    components["DestinationOut"] = out
    _refine(components)
    errors = {"400": _ERR, "401": _ERR, "503": _ERR}
    uploads: dict[str, Any] = {
        "summary": "Ingest a CSV (user_id[,message]) or JSON-lines file, one event per row",
        "parameters": [
            {
                "name": "name",
                "in": "query",
                "description": "the file's name in events and the report (raw body)",
                "schema": {"type": "string"},
            },
            {
                "name": "message",
                "in": "query",
                "description": "the message of rows that have none (bare user ids)",
                "schema": {"type": "string", "maxLength": 65536},
            },
            {
                "name": "format",
                "in": "query",
                "description": "csv or jsonl (default: by the name's suffix, else csv)",
                "schema": {"type": "string", "enum": ["csv", "jsonl"]},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                # Any body that is not a form is the file itself, whatever its
                # Content-Type (curl --data-binary labels it a urlencoded form).
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        },
        "responses": {
            "202": _json(
                _ref("UploadOut"),
                "Read (state done: rows seen before count as duplicates), or, larger "
                "than TIDINGS_MAX_REQUEST_BYTES, stored to be read (state queued)",
            ),
            "413": _ERR,
            **errors,
        },
    }
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": {
                "summary": "Publish one event: 202 once durable, 200 for a repeated key",
                "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("EventIn")}},
                },
                "responses": {
                    "202": _json(_ref("AcceptedOut"), "Accepted"),
                    "200": _json(_ref("AcceptedOut"), "Duplicate"),
                    "413": _ERR,
                    **errors,
                },
            },
            "get": {
                "summary": "List events, newest first",
                "parameters": [
                    {
                        "name": "topic",
                        "in": "query",
                        "description": "exact, or a pattern ending in `*`",
                        "schema": _PATTERN,
                    },
                    {
                        "name": "key",
                        "in": "query",
                        "description": "the events of this key (empty: those without a key)",
                        "schema": {"type": "string", "maxLength": 255},
                    },
                    {
                        "name": "correlation_id",
                        "in": "query",
                        "description": "the events of this correlation: its root (the event "
                        "whose id it is) and every event that names it",
                        "schema": {"type": "string", "minLength": 1},
                    },
                    *_PAGING,
                ],
                "responses": {"200": _json(_ref("EventList")), **errors},
            },
        },
        "/v1/events/batch": {
            "post": {
                "summary": "Publish up to 1000 events, all or nothing",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "description": "keys the request: event i without an idempotency_key "
                        "of its own is keyed `batch:<first 32 hex digits of sha256(header)>#<i>`",
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BatchIn")}},
                },
                "responses": {
                    "202": _json(_ref("BatchAcceptedOut"), "Accepted"),
                    "413": _ERR,
                    **errors,
                },
            }
        },
        "/v1/events/{id}": {
            "get": {
                "summary": "One event with its deliveries",
                "parameters": [_path_id("event")],
                "responses": {"200": _json(_ref("EventOut")), "404": _ERR, **errors},
            }
        },
        "/v1/events/{id}/chain": {
            "get": {
                "summary": "The causation tree of the event's correlation, depth first",
                "parameters": [
                    _path_id("event"),
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "the oldest this many events of the correlation "
                        "(default 1000), plus the asked event and its line of causes",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                ],
                "responses": {"200": _json(_ref("ChainOut")), "404": _ERR, **errors},
            }
        },
        "/v1/uploads": {"post": uploads},
        "/v1/uploads/{id}": {
            "get": {
                "summary": "An upload's progress and report",
                "parameters": [_path_id("upload")],
                "responses": {"200": _json(_ref("UploadOut")), "404": _ERR, **errors},
            }
        },
        "/v1/destinations": {
            "post": {
                "summary": "Create a destination",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("DestinationSpec")}},
                },
                "responses": {
                    "201": _json(_ref("DestinationOut"), "Created"),
                    "409": _ERR,
                    **errors,
                },
            },
            "get": {
                "summary": "List destinations",
                "parameters": _PAGING,
                "responses": {"200": _json(_ref("DestinationList")), **errors},
            },
        },
        "/v1/destinations/{id}": {
            "get": {
                "summary": "One destination (by id or name)",
                "parameters": [_path_id("destination")],
                "responses": {"200": _json(_ref("DestinationOut")), "404": _ERR, **errors},
            },
            "patch": {
                "summary": "Change a destination (JSON merge patch of the create body)",
                "parameters": [_path_id("destination")],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json(_ref("DestinationOut")),
                    "404": _ERR,
                    "409": _ERR,
                    **errors,
                },
            },
            "delete": {
                "summary": "Delete a destination and its deliveries",
                "parameters": [_path_id("destination")],
                "responses": {"204": {"description": "Deleted"}, "404": _ERR, **errors},
            },
        },
        "/v1/destinations/{id}/rotate-secret": {
            "post": {
                "summary": "New signing secret; the old one stays valid for 24 hours",
                "parameters": [_path_id("destination")],
                "responses": {"200": _json(_ref("DestinationOut")), "404": _ERR, **errors},
            }
        },
        "/v1/deliveries": {
            "get": {
                "summary": "List deliveries, newest first",
                "parameters": [
                    {
                        "name": "destination_id",
                        "in": "query",
                        "description": "a destination's id or name",
                        "schema": {"type": "string", "minLength": 1},
                    },
                    {
                        "name": "event_id",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1},
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["pending", "in_flight", "scheduled", "delivered", "dead"],
                        },
                    },
                    *_PAGING,
                ],
                "responses": {"200": _json(_ref("DeliveryList")), "404": _ERR, **errors},
            }
        },
        "/v1/destinations/{id}/replay": {
            "post": {
                "summary": "Send again a destination's dead (or delivered) deliveries",
                "parameters": [_path_id("destination")],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("ReplayIn")}},
                },
                "responses": {"202": _json(_ref("ReplayOut"), "Queued"), "404": _ERR, **errors},
            }
        },
        "/v1/deliveries/{id}": {
            "get": {
                "summary": "One delivery with every attempt",
                "parameters": [_path_id("delivery")],
                "responses": {"200": _json(_ref("DeliveryOut")), "404": _ERR, **errors},
            },
            "delete": {
                "summary": "Purge a dead delivery (a lane it blocks moves on)",
                "parameters": [_path_id("delivery")],
                "responses": {
                    "204": {"description": "Purged"},
                    "404": _ERR,
                    "409": _ERR,
                    **errors,
                },
            },
        },
        "/v1/deliveries/{id}/retry": {
            "post": {
                "summary": "A fresh run of attempts for a dead, delivered or scheduled delivery",
                "parameters": [_path_id("delivery")],
                "responses": {
                    "202": _json(_ref("DeliveryOut"), "Queued"),
                    "404": _ERR,
                    "409": _ERR,
                    **errors,
                },
            }
        },
        "/v1/deliveries/retry": {
            "post": {
                "summary": "Retry up to 1000 deliveries by id",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("RetryManyIn")}},
                },
                "responses": {"202": _json(_ref("RetryManyOut"), "Queued"), **errors},
            }
        },
        **_user_paths(errors),
        **_group_paths(errors),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of this process",
                "security": [],
                "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}},
            }
        },
        "/publish-event": {
            "post": {
                "summary": "Compatibility (Redis event delivery): an event of topic "
                "TIDINGS_COMPAT_TOPIC, key and recipient userId",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("PublishEventIn")}},
                },
                "responses": {"202": _json(_ref("AcceptedOut"), "Stored"), "413": _ERR, **errors},
            }
        },
        "/upload": {"post": {**uploads, "summary": "Compatibility (WDS): POST /v1/uploads"}},
        "/retry": {
            method: {
                "summary": "Compatibility (WDS): every dead delivery goes again",
                "responses": {"202": _json(_ref("RetriedOut"), "Queued again"), **errors},
            }
            for method in ("get", "post")
        },
        "/healthz": {
            "get": {
                "summary": "The process is up",
                "security": [],
                "responses": {"200": {"description": "OK"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "The store answers",
                "security": [],
                "responses": {"200": {"description": "Ready"}, "503": _ERR},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This OpenAPI document",
                "security": [],
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/docs": {
            "get": {
                "summary": "HTML reference of this API",
                "security": [],
                "responses": {"200": {"description": "OK", "content": {"text/html": {}}}},
            }
        },
        "/": {
            "get": {
                "summary": "Home page",
                "security": [],
                "responses": {"200": {"description": "OK", "content": {"text/html": {}}}},
            }
        },
    }
    _name_operations(paths)
    _take_coded_bodies(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings",
            "version": __version__,
            "description": 'Durable event fan-out. Errors are {"error": {code, message, field}}.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
