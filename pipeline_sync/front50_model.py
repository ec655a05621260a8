"""Front50's pipeline model as Jackson reads it: typed fields, what each type accepts, parser limits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pipeline_sync.yamlsafe import format_key_path

# Where the facts below come from (spinnaker/spinnaker monorepo, 2026-08, Jackson 2.19 via Spring Boot 3.5):
# - front50/front50-api/src/main/java/com/netflix/spinnaker/front50/api/model/pipeline/Pipeline.java:
#   the fields and their Java types;
# - front50/front50-core/src/main/java/com/netflix/spinnaker/front50/jackson/mixins/PipelineMixins.java:
#   the same fields again, an any-setter (every other key is kept as it is) and `lastModified` ignored;
# - front50/front50-s3/src/main/java/com/netflix/spinnaker/front50/model/S3StorageService.java:
#   objects are read by a plain `new ObjectMapper()` with those mixins, so Jackson's defaults apply
#   (no ACCEPT_SINGLE_VALUE_AS_ARRAY, no UNWRAP_SINGLE_VALUE_ARRAYS, no empty-array-as-null,
#   ALLOW_COERCION_OF_SCALARS and ACCEPT_FLOAT_AS_INT on, duplicate keys: the last one wins);
#   a value that does not fit raises IllegalStateException, which aborts the whole cache refresh.
# - jackson-databind 2.19 StdDeserializer (_parseString, _parseInteger, _parseBoolean) and
#   CoercionConfigs.findCoercion: the coercions JavaType.accepts mirrors.

MIN_INT = -(2**31)
MAX_INT = 2**31 - 1


class JavaType(Enum):
    """A Java type of a Front50 model field: (its spelling, what Jackson accepts for it, in words)."""

    STRING = ("String", "text (a number or true/false is taken as text, a mapping or a list is not)")
    INTEGER = ("Integer", f"a whole number from {MIN_INT} to {MAX_INT} (or its digits as text)")
    BOOLEAN = ("Boolean", "true or false")
    MAP = ("Map<String, Object>", "a mapping")
    LIST_OF_STRINGS = ("List<String>", "a list of strings (a single string is not a list)")
    LIST_OF_MAPS = ("List<Map<String, Object>>", "a list of mappings")
    LIST_OF_TRIGGERS = ("List<Trigger>", "a list of mappings")
    ANY = ("Object", "anything")

    @property
    def java(self) -> str:
        return self.value[0]

    @property
    def expected(self) -> str:
        return self.value[1]

    def accepts(self, value: object) -> bool:
        """Whether Jackson, as Front50 configures it, reads value into this type without failing."""
        return _ACCEPTS[self](value)

    @property
    def element(self) -> JavaType | None:
        """The element type of a list type, None for every other type."""
        return _ELEMENTS.get(self)


# Pipeline.java + PipelineMixins.java. Fields with a getter (updateTs, lastModifiedBy) are also
# written through their private field (Jackson's INFER_PROPERTY_MUTATORS). createTs (no accessor)
# and lastModified (@JsonIgnore, so the any-setter keeps it) take anything, like every other key.
PIPELINE_FIELDS: Mapping[str, JavaType] = {
    "id": JavaType.STRING,
    "name": JavaType.STRING,
    "application": JavaType.STRING,
    "type": JavaType.STRING,
    "schema": JavaType.STRING,
    "config": JavaType.ANY,
    "triggers": JavaType.LIST_OF_TRIGGERS,
    "index": JavaType.INTEGER,
    "updateTs": JavaType.STRING,
    "lastModifiedBy": JavaType.STRING,
    "email": JavaType.STRING,
    "disabled": JavaType.BOOLEAN,
    "template": JavaType.MAP,
    "roles": JavaType.LIST_OF_STRINGS,
    "serviceAccount": JavaType.STRING,
    "executionEngine": JavaType.STRING,
    "stageCounter": JavaType.INTEGER,
    "stages": JavaType.LIST_OF_MAPS,
    "constraints": JavaType.MAP,
    "payloadConstraints": JavaType.MAP,
    "keepWaitingPipelines": JavaType.BOOLEAN,
    "limitConcurrent": JavaType.BOOLEAN,
    "maxConcurrentExecutions": JavaType.INTEGER,
    "parameterConfig": JavaType.LIST_OF_MAPS,
    "spelEvaluator": JavaType.STRING,
}

# front50/front50-api/.../model/pipeline/Trigger.java is a Map<String, Object> (a ForwardingMap), so
# Jackson reads any trigger mapping and types nothing inside it. Its getters do, and
# front50-web PipelineController's list and triggeredBy endpoints (which Echo and Orca call about
# every pipeline) call them: a value they cannot take fails the call for everyone.
TRIGGER_GETTERS: Mapping[str, str] = {
    "type": "Front50's Trigger.getType() casts it to String",
    "pipeline": "Front50's Trigger.getPipeline() casts it to String",
    "status": "Front50's Trigger.getStatus() copies the list with List.copyOf, which refuses null",
    "enabled": (
        "Front50 reads text 'true'/'false' and anything else as false, while Orca's "
        "DependentPipelineExecutionListener takes any non-empty value, the text 'false' too, as true"
    ),
}

# Stages are List<Map<String, Object>>: Front50 types nothing inside a stage.


@dataclass(frozen=True)
class Mismatch:
    """A value at path that Jackson cannot read into java_type (an element's type, inside a list)."""

    path: str
    value: object
    java_type: JavaType
    field: str


def mismatches(field: str, java_type: JavaType, value: object, path: str) -> Iterator[Mismatch]:
    """Where value, the field's value at path, does not fit java_type: the whole value or list entries."""
    element = java_type.element
    if element is not None and isinstance(value, list):
        for index, item in enumerate(value):
            if not element.accepts(item):
                yield Mismatch(f"{path}[{index}]", item, element, field)
    elif not java_type.accepts(value):
        yield Mismatch(path, value, java_type, field)


# --- Jackson's coercions, type by type ---------------------------------------------------------

# Java's String.trim() strips every char up to U+0020; Jackson's _isBlank uses the same bound.
_JAVA_WHITESPACE = "".join(chr(code) for code in range(0x21))
# What Integer.parseInt / Long.parseLong take (Character.digit also reads non-ASCII digits).
_JAVA_INTEGER = re.compile(r"[+-]?\d+")
_JAVA_TRUE_FALSE = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _accepts_string(value: object) -> bool:
    # _parseString: text as is, numbers and booleans as their text; a START_OBJECT fails
    # (extractScalarFromObject), a START_ARRAY fails (no unwrapping, empty array is not null).
    return value is None or isinstance(value, str | bool | int | float)


def _accepts_integer(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False  # _parseInteger has no case for true/false
    if isinstance(value, int):
        return MIN_INT <= value <= MAX_INT
    if isinstance(value, float):
        return MIN_INT <= value <= MAX_INT  # ACCEPT_FLOAT_AS_INT: truncated, but within int range
    if isinstance(value, str):
        text = value.strip(_JAVA_WHITESPACE)
        if not text or text == "null":  # empty/blank -> null (scalar coercion), "null" -> null
            return True
        return bool(_JAVA_INTEGER.fullmatch(text)) and MIN_INT <= int(text) <= MAX_INT
    return False


def _accepts_boolean(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return True  # _coerceBooleanFromInt: 0 is false, anything else true
    if isinstance(value, str):
        text = value.strip(_JAVA_WHITESPACE)
        return not text or text == "null" or text in _JAVA_TRUE_FALSE
    return False  # a float, a mapping or a list


def _accepts_map(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _accepts_list_of(element: JavaType) -> Callable[[object], bool]:
    def accepts(value: object) -> bool:
        return value is None or (isinstance(value, list) and all(element.accepts(v) for v in value))

    return accepts


_ACCEPTS: dict[JavaType, Callable[[object], bool]] = {
    JavaType.STRING: _accepts_string,
    JavaType.INTEGER: _accepts_integer,
    JavaType.BOOLEAN: _accepts_boolean,
    JavaType.MAP: _accepts_map,
    JavaType.LIST_OF_STRINGS: _accepts_list_of(JavaType.STRING),
    JavaType.LIST_OF_MAPS: _accepts_list_of(JavaType.MAP),
    JavaType.LIST_OF_TRIGGERS: _accepts_list_of(JavaType.MAP),
    JavaType.ANY: lambda value: True,
}
_ELEMENTS = {
    JavaType.LIST_OF_STRINGS: JavaType.STRING,
    JavaType.LIST_OF_MAPS: JavaType.MAP,
    JavaType.LIST_OF_TRIGGERS: JavaType.MAP,
}


# --- what Front50 holds, and writes back on its next save, once Jackson has read a value -------


def stored_value(java_type: JavaType, value: object) -> object:
    """The value Front50 holds after Jackson reads value (which java_type accepts) into java_type.

    It is what Front50 writes back on its next save of the pipeline (a Deck save, a reorder),
    None included: Front50 then leaves the field out (PipelineMixins: @JsonInclude(NON_NULL)).
    """
    return _STORED.get(java_type, _as_is)(value)


def java_trim(text: str) -> str:
    """Java's String.trim(): every char up to U+0020 off both ends."""
    return text.strip(_JAVA_WHITESPACE)


def _as_is(value: object) -> object:
    return value


def _stored_string(value: object) -> object:
    # _parseString takes a scalar token's text: true/false, digits, and a float as the JSON
    # text pipeline-sync writes for it (Python's shortest repr, as json.dumps writes it).
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return value


def _stored_integer(value: object) -> object:
    if isinstance(value, float):
        return int(value)  # ACCEPT_FLOAT_AS_INT: (int) truncates toward zero
    if isinstance(value, str):
        text = java_trim(value)
        return None if not text or text == "null" else int(text)
    return value


def _stored_boolean(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        text = java_trim(value)
        return None if not text or text == "null" else text.lower() == "true"
    return value


def _stored_strings(value: object) -> object:
    return [_stored_string(item) for item in value] if isinstance(value, list) else value


_STORED: dict[JavaType, Callable[[object], object]] = {
    JavaType.STRING: _stored_string,
    JavaType.INTEGER: _stored_integer,
    JavaType.BOOLEAN: _stored_boolean,
    JavaType.LIST_OF_STRINGS: _stored_strings,
}


# --- what Jackson's parser refuses whatever the type (jackson-core StreamReadConstraints) ------

MAX_DEPTH = 1000  # nested objects and arrays; the document itself is depth 1
MAX_NUMBER_DIGITS = 1000
MAX_STRING_CHARS = 20_000_000
MAX_NAME_CHARS = 50_000
_TOO_MANY_DIGITS = 10**MAX_NUMBER_DIGITS


# A path to a value, built only when a problem is reported: () for the document, else (parent, key).
_Link = tuple[Any, ...]


def limit_problems(document: object) -> Iterator[tuple[str, str]]:
    """(path, message) for what Jackson's parser refuses at its default limits; iterative, so any depth.

    Each kind of problem is reported once, at its first place in document order, and nothing
    inside a too-deep container is visited.
    """
    if _plainly_within_limits(document):  # nearly every pipeline: nothing to find, one quick walk
        return
    reported: set[str] = set()
    if not isinstance(document, dict | list):
        yield from _first(reported, _scalar_problems(document), ())
        return
    pending: list[tuple[dict[Any, Any] | list[Any], int, _Link]] = [(document, 1, ())]
    while pending:
        container, depth, link = pending.pop()
        if depth > MAX_DEPTH:
            yield from _first(reported, [("depth", _TOO_DEEP)], link)
            continue
        items = list(container.items()) if isinstance(container, dict) else list(enumerate(container))
        if isinstance(container, dict) and any(len(str(key)) > MAX_NAME_CHARS for key, _ in items):
            yield from _first(reported, [("name", _LONG_NAME)], link)
        children = []
        for key, value in items:
            if isinstance(value, dict | list):
                children.append((value, depth + 1, (link, key)))
            elif isinstance(value, int | str) and (found := _scalar_problems(value)):
                yield from _first(reported, found, (link, key))
        pending.extend(reversed(children))


def _plainly_within_limits(document: object) -> bool:
    """True only when limit_problems would find nothing: plain dicts, lists, str keys and
    scalars, all inside the limits. Anything else (a subclass, a non-str key) answers False,
    so limit_problems' own walk decides."""
    if type(document) is not dict and type(document) is not list:
        return not isinstance(document, dict | list | int | str)
    pending: list[tuple[dict[Any, Any] | list[Any], int]] = [(document, 1)]
    while pending:
        container, depth = pending.pop()
        if type(container) is dict:
            for key in container:
                if type(key) is not str or len(key) > MAX_NAME_CHARS:
                    return False
            values: Any = container.values()
        else:
            values = container
        for value in values:
            kind = type(value)
            if kind is str:
                if len(value) > MAX_STRING_CHARS:
                    return False
            elif kind is dict or kind is list:
                if depth >= MAX_DEPTH:
                    return False
                pending.append((value, depth + 1))
            elif kind is int:
                if not -_TOO_MANY_DIGITS < value < _TOO_MANY_DIGITS:
                    return False
            elif kind is not bool and kind is not float and value is not None:
                return False
    return True


_TOO_DEEP = (
    f"the pipeline nests mappings and lists deeper than {MAX_DEPTH} levels, "
    "Jackson's limit when Front50 reads it; flatten it"
)
_LONG_NAME = f"a key longer than {MAX_NAME_CHARS} characters is more than Jackson reads"


def _scalar_problems(value: object) -> list[tuple[str, str]]:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _TOO_MANY_DIGITS:
        return [
            (
                "number",
                f"a number with more than {MAX_NUMBER_DIGITS} digits is longer than Jackson reads "
                "when Front50 loads the pipeline; write it as text",
            )
        ]
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        return [("string", f"a text longer than {MAX_STRING_CHARS} characters is more than Jackson reads")]
    return []


def _first(reported: set[str], found: list[tuple[str, str]], link: _Link) -> Iterator[tuple[str, str]]:
    for kind, message in found:
        if kind not in reported:
            reported.add(kind)
            yield _path(link), message


def _path(link: _Link) -> str:
    parts: list[str | int] = []
    while link:
        link, key = link
        parts.append(key if isinstance(key, int) else str(key))
    return format_key_path(tuple(reversed(parts)))
