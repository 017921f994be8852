"""The OpenAPI document at ``/schema/openapi.json``: what the decoders really accept and answer.

Handlers decode their own bodies (msgspec, strict, a 400 naming the ``param``), so Litestar
sees no ``data`` parameter and would document no request body, and a handler that returns a
``Response[Any]`` (JSON or SSE, JSON or text) gets an empty 200. A handler names its bodies in
``opt["openapi"]`` (a ``Doc``); the served document takes their JSON Schema from msgspec, the
same Structs the handlers decode and encode, so the schema and the decoder cannot disagree.

Every operation also documents the one error shape (``ErrorBody``) as its ``default`` response
and for 400 (Litestar's own 400 schema is replaced: its validation errors leave as
``ErrorBody`` too), and the operations behind the key guard name the bearer scheme.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

from llmux.protocol.errors import ErrorBody

REF = "#/components/schemas/{name}"
BEARER = {"type": "http", "scheme": "bearer", "description": "A key from api_keys.yaml"}
_TEXT: dict[str, Any] = {"type": "string"}
_BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
_SSE_FIELDS: dict[str, Any] = {"event": _TEXT, "id": _TEXT, "retry": {"type": "integer"}}


@dataclass(frozen=True)
class _Schemas:
    of: dict[Any, dict[str, Any]]
    """Each documented type's schema (a ``$ref``, or an ``anyOf`` of them for a union)."""
    components: dict[str, Any]


@dataclass(frozen=True)
class Content:
    """One media type of a body: JSON described by Structs (several: any of them), or opaque
    text or bytes (``types`` empty)."""

    media_type: str
    types: tuple[Any, ...] = ()
    files: tuple[str, ...] = ()
    """multipart only: the form fields that are file uploads."""
    done: bool = False
    """event streams only: the last event's data is ``[DONE]``."""


def json_of(*types: Any) -> Content:
    return Content("application/json", types)


def sse(*events: Any, done: bool) -> Content:
    """Server-sent events whose ``data`` is one of ``events`` as JSON (Open API 3.1: the schema
    of a stream describes each event), ended by ``data: [DONE]`` when ``done``."""
    return Content("text/event-stream", events, done=done)


def multipart(form: Any, files: tuple[str, ...]) -> Content:
    return Content("multipart/form-data", (form,), files)


@dataclass(frozen=True)
class Doc:
    """What a handler's ``opt["openapi"]`` says about its request and its 200."""

    body: tuple[Content, ...] = ()
    ok: tuple[Content, ...] = ()
    ok_description: str = "Success"
    other: tuple[tuple[int, str, Content], ...] = ()
    """Other documented answers that are not ``ErrorBody``: (status, description, content)."""


def _structs(app: Litestar) -> list[Any]:
    types: list[Any] = [ErrorBody]
    for _, _, handler in _operations(app):
        doc = handler.opt.get("openapi")
        if isinstance(doc, Doc):
            contents = (*doc.body, *doc.ok, *(c for _, _, c in doc.other))
            types += [t for c in contents for t in c.types]
    return types


def _operations(app: Litestar) -> list[tuple[str, str, HTTPRouteHandler]]:
    out = []
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for method, (handler, _) in route.route_handler_map.items():
                out.append((route.path_format or "/", method.lower(), handler))
    return out


def _schema(content: Content, known: _Schemas) -> dict[str, Any]:
    if not content.types:
        return _BINARY if content.media_type.startswith(("audio/", "application/octet")) else _TEXT
    refs = [known.of[t] for t in content.types]
    one = refs[0] if len(refs) == 1 else {"anyOf": refs}
    if content.media_type == "text/event-stream":
        data: dict[str, Any] = {"type": "string", "contentMediaType": "application/json", "contentSchema": one}
        if content.done:
            data = {"anyOf": [{"const": "[DONE]"}, {**data, "not": {"const": "[DONE]"}}]}
        return {"type": "object", "required": ["data"], "properties": {**_SSE_FIELDS, "data": data}}
    if content.files:  # the form's fields inline, plus the files, as one multipart object
        form: dict[str, Any] = copy.deepcopy(known.components[refs[0]["$ref"].rsplit("/", 1)[1]])
        fields = {name: _form_field(prop) for name, prop in form["properties"].items()}
        form["properties"] = {**{f: _BINARY for f in content.files}, **fields}
        form["required"] = [*content.files, *form.get("required", [])]
        return form
    return one


def _form_field(prop: dict[str, Any]) -> dict[str, Any]:
    """A form field is absent or a string, never null: ``X | None`` is documented as ``X``."""
    variants = [v for v in prop.get("anyOf", []) if v != {"type": "null"}]
    if len(variants) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**rest, **variants[0]}


def _media(contents: tuple[Content, ...], known: _Schemas) -> dict[str, Any]:
    return {c.media_type: {"schema": _schema(c, known)} for c in contents}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(name="ErrorBody")}}},
    }


def _document(operation: dict[str, Any], handler: HTTPRouteHandler, known: _Schemas) -> None:
    doc = handler.opt.get("openapi")
    responses = operation.setdefault("responses", {})
    if isinstance(doc, Doc):
        if doc.body:
            operation["requestBody"] = {"required": True, "content": _media(doc.body, known)}
        if doc.ok:
            responses["200"] = {"description": doc.ok_description, "content": _media(doc.ok, known)}
        for status, description, content in doc.other:
            responses[str(status)] = {"description": description, "content": _media((content,), known)}
    responses["400"] = _error("Invalid request: the error names the offending param")
    responses["default"] = _error("Any other error, in OpenAI's error shape")
    if handler.resolve_guards() and not handler.opt.get("public"):
        operation["security"] = [{"bearer": []}]


def _any_object(type_: Any) -> dict[str, Any]:
    """``object``: any JSON value (msgspec wants a non-empty schema)."""
    if type_ is object:
        return {"description": "any JSON value"}
    raise NotImplementedError(type_)


def document(app: Litestar, litestar_schema: dict[str, Any]) -> dict[str, Any]:
    """Litestar's document with every request body, 200 and error documented."""
    out = copy.deepcopy(litestar_schema)
    types = list(dict.fromkeys(_structs(app)))
    schemas, components = msgspec.json.schema_components(types, schema_hook=_any_object, ref_template=REF)
    known = _Schemas(dict(zip(types, schemas, strict=True)), components)
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components)  # the same Structs Litestar saw: msgspec's schema is the encoder's
    out["components"].setdefault("securitySchemes", {})["bearer"] = BEARER
    for path, method, handler in _operations(app):
        operation = out.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            _document(operation, handler, known)
    return out


class DocumentedJson(JsonRenderPlugin):
    """Serves ``document(...)`` at ``/schema/openapi.json`` (built once, on the first request)."""

    def __init__(self) -> None:
        super().__init__()
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = self.render_json(request, document(request.app, openapi_schema))
        return self._rendered
