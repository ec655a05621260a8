"""Round-trip edits of catalog files (ruamel.yaml): targets added or removed, variables set, comments kept.

Every edit is checked: the edited text is parsed again with the catalog's own loader and must
equal the original data with exactly that one change, or the edit is refused (nothing written).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from pipeline_sync.errors import CatalogError, PipelineSyncError
from pipeline_sync.yamlsafe import load_yaml


class CatalogEditError(PipelineSyncError):
    """A catalog file cannot be edited safely: the change is refused and the file left as it was."""


Change = Callable[[Any], None]


def edit(text: str, file: str, change: Change) -> str:
    """text with change applied to its data, layout and comments kept; change must act the same
    on a plain dict (the check) as on ruamel's round-trip mapping (the edit)."""
    try:
        expected, _ = load_yaml(text, file)
    except CatalogError as exc:
        raise CatalogEditError(f"cannot edit {file}: it does not parse ({exc.message})") from None
    expected = copy.deepcopy(expected)
    change(expected)
    try:
        data, indent, block_seq_indent = load_yaml_guess_indent(text)
    except Exception as exc:  # ruamel raises many types; any of them means "not editable"
        raise CatalogEditError(f"cannot edit {file}: {exc}") from None
    change(data)
    writer = _yaml()
    writer.indent(
        mapping=indent or 2, sequence=(indent or 2) + (block_seq_indent or 0), offset=block_seq_indent or 0
    )
    out = io.StringIO()
    writer.dump(data, out)
    edited = out.getvalue()
    try:
        again, _ = load_yaml(edited, file)
    except CatalogError:
        again = None
    if again != expected:
        raise CatalogEditError(f"cannot edit {file} safely (the edited file would not read back as intended)")
    return edited


def dump_new(data: dict[str, Any], header: str = "") -> str:
    """A new YAML file of data (block style, lists and small maps in flow style), with a header comment."""
    out = io.StringIO()
    _yaml().dump(_flowing(data), out)
    return header + out.getvalue()


def _yaml() -> YAML:
    writer = YAML(typ="rt")
    writer.preserve_quotes = True
    writer.width = 4096
    return writer


def _flowing(value: Any, depth: int = 0) -> Any:
    """Top-level mappings block style; anything under `stacks.<stack>` and every list in flow style.
    A string the catalog's YAML 1.1 loader would read as something else (`yes`, `1e3`, a date) is quoted."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        mapping = CommentedMap((k, _flowing(v, depth + 1)) for k, v in value.items())
        if depth >= 2 or not value:
            mapping.fa.set_flow_style()
        return mapping
    if isinstance(value, list):
        seq = CommentedSeq(_flowing(v, depth + 1) for v in value)
        seq.fa.set_flow_style()
        return seq
    return value


def _text(value: str) -> str:
    try:
        plain = yaml.safe_load(value) == value and "\n" not in value
    except yaml.YAMLError:
        plain = False
    return value if plain else DoubleQuotedScalarString(value)


def flow_map(**items: Any) -> CommentedMap:
    """A mapping written in flow style (`{pipelines: [x], ids: {x: id}}`), for new entries."""
    mapping = CommentedMap()
    for key, value in items.items():
        mapping[key] = _flowing(value, 2)
    mapping.fa.set_flow_style()
    return mapping


# -- the edits the importer, templatize and release make ---------------------------------------


def add_target(text: str, file: str, stack: str, template: str, pipeline_id: str) -> str:
    """The service file text with template listed on stack and pipeline_id pinned for it."""

    def change(data: Any) -> None:
        stacks = _mapping(data, "stacks", file)
        if stack not in stacks:
            entry = {"pipelines": [template], "ids": {template: pipeline_id}}
            stacks[stack] = flow_map(**entry) if isinstance(stacks, CommentedMap) else entry
            return
        settings = stacks[stack]
        if not isinstance(settings, dict):
            raise CatalogEditError(f"{file}: stacks.{stack} is not a mapping; add {template} by hand")
        pipelines = settings.setdefault("pipelines", [])
        if isinstance(pipelines, CommentedSeq) and not pipelines:
            pipelines.fa.set_flow_style()  # `pipelines: []` stays a flow list once it has an item
        if template in pipelines:
            raise CatalogEditError(
                f"{file}: stacks.{stack}.pipelines already lists {template!r}; it is not added again"
            )
        pipelines.append(_text(template))
        ids = settings.get("ids")
        if ids is None:
            settings["ids"] = (
                flow_map(**{template: pipeline_id})
                if isinstance(settings, CommentedMap)
                else {template: pipeline_id}
            )
        elif isinstance(ids, dict) and template not in ids:
            ids[template] = _text(pipeline_id)
        else:
            raise CatalogEditError(
                f"{file}: stacks.{stack}.ids already pins {template!r}; it is left as it is"
            )

    return edit(text, file, change)


def remove_target(text: str, file: str, stack: str, template: str) -> str:
    """The service file text without template on stack (and its pinned id); an emptied stack goes too."""

    def change(data: Any) -> None:
        stacks = _mapping(data, "stacks", file)
        settings = stacks.get(stack)
        if not isinstance(settings, dict) or template not in settings.get("pipelines", []):
            raise CatalogEditError(f"{file}: stacks.{stack}.pipelines does not list {template!r}")
        settings["pipelines"].remove(template)
        ids = settings.get("ids")
        if isinstance(ids, dict):
            ids.pop(template, None)
            if not ids:
                del settings["ids"]
        if not settings["pipelines"]:
            del stacks[stack]

    return edit(text, file, change)


def rename_target(text: str, file: str, stack: str, old: str, new: str) -> str:
    """The service file text with template old replaced by new on stack (its pinned id kept)."""

    def change(data: Any) -> None:
        settings = _mapping(data, "stacks", file).get(stack)
        if not isinstance(settings, dict) or old not in settings.get("pipelines", []):
            raise CatalogEditError(f"{file}: stacks.{stack}.pipelines does not list {old!r}")
        pipelines = settings["pipelines"]
        if new in pipelines:
            raise CatalogEditError(f"{file}: stacks.{stack}.pipelines already lists {new!r}")
        pipelines[pipelines.index(old)] = new
        ids = settings.get("ids")
        if isinstance(ids, dict) and old in ids:
            ids[new] = ids.pop(old)

    return edit(text, file, change)


def add_stack(text: str, file: str, stack: str) -> str:
    """defaults.yaml text with stack declared (manual approval: the default)."""

    def change(data: Any) -> None:
        stacks = _mapping(data, "stacks", file)
        if stack in stacks:
            raise CatalogEditError(f"{file}: stack {stack!r} is already declared")
        stacks[stack] = flow_map() if isinstance(stacks, CommentedMap) else {}

    return edit(text, file, change)


def set_vars(text: str, file: str, where: tuple[str, ...], values: dict[str, Any]) -> str:
    """text with each of values set under the mapping at where (e.g. ("stacks", "prod", "vars"));
    a variable already set there is refused, never overwritten."""

    def change(data: Any) -> None:
        node = data
        for depth, part in enumerate(where):
            if not isinstance(node, dict):
                raise CatalogEditError(f"{file}: {'.'.join(where)} is not a mapping")
            if part not in node or node[part] is None:
                block = CommentedMap() if depth < 2 else flow_map()  # top-level `vars:` in block style
                node[part] = block if isinstance(node, CommentedMap) else {}
            elif isinstance(node[part], CommentedMap) and not node[part]:
                node[part].fa.set_flow_style()  # `prod: {}` stays a flow mapping once it has a key
            node = node[part]
        if not isinstance(node, dict):
            raise CatalogEditError(f"{file}: {'.'.join(where)} is not a mapping")
        for name, value in values.items():
            if name in node:
                raise CatalogEditError(
                    f"{file}: {'.'.join(where)}.{name} is already set; it is not overwritten"
                )
            node[name] = _flowing(value, 2) if isinstance(node, CommentedMap) else copy.deepcopy(value)

    return edit(text, file, change)


def _mapping(data: Any, key: str, file: str) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise CatalogEditError(f"{file}: `{key}` is not a mapping")
    return data[key]
