"""The AsyncAPI 3.0.0 document of assetd's NATS interface, built from the pydantic models and
:mod:`assetd.schemas.wire` (every address comes from wire's functions with ``{placeholder}``
tokens). Described from the daemon's point of view: it *receives* inbound events and queries,
it *sends* outbound events, dead letters and replies. Pure.

Every JSON Schema is in ``components.schemas`` once (pydantic's ``$defs`` are emitted there
directly, ``$ref``s point at ``#/components/schemas/...``), so the document is self-contained.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from assetd.config import Settings
from assetd.schemas import wire
from assetd.schemas.api import REQUESTS, ApiReply
from assetd.schemas.envelope import CloudEvent
from assetd.schemas.ids import ASSET_RE, BRANCH_RE, PROJECT_RE
from assetd.schemas.inbound import INBOUND
from assetd.schemas.outbound import OUTBOUND
from assetd.schemas.replies import REPLIES
from assetd.schemas.wire import Header

ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "2.0.0"  # the wire contract (CONTRACT.md "Version 2"), not the package
REF = "#/components/schemas/{model}"
NATS_BINDING = "0.1.0"
# Defaults, not Settings(): the document must not depend on the environment it is built in.
PREFIX: str = Settings.model_fields["subject_prefix"].default
PORT: int = Settings.model_fields["embedded_nats_port"].default
P, B, A = "{project}", "{branch}", "{asset}"

_STR = {"type": "string"}


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _doc(model: type[BaseModel] | None, default: str) -> str:
    """A model's docstring as CommonMark (``x`` → `x`)."""
    return " ".join((model.__doc__ or default).replace("``", "`").split()) if model else default


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _model_schemas() -> tuple[dict[str, Any], dict[type[BaseModel], dict[str, str]]]:
    """Every model's schema (``$defs`` included) keyed by name, and each model's ``$ref``."""
    models: list[type[BaseModel]] = [CloudEvent, ApiReply, *INBOUND.values(),
                                     *OUTBOUND.values(), *REQUESTS.values(),
                                     *REPLIES.values()]
    unique = list(dict.fromkeys(models))
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in unique]
    refs, top = models_json_schema(pairs, ref_template=REF)
    return top["$defs"], {model: refs[(model, "validation")] for model in unique}


def _event(envelope: dict[str, Any], type_: str, data: dict[str, str], name: str,
           *, outbound: bool) -> dict[str, Any]:
    """The envelope with ``type`` fixed and ``data`` typed (an outbound one: ``source``
    fixed and every attribute the daemon writes required)."""
    schema = copy.deepcopy(envelope)
    props = schema["properties"]
    props["type"] = {"const": type_, "title": "Type", "type": "string"}
    props["data"] = {**data, "description": f"The `{type_}` data."}
    schema["title"] = f"{_pascal(type_)}Event"
    schema["description"] = (f"The `{type_}` event: the CloudEvents 1.0 envelope (CloudEvent) "
                             f"with `data` typed as {name}.")
    if outbound:
        props["source"] = {"const": "assetd", "title": "Source", "type": "string"}
        schema["required"] = sorted({*schema["required"], "branch", "time", "datacontenttype",
                                     "causeid", "data"})
    return schema


def _header_schemas() -> dict[str, dict[str, Any]]:
    out = wire.outbound_headers("{id}")
    h = Header
    return {
        "InboundHeaders": {
            "type": "object", "title": "InboundHeaders",
            "description": "Optional headers of an inbound event. Binary mode (the CloudEvents "
                           "NATS binding) is accepted too: the attributes as `ce-*` headers, "
                           "`Content-Type: application/json` and `data` alone as the payload.",
            "properties": {
                h.MSG_ID: {**_STR, "description": "Not needed (the daemon applies each id once "
                           "per project, for ever) and not set by AssetClient: JetStream "
                           "deduplicates by it across every project (docs/events.md, 16)."},
                h.CONTENT_TYPE: {**_STR, "examples": [wire.CLOUDEVENTS_JSON]},
                h.REPLAYED_FROM: {**_STR, "pattern": "^[0-9]+$", "description":
                                  "Set by `assetctl dlq replay`: the dead letter's sequence."},
            },
            "additionalProperties": _STR,
        },
        "OutboundHeaders": {
            "type": "object", "title": "OutboundHeaders",
            "description": "Headers of every outbound event (CloudEvents structured mode).",
            "properties": {
                h.MSG_ID: {**_STR, "description": "The event's `id`, for JetStream's "
                           "duplicate window (a re-publish after a crash is dropped)."},
                h.CONTENT_TYPE: {**_STR, "const": out[h.CONTENT_TYPE]},
            },
            "required": sorted(out),
        },
        "DeadLetterHeaders": {
            "type": "object", "title": "DeadLetterHeaders",
            "description": "Headers of a dead letter: the original message's headers (but "
                           "`Nats-*`) and why it was refused.",
            "properties": {
                h.MSG_ID: {**_STR, "description": "`dlq:<inbound stream sequence>`."},
                h.REASON: {**_STR, "description": "Why it was refused, one line."},
                h.ERRORS: {**_STR, "description": "JSON list of `{loc, msg, type}`."},
                h.INBOUND_SUBJECT: {**_STR, "description": "The subject it came on."},
                h.INBOUND_SEQ: {**_STR, "pattern": "^[0-9]+$",
                                "description": "Its sequence in ASSETD_IN."},
                h.EVENT_ID: {**_STR, "description": "Its envelope `id`; empty if unreadable."},
                h.DROPPED: {**_STR, "description": "JSON list of original header keys NATS "
                            "cannot carry (dropped)."},
                h.TRUNCATED: {**_STR, "const": "true",
                              "description": "The payload is only the first bytes that fit."},
                h.ORIGINAL_SIZE: {**_STR, "pattern": "^[0-9]+$",
                                  "description": "Size of the original payload (truncated)."},
                h.ORIGINAL_SHA256: {**_STR, "pattern": "^[0-9a-f]{64}$",
                                    "description": "SHA-256 of the original payload (truncated)."},
            },
            "required": [h.MSG_ID, h.REASON, h.ERRORS, h.INBOUND_SUBJECT, h.INBOUND_SEQ,
                         h.EVENT_ID],
            "additionalProperties": _STR,
        },
        "DeadLetterPayload": {
            "type": "string", "format": "binary", "title": "DeadLetterPayload",
            "description": "The refused message's bytes, unchanged (cut short when "
                           f"`{h.TRUNCATED}` is set).",
        },
        "StatusRequest": {
            "title": "StatusRequest", "description": "Ignored: send `{}` or nothing.",
        },
    }


def _parameters() -> dict[str, dict[str, Any]]:
    return {
        "project": {"description": f"The project id, `{PROJECT_RE}`.", "examples": ["fraud"]},
        "branch": {"description": f"The branch token: the branch (`{BRANCH_RE}`) with every "
                                  "`.` written `~` (`user.alice` → `user~alice`); `~` never "
                                  "occurs in a branch, so the mapping is exact both ways.",
                   "examples": ["main", wire.branch_token("user.alice")]},
        "asset": {"description": f"The asset id, `{ASSET_RE}`.", "examples": ["fraud_model"]},
        "type": {"description": "The refused message's type token as it was (`[a-z_]{1,64}`, "
                                f"not necessarily a known type), `{wire.UNKNOWN}` if unreadable.",
                 "examples": ["asset_registered", wire.UNKNOWN]},
    }


def _message(name: str, title: str, payload: str, headers: str | None, content_type: str,
             summary: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"name": name, "title": title, "summary": summary,
                           "contentType": content_type, "payload": _ref("schemas", payload)}
    if headers:
        msg["headers"] = _ref("schemas", headers)
    return msg


def _params(*names: str) -> dict[str, Any]:
    return {n: _ref("parameters", n) for n in names}


def asyncapi_document(prefix: str = PREFIX) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the daemon's subjects, payloads and queries."""
    schemas, refs = _model_schemas()
    envelope = schemas[CloudEvent.__name__]
    extra = _header_schemas()
    if clash := set(extra) & set(schemas):
        raise RuntimeError(f"schema names used twice: {sorted(clash)}")
    schemas.update(extra)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def add(cid: str, address: str | None, description: str, params: tuple[str, ...],
            msgs: dict[str, str]) -> None:
        channel: dict[str, Any] = {"address": address, "description": description,
                                   "messages": {k: _ref("messages", v) for k, v in msgs.items()}}
        if params:
            channel["parameters"] = _params(*params)
        channels[cid] = channel

    def operate(oid: str, action: str, cid: str, key: str, summary: str, tag: str,
                **more: Any) -> None:
        operations[oid] = {"action": action, "channel": {"$ref": f"#/channels/{cid}"},
                           "summary": summary, "tags": [{"name": tag}],
                           "messages": [{"$ref": f"#/channels/{cid}/messages/{key}"}], **more}

    def event(kind: str, type_: str, model: type[BaseModel], description: str) -> None:
        outbound = kind == "out"
        title = f"{_pascal(type_)}Event"
        if title in schemas:
            raise RuntimeError(f"schema name used twice: {title}")
        schemas[title] = _event(envelope, type_, refs[model], model.__name__, outbound=outbound)
        messages[title] = _message(type_, f"{type_} ({'outbound' if outbound else 'inbound'})",
                                   title, "OutboundHeaders" if outbound else "InboundHeaders",
                                   wire.CLOUDEVENTS_JSON, _doc(model, type_))
        subject = (wire.out_subject if outbound else wire.in_subject)(prefix, P, B, A, type_)
        add(f"{kind}_{type_}", subject, description, ("project", "branch", "asset"),
            {type_: title})
        operate(f"{'send' if outbound else 'receive'}_{type_}", "send" if outbound else "receive",
                f"{kind}_{type_}", type_, _doc(model, type_), kind)

    for type_, model in INBOUND.items():
        event("in", type_, model, f"Pipelines publish `{type_}` events here (JetStream stream "
              f"`{wire.IN_STREAM}`; the daemon reads it with the durable pull consumer "
              f"`{wire.DURABLE}`). The envelope's project, branch, subject and type must equal "
              "the subject's tokens; each `id` is applied once per project, for ever.")
    for type_, out_model in OUTBOUND.items():
        where = (" The tokens are the refused inbound subject's, "
                 f"`{wire.UNKNOWN}` where one is unreadable." if type_ == "event_rejected" else "")
        event("out", type_, out_model, f"The daemon publishes `{type_}` here after the change "
              f"it describes committed (outbox relay; JetStream stream `{wire.OUT_STREAM}`, and "
              f"`{wire.project_stream(P)}` for a project's services).{where}")

    messages["DeadLetter"] = _message(
        "dead_letter", "dead letter", "DeadLetterPayload", "DeadLetterHeaders",
        "application/octet-stream", "An inbound message that could not be applied.")
    add("dlq", wire.dlq_subject(prefix, P, B, A, "{type}"),
        f"Refused inbound messages, bytes and headers kept (JetStream stream "
        f"`{wire.DLQ_STREAM}`): the inbound subject's tokens, `{wire.UNKNOWN}` where one is "
        "unreadable; an `event_rejected` says the same on the outbound side.",
        ("project", "branch", "asset", "type"), {"dead_letter": "DeadLetter"})
    operate("send_dead_letter", "send", "dlq", "dead_letter",
            "Dead-letter an inbound message that could not be applied.", "dlq")

    messages["ApiReply"] = _message("reply", "query reply", ApiReply.__name__, None,
                                    "application/json", _doc(ApiReply, "reply"))
    reply_messages = {"reply": "ApiReply"}
    for method, reply_model in REPLIES.items():  # typed per method: ``result`` is its model
        name = f"{_pascal(method)}Reply"
        schemas[name] = {"type": "object", "title": name, "required": ["ok"],
                         "description": f"The reply to `{method}`: `result` when `ok`, "
                                        "else `error`.",
                         "properties": {"ok": {"type": "boolean"},
                                        "result": _ref("schemas", reply_model.__name__),
                                        "error": _ref("schemas", "ApiError")}}
        messages[name] = _message(f"{method}_reply", f"{method} reply", name, None,
                                  "application/json", _doc(reply_model, "reply"))
        reply_messages[f"{method}_reply"] = name
    add("api_reply", None, "The requester's reply subject (core NATS request-reply): it must "
        "start with `_INBOX.<project>.` for a project's query, `_INBOX.` for status; a query "
        "with any other reply subject gets no answer.", (), reply_messages)

    def reply(method: str) -> dict[str, Any]:
        key = f"{method}_reply" if method in REPLIES else "reply"
        return {"channel": {"$ref": "#/channels/api_reply"},
                "messages": [{"$ref": f"#/channels/api_reply/messages/{key}"}]}

    queue = {"nats": {"queue": wire.API_QUEUE, "bindingVersion": NATS_BINDING}}
    methods: dict[str, str] = {m: r.__name__ for m, r in REQUESTS.items()}
    methods["status"] = "StatusRequest"
    for method, request in methods.items():
        doc = _doc(REQUESTS.get(method), "The daemon's version, uptime, rules, database, "
                   "counters and DLQ depth.")
        messages[request] = _message(f"{method}_request", f"{method} request", request, None,
                                     "application/json", doc)
        body = ("the body is ignored" if method == "status" else "an empty body counts as `{}`")
        add(f"api_{method}", wire.api_subject(prefix, P, method),
            f"The `{method}` query (core NATS request-reply; {body}).",
            () if method == "status" else ("project",), {"request": request})
        operate(f"answer_{method}", "receive", f"api_{method}", "request", doc, "api",
                reply=reply(method), bindings=queue)

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "assetd", "version": CONTRACT_VERSION,
            "description": (
                "assetd's NATS interface (CONTRACT §2-§7), generated from the code by "
                "`assetd export-schemas`. Written from the daemon's point of view: the daemon "
                "receives inbound events and queries, and sends outbound events, dead letters "
                "and query replies (a pipeline or subscriber does the opposite). Every event is "
                "a CloudEvents 1.0 JSON object (structured mode) with `data` typed per type. "
                f"Addresses use the default subject prefix `{PREFIX}` (ASSETD_SUBJECT_PREFIX "
                "changes it). See docs/events.md."),
            "tags": [{"name": "in", "description": "Inbound events (pipelines → daemon)."},
                     {"name": "out", "description": "Outbound events (daemon → subscribers)."},
                     {"name": "dlq", "description": "Dead letters."},
                     {"name": "api", "description": "Queries (request-reply)."}],
        },
        "defaultContentType": "application/json",
        "servers": {"embedded": {
            "host": f"127.0.0.1:{PORT}", "protocol": "nats",
            "description": "The NATS server the daemon embeds when no URL is configured "
                           "(port: ASSETD_EMBEDDED_NATS_PORT); ASSETD_NATS_URL points the "
                           "daemon and its clients at another server instead."}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages, "parameters": _parameters()},
    }
