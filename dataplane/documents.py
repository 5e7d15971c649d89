"""JSON and YAML documents from users' files, parsed within bounds.

Every file the tool reads (NSGs, scenarios, `--update`, `--expectations`, service tags) goes through
here, so a hostile or broken file is an error naming it, never a traceback or an exhausted machine:
nesting deeper than `MAX_DEPTH`, numbers longer than `MAX_NUMBER_DIGITS` digits, and YAML whose
aliases would expand past `MAX_YAML_NODES` nodes (the "billion laughs") are refused.
"""

from __future__ import annotations

import gc
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataplaneError

if TYPE_CHECKING:
    import yaml

MAX_DEPTH = 200
MAX_NUMBER_DIGITS = 100
MAX_YAML_NODES = 1_000_000

NSG_TYPE = "microsoft.network/networksecuritygroups"
CLASSIC_NSG_TYPE = "microsoft.classicnetwork/networksecuritygroups"
RULE_TYPE = NSG_TYPE + "/securityrules"


def is_template(doc: Any) -> bool:
    """An ARM template (evaluated by `arm`, imported only for one)."""
    return isinstance(doc, dict) and isinstance(doc.get("resources"), (list, dict)) and (
        isinstance(doc.get("resources"), list) or str(doc.get("languageVersion", "")).startswith("2"))


def is_terraform(doc: Any) -> bool:
    """`terraform show -json` output, state or plan: both carry these two keys (read by `terraform`)."""
    return isinstance(doc, dict) and "format_version" in doc and "terraform_version" in doc


def is_plan(doc: Any) -> bool:
    return is_terraform(doc) and ("planned_values" in doc or "resource_changes" in doc)


def read_text(path: str | Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataplaneError(f"cannot read: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise DataplaneError("is not a text file (JSON or YAML expected)", file=str(path)) from None


def read_document(path: str | Path) -> Any:
    """JSON or YAML (YAML is a superset, but JSON errors read better from the JSON parser)."""
    text = read_text(path)
    if Path(path).suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        return parse_json(text, file=str(path))
    return parse_yaml(text, file=str(path))


def parse_json(text: str | bytes, *, file: str | None = None) -> Any:
    try:
        doc = _json_as_azure_reads_it(text)
    except json.JSONDecodeError as e:
        raise DataplaneError(f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", file=file) from None
    except RecursionError:
        raise DataplaneError(f"is nested deeper than {MAX_DEPTH} levels", file=file) from None
    except _TooLong as e:
        raise DataplaneError(f"holds a number of more than {MAX_NUMBER_DIGITS} digits ({e.args[0]}…)",
                             file=file) from None
    _check_depth(doc, file)
    return doc


def parse_yaml(text: str, *, file: str | None = None) -> Any:
    import yaml

    python_loader, libyaml_loader = bounded_loaders()
    fast = libyaml_loader is not None and _shallow(text)
    loader = (libyaml_loader if fast else python_loader)(text)
    loader.measured = not fast or "&" in text  # shallow and without an anchor: nothing to expand or refuse
    collecting = gc.isenabled()
    gc.disable()  # tens of thousands of new nodes, marks and values, none garbage: collecting would walk them in vain
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise DataplaneError(f"is not valid JSON or YAML{where}", file=file) from None
    except RecursionError:
        raise DataplaneError(f"is nested deeper than {MAX_DEPTH} levels", file=file) from None
    except _Refused as e:
        raise DataplaneError(str(e), file=file) from None
    finally:
        if collecting:
            gc.enable()
        loader.dispose()


def _json_as_azure_reads_it(text: str | bytes) -> Any:
    """Plain JSON, else with ARM's extensions (comments, trailing commas, line breaks in strings)."""
    try:
        return json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float)
    except json.JSONDecodeError:
        if not isinstance(text, str):
            raise
        from .arm import without_json_extensions

        return json.loads(without_json_extensions(text), strict=False, parse_int=_bounded_int,
                          parse_float=_bounded_float)


class _TooLong(ValueError):
    pass


class _Refused(Exception):
    pass


class _NotPlain(Exception):
    """A YAML node the plain builder leaves to PyYAML's constructor."""


_STR, _INT, _MAP, _SEQ, _MERGE = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "map", "seq", "merge"))


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _TooLong(text[:20])
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS + 20:
        raise _TooLong(text[:20])
    return float(text)


def _check_depth(doc: Any, file: str | None) -> None:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DataplaneError(f"is nested deeper than {MAX_DEPTH} levels", file=file)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _shallow(text: str) -> bool:
    """Whether the text cannot nest past MAX_DEPTH: libyaml's composer recurses in C without a depth
    check, so only such texts go to it. Every level costs a flow bracket, or an indentation column or
    an indicator (`-`, `?`, `:`) on its line."""
    flow = text.count("[") + text.count("{")
    if flow >= MAX_DEPTH:
        return False
    lines = text.splitlines()
    if max(map(len, lines), default=0) < MAX_DEPTH - flow:  # a line's depth is at most its length: no need to count
        return True
    deepest = max((len(line) - len(line.lstrip(" ")) + line.count("-") + line.count("?") + line.count(":")
                   for line in lines), default=0)
    return flow + deepest < MAX_DEPTH


@lru_cache(maxsize=1)
def bounded_loaders() -> tuple[type[yaml.SafeLoader], type[yaml.CSafeLoader] | None]:
    """The bounded loaders, PyYAML's and libyaml's (None without libyaml), defined on first use so
    that reading JSON never loads PyYAML."""
    import yaml

    scalar_node = yaml.ScalarNode

    class Bounds:
        """Measures a document as its aliases would expand before building it."""

        measured = True

        def __init__(self, stream: str) -> None:
            super().__init__(stream)  # type: ignore[call-arg]
            self.implicit_tags: dict[str, str] = {}  # a plain scalar's tag depends on its text alone

        def get_single_node(self) -> yaml.Node | None:
            node = super().get_single_node()  # type: ignore[misc]
            if node is not None and self.measured and _expanded_size(node, {}, 1) > MAX_YAML_NODES:
                raise _Refused(f"its YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?)")
            return node

        def get_single_data(self) -> Any:
            node = self.get_single_node()
            if node is None:
                return None
            if not self.measured:  # shallow and without aliases: most of it is plain maps, lists, strings
                try:
                    return self._plain(node)
                except _NotPlain:
                    pass
            return self.construct_document(node)  # type: ignore[attr-defined]

        def resolve(self, kind: type[yaml.Node], value: str | None, implicit: Any) -> str:
            """PyYAML's, without its walk through the implicit resolvers for a scalar none of them could
            claim (a quoted one, or a plain one whose first character starts no bool, int, null...: most
            keys and names), and walking them once only for each distinct plain scalar."""
            if kind is scalar_node and not self.yaml_path_resolvers:
                resolvers = self.yaml_implicit_resolvers
                if not implicit[0] or (value and value[0] not in resolvers and None not in resolvers):
                    return self.DEFAULT_SCALAR_TAG
                tag = self.implicit_tags.get(value)
                if tag is None:
                    tag = self.implicit_tags[value] = super().resolve(kind, value, implicit)  # type: ignore[misc]
                return tag
            return super().resolve(kind, value, implicit)  # type: ignore[misc]

        def _plain(self, node: yaml.Node) -> Any:
            """The document as SafeConstructor builds it, without its generic machinery (a fifth of the
            time); merge keys, unhashable keys and other collection tags are left to it. String scalars,
            most of the nodes, are read in place rather than through a call each."""
            tag = node.tag
            if isinstance(node, yaml.ScalarNode):
                if tag == _STR:
                    return node.value
                if tag == _INT and _plain_decimal(node.value):
                    return int(node.value)
                return self.construct_object(node)  # type: ignore[attr-defined]
            if tag == _MAP and isinstance(node, yaml.MappingNode):
                mapping = {}
                for key_node, value_node in node.value:
                    key_tag = key_node.tag
                    if key_tag == _MERGE:
                        raise _NotPlain
                    key = key_node.value if key_tag == _STR and key_node.__class__ is scalar_node \
                        else self._plain(key_node)
                    try:
                        mapping[key] = value_node.value if value_node.tag == _STR and \
                            value_node.__class__ is scalar_node else self._plain(value_node)
                    except TypeError:  # an unhashable key: SafeConstructor's error names it
                        raise _NotPlain from None
                return mapping
            if tag == _SEQ and isinstance(node, yaml.SequenceNode):
                return [item.value if item.tag == _STR and item.__class__ is scalar_node else self._plain(item)
                        for item in node.value]
            raise _NotPlain

        def construct_yaml_int(self, node: yaml.Node) -> int:
            if sum(c.isdigit() for c in node.value) > MAX_NUMBER_DIGITS:
                raise _Refused(f"holds a number of more than {MAX_NUMBER_DIGITS} digits ({node.value[:20]}…)")
            return super().construct_yaml_int(node)  # type: ignore[misc]

    loaders = [type("BoundedLoader", (Bounds, yaml.SafeLoader), {})]
    if getattr(yaml, "CSafeLoader", None) is not None:  # libyaml: about ten times faster
        loaders.append(type("LibyamlBoundedLoader", (Bounds, yaml.CSafeLoader), {}))
    for loader in loaders:
        loader.add_constructor("tag:yaml.org,2002:int", loader.construct_yaml_int)
    return loaders[0], loaders[1] if len(loaders) > 1 else None


def _plain_decimal(text: str) -> bool:
    """Whether an int scalar is one SafeConstructor reads as plain decimal (`int(text)`), within bounds:
    no sign, `_`, base prefix, octal leading zero or sexagesimal `:`."""
    return text.isascii() and text.isdigit() and (text[0] != "0" or text == "0") and len(text) <= MAX_NUMBER_DIGITS


def _expanded_size(node: yaml.Node, sizes: dict[int, int], depth: int) -> int:
    """Values in the document once every alias is replaced by what it names; shared nodes counted each time.
    Nodes are told apart by their `id` ("scalar", "sequence", "mapping"), as PyYAML's own composer does."""
    if depth > MAX_DEPTH:
        raise _Refused(f"is nested deeper than {MAX_DEPTH} levels")
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if node.id == "sequence":
        for child in node.value:
            size += _expanded_size(child, sizes, depth + 1)
    elif node.id == "mapping":
        for key, value in node.value:
            size += _expanded_size(key, sizes, depth + 1) + _expanded_size(value, sizes, depth + 1)
    sizes[id(node)] = size
    if size > MAX_YAML_NODES:
        raise _Refused(f"its YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?)")
    return size
