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


GZIP_MAGIC = b"\x1f\x8b"


def is_flow_log(path: str) -> bool:
    """A folder, or a file whose content (gunzipped) starts with JSON rather than a capture's magic."""
    p = Path(path)
    if p.is_dir():
        return True
    if not p.is_file():  # a pipe is read once, by the capture reader
        return False
    try:
        with open(p, "rb") as raw:
            head = raw.read(2)
            raw.seek(0)
            if head == GZIP_MAGIC:
                import gzip

                head = gzip.GzipFile(fileobj=raw).read(64)
            else:
                head = raw.read(64)
    except (OSError, EOFError):
        return False
    return head.lstrip()[:1] in (b"{", b"[")


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
    """A YAML text the plain builder leaves to PyYAML's composer and constructor."""


_NO_KEY = object()
"""A mapping's key not read yet."""


_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"


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
    scalar_event, mapping_start, sequence_start = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
    mapping_end, sequence_end, document_end = yaml.MappingEndEvent, yaml.SequenceEndEvent, yaml.DocumentEndEvent
    stream_end = yaml.StreamEndEvent

    class Bounds:
        """Measures a document as its aliases would expand before building it."""

        measured = True

        def __init__(self, stream: str) -> None:
            super().__init__(stream)  # type: ignore[call-arg]
            self.text = stream
            self.implicit_tags: dict[str, str] = {}  # a plain scalar's tag depends on its text alone

        def get_single_node(self) -> yaml.Node | None:
            node = super().get_single_node()  # type: ignore[misc]
            if node is not None and self.measured and _expanded_size(node, {}, 1) > MAX_YAML_NODES:
                raise _Refused(f"its YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?)")
            return node

        def get_single_data(self) -> Any:
            if not self.measured:  # shallow and without anchors: most of it is plain maps, lists, strings
                try:
                    return self._from_events()
                except _NotPlain:
                    return self._composed()
            node = self.get_single_node()
            return None if node is None else self.construct_document(node)  # type: ignore[attr-defined]

        def _composed(self) -> Any:
            """The text again, through PyYAML's composer and constructor."""
            again = type(self)(self.text)
            try:
                return again.get_single_data()
            finally:
                again.dispose()  # type: ignore[attr-defined]

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

        def _from_events(self) -> Any:
            """The document as SafeConstructor builds it, from the parser's events without composing nodes
            (a third less time): a plain scalar typed as the composer's resolver types it, a string read in
            place. Merge keys, tags, collections as keys, a second document (an error) or an alias (an
            error without anchors) are left to PyYAML's composer and constructor (`_NotPlain`)."""
            get_event, resolvers = self.get_event, self.yaml_implicit_resolvers  # type: ignore[attr-defined]
            if self.yaml_path_resolvers or None in resolvers:  # type: ignore[attr-defined]
                raise _NotPlain
            get_event()  # the stream's start
            if get_event().__class__ is stream_end:  # no document
                return None
            containers: list[Any] = [[]]  # the document's value lands in the first
            keys: list[Any] = [_NO_KEY]  # each mapping's key waiting for its value
            while True:
                event = get_event()
                kind = event.__class__
                if kind is scalar_event:
                    if event.tag is not None or event.anchor is not None:
                        raise _NotPlain
                    value = event.value
                    if event.implicit[0] and (not value or value[0] in resolvers):  # plain: typed by its text
                        tag = self.resolve(scalar_node, value, event.implicit)
                        if tag != _STR:
                            value = self._typed(tag, value)
                elif kind is mapping_start or kind is sequence_start:
                    if event.tag is not None or event.anchor is not None or (
                            keys[-1] is _NO_KEY and containers[-1].__class__ is dict):
                        raise _NotPlain
                    containers.append({} if kind is mapping_start else [])
                    keys.append(_NO_KEY)
                    continue
                elif kind is mapping_end or kind is sequence_end:
                    value = containers.pop()
                    keys.pop()
                elif kind is document_end:
                    break
                else:
                    raise _NotPlain
                top = containers[-1]
                if top.__class__ is list:
                    top.append(value)
                elif keys[-1] is _NO_KEY:
                    keys[-1] = value
                else:
                    top[keys[-1]] = value
                    keys[-1] = _NO_KEY
            if get_event().__class__ is not stream_end:
                raise _NotPlain
            return containers[0][0]

        def _typed(self, tag: str, text: str) -> Any:
            if tag == _INT and _plain_decimal(text):
                return int(text)
            constructor = self.yaml_constructors.get(tag)  # type: ignore[attr-defined]
            if constructor is None:  # a merge key or `=`: SafeConstructor reads them in their mapping
                raise _NotPlain
            return constructor(self, scalar_node(tag, text))

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
