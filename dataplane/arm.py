"""ARM templates read as Azure Resource Manager reads them: its JSON, its expressions, its loops.

Everything a template decides before deployment is evaluated here: parameters (a parameters file's values,
else the defaults), variables, the template functions, `copy` loops of resources, properties and variables,
`condition`, inline nested deployments (`inner` and `outer` scope), user-defined functions, lambdas, and
Bicep's `languageVersion: 2.0` (resources as an object). Values only Azure knows at deployment
(`reference()`, `list*()`, `newGuid()`, `utcNow()`, `deployment().properties`, Key Vault parameter
references) are carried as `DeploymentTimeValue` and become an error naming the expression and where it
was written only when a field the simulator uses needs them, as fields it does not use are never read.

Azure does not publish the hashes of `uniqueString()` and `guid()`: here they are the base32 of SHA-256
(13 lower-case characters) and a version-5 UUID in a fixed namespace; stable, but not Azure's values.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import urllib.parse
from functools import lru_cache
from typing import Any, Callable, Iterator, NamedTuple

from .documents import CLASSIC_NSG_TYPE, NSG_TYPE, RULE_TYPE
from .errors import DataplaneError

DEPLOYMENT_TYPE = "microsoft.resources/deployments"

SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
TENANT_ID = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "resourceGroup"
LOCATION = "westus"
GUID_NAMESPACE = "11fb06fb-712d-4ddd-98c7-e71bbd588830"
MAX_COPIES = 800  # ARM's limit on a copy loop's count


class TemplateError(DataplaneError):
    """A template Azure would refuse, or a value this reader cannot compute; `field` is the JSON path."""


class DeploymentTimeError(TemplateError):
    """A field the simulator needs holds a value that only exists once Azure deploys the template."""


class MissingParameterError(TemplateError):
    """A parameter with no default that neither a parameters file nor a parent deployment gave a value."""


class DeploymentTimeValue:
    """A value Azure computes at deployment, kept unevaluated until (and unless) a used field needs it."""

    __slots__ = ("expression", "where", "what")

    def __init__(self, expression: str, where: str, what: str):
        self.expression = expression
        self.where = where
        self.what = what

    def error(self, field: str, file: str | None) -> DeploymentTimeError:
        written = "" if self.where == field else f" (written at {self.where})"
        return DeploymentTimeError(f"{self.expression!r}{written} is known only at deployment time: {self.what}; "
                                   "give a concrete value (a parameters file, or edit the template)",
                                   file=file, field=field)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expression!r})"


class MissingParameterValue(DeploymentTimeValue):
    """A parameter with no default and no value given: carried like a deployment-time value, so that a
    variable holding it harms only the fields that use it."""

    def error(self, field: str, file: str | None) -> MissingParameterError:
        return MissingParameterError(self.what, file=file, field=field)


# -- ARM's JSON ---------------------------------------------------------------------------------------

_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/', re.DOTALL)
_STRING_OR_TRAILING_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(\s*[}\]])', re.DOTALL)


def without_json_extensions(text: str) -> str:
    """ARM's JSON as plain JSON: `//` and `/* */` comments and trailing commas become spaces, so a syntax
    error still names its true line and column. Line breaks inside strings need `json.loads(strict=False)`."""
    blanked = _STRING_OR_COMMENT.sub(
        lambda m: m.group() if m.group().startswith('"') else re.sub(r"[^\n]", " ", m.group()), text)
    return _STRING_OR_TRAILING_COMMA.sub(lambda m: m.group(1) or " " + m.group(2), blanked)


def parameter_values(doc: Any, *, file: str | None = None) -> dict[str, Any]:
    """The values of a parameters file (`{"parameters": {"x": {"value": ...}}}`); a Key Vault
    `reference` is a deployment-time value."""
    params = doc.get("parameters") if isinstance(doc, dict) and "parameters" in doc else doc
    if not isinstance(params, dict):
        raise TemplateError("is not an ARM parameters file: expected {\"parameters\": {\"name\": {\"value\": ...}}}",
                            file=file)
    values = {}
    for name, spec in params.items():
        if isinstance(spec, dict) and "value" in spec:
            values[name] = spec["value"]
        elif isinstance(spec, dict) and "reference" in spec:
            values[name] = DeploymentTimeValue(f"[parameters('{name}')]", f"parameters.{name}.reference",
                                               "a Key Vault secret reference")
        else:
            raise TemplateError("has no value (expected {\"value\": ...} or a Key Vault \"reference\")",
                                file=file, field=f"parameters.{name}")
    return values


# -- expressions: parsing ----------------------------------------------------------------------------

class Str(NamedTuple):
    value: str


class Num(NamedTuple):
    value: int | float


class Call(NamedTuple):
    name: str
    args: tuple


class Member(NamedTuple):
    target: Any
    name: str


class Index(NamedTuple):
    target: Any
    index: Any


def is_expression(value: Any) -> bool:
    """ARM's rule: a string is an expression when it starts with `[` and ends with `]`, unless `[[`."""
    return isinstance(value, str) and len(value) >= 2 and value[0] == "[" and value[-1] == "]" and value[1] != "["


def literal(value: str) -> str:
    """A string that is not an expression, with the `[[` escape undone."""
    return value[1:] if value.startswith("[[") and value.endswith("]") else value


@lru_cache(maxsize=4096)
def parse(expression: str) -> Any:
    """The syntax tree of `[...]`; a syntax error is a TemplateError naming the position."""
    return _Parser(expression[1:-1]).whole()


class _Parser:
    _IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
    _NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> TemplateError:
        return TemplateError(f"template expression '[{self.text}]' has a syntax error at character "
                             f"{self.pos + 2}: {what}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def whole(self) -> Any:
        node = self.expr()
        if self.peek():
            raise self.fail(f"unexpected {self.text[self.pos:]!r}")
        return node

    def expr(self) -> Any:
        node = self.primary()
        while True:
            char = self.peek()
            if char == ".":
                self.pos += 1
                self.skip_space()
                m = self._IDENT.match(self.text, self.pos)
                if not m:
                    raise self.fail("expected a property name after '.'")
                self.pos = m.end()
                node = Member(node, m.group())
            elif char == "[":
                self.pos += 1
                index = self.expr()
                self.expect("]")
                node = Index(node, index)
            else:
                return node

    def primary(self) -> Any:
        char = self.peek()
        if char == "'":
            return Str(self.string())
        m = self._NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return Num(float(m.group()) if "." in m.group() else int(m.group()))
        m = self._IDENT.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a function call, a 'string' or a number")
        self.pos = m.end()
        name = m.group()
        while self.peek() == "." and self._IDENT.match(self.text, self.pos + 1):
            after = self._IDENT.match(self.text, self.pos + 1)
            save = self.pos
            self.pos = after.end()
            if self.peek() != "(":
                self.pos = save
                break
            name += "." + after.group()
        self.expect("(")
        args = []
        if self.peek() != ")":
            args.append(self.expr())
            while self.peek() == ",":
                self.pos += 1
                args.append(self.expr())
        self.expect(")")
        return Call(name, tuple(args))

    def string(self) -> str:
        self.pos += 1
        out = []
        while True:
            end = self.text.find("'", self.pos)
            if end < 0:
                raise self.fail("a string is not closed")
            out.append(self.text[self.pos:end])
            self.pos = end + 1
            if self.text.startswith("'", self.pos):
                out.append("'")
                self.pos += 1
            else:
                return "".join(out)


# -- expressions: evaluation -------------------------------------------------------------------------

class _Lambda(NamedTuple):
    names: tuple[str, ...]
    body: Any
    ctx: "Context"


class Scope:
    """One template's parameters, variables and functions: the top-level template, or an `inner`-scoped
    nested one. Values are computed on first use, so a deployment-time default no field needs is harmless."""

    def __init__(self, doc: dict, given: dict[str, Callable[[], Any]], file: str | None, where: str):
        self.file = file
        self.where = where
        self.parameters = _mapping(doc.get("parameters"))
        self.variables = _mapping(doc.get("variables"))
        self.given = {name.lower(): value for name, value in given.items()}
        self.functions = {}
        for group in doc.get("functions") or []:
            if isinstance(group, dict):
                for name, member in _mapping(group.get("members")).items():
                    self.functions[f"{group.get('namespace', '')}.{name}".lower()] = member
        self.variable_copies = {}
        for loop in self.variables.get("copy") or [] if isinstance(self.variables.get("copy"), list) else []:
            if isinstance(loop, dict) and isinstance(loop.get("name"), str):
                self.variable_copies[loop["name"].lower()] = loop
        self._values: dict[tuple[str, str], Any] = {}
        self._busy: set[tuple[str, str]] = set()

    def parameter(self, name: str, ctx: "Context") -> Any:
        return self._cached("parameters", name, ctx, self._parameter)

    def variable(self, name: str, ctx: "Context") -> Any:
        return self._cached("variables", name, ctx, self._variable)

    def _cached(self, kind: str, name: str, ctx: "Context", compute: Callable) -> Any:
        key = (kind, name.lower())
        if key in self._values:
            return self._values[key]
        if key in self._busy:
            raise ctx.error(f"{kind[:-1]} {name!r} refers back to itself through parameters or variables",
                            quoted=False)
        self._busy.add(key)
        try:
            value = compute(name, ctx)
        finally:
            self._busy.discard(key)
        self._values[key] = value
        return value

    def _parameter(self, name: str, ctx: "Context") -> Any:
        key = _find_key(self.parameters, name)
        if key is None:
            raise ctx.error(f"parameter {name!r} is not defined in the template", quoted=False)
        spec = self.parameters[key]
        if not isinstance(spec, dict):
            raise ctx.error(f"parameter {name!r} is not declared as an object with a type")
        if key.lower() in self.given:
            return _coerce_parameter(self.given[key.lower()](), spec, key, ctx)
        if "defaultValue" not in spec and spec.get("nullable") is True:
            return None
        if "defaultValue" not in spec:
            return MissingParameterValue(ctx.text, ctx.where, f"parameter {key!r} has no defaultValue in the "
                                         "template and no value was given (use a parameters file)")
        inner = Context(self, {}, {}, f"{self.where}parameters.{key}.defaultValue")
        return _coerce_parameter(inner.resolve(spec["defaultValue"]), spec, key, ctx)

    def _variable(self, name: str, ctx: "Context") -> Any:
        if name.lower() in self.variable_copies:
            loop = self.variable_copies[name.lower()]
            inner = Context(self, {}, {}, f"{self.where}variables.copy[{loop['name']}]")
            return inner.copy_property(loop)
        key = _find_key(self.variables, name)
        if key is None or key == "copy":
            raise ctx.error(f"variable {name!r} is not defined in the template", quoted=False)
        return Context(self, {}, {}, f"{self.where}variables.{key}").resolve(self.variables[key])


class Context:
    """Where an expression is evaluated: its scope, the copy loops it is inside, lambda variables, and
    the JSON path it was written at (for messages)."""

    __slots__ = ("scope", "loops", "lambdas", "where", "text")

    def __init__(self, scope: Scope, loops: dict, lambdas: dict, where: str, text: str = ""):
        self.scope = scope
        self.loops = loops
        self.lambdas = lambdas
        self.where = where
        self.text = text

    def at(self, where: str) -> "Context":
        return Context(self.scope, self.loops, self.lambdas, where)

    def error(self, message: str, *, quoted: bool = True) -> TemplateError:
        """`quoted`: the message starts with the expression, unless it names what failed already."""
        about = f"{self.text!r}: " if self.text and quoted else ""
        return TemplateError(about + message, file=self.scope.file, field=self.where)

    def deferred(self, what: str) -> DeploymentTimeValue:
        return DeploymentTimeValue(self.text, self.where, what)

    def resolve(self, value: Any) -> Any:
        """A JSON value with every expression evaluated and property `copy` loops expanded."""
        if isinstance(value, str):
            if is_expression(value):
                return self.evaluate(value)
            return literal(value)
        if isinstance(value, list):
            return [self.at(f"{self.where}[{i}]").resolve(v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "copy" and isinstance(item, list) and all(isinstance(c, dict) and "input" in c
                                                                     for c in item):
                    for loop in item:
                        out[str(loop.get("name"))] = self.at(f"{self.where}.copy").copy_property(loop)
                else:
                    out[key] = self.at(f"{self.where}.{key}").resolve(item)
            return out
        return value

    def copy_property(self, loop: dict) -> Any:
        name = loop.get("name")
        count = self.at(f"{self.where}.count").resolve(loop.get("count"))
        if isinstance(count, DeploymentTimeValue):
            return count
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COPIES:
            raise self.error(f"copy loop {name!r}: count {_show(count)} is not a whole number from 0 to {MAX_COPIES}")
        out = []
        for i in range(count):
            inner = Context(self.scope, {**self.loops, str(name).lower(): i}, self.lambdas,
                            f"{self.where}.input")
            out.append(inner.resolve(loop.get("input")))
        return out

    def evaluate(self, expression: str) -> Any:
        ctx = Context(self.scope, self.loops, self.lambdas, self.where, expression)
        try:
            return ctx.eval(parse(expression))
        except TemplateError as e:
            if e.field is None:
                raise ctx.error(e.message, quoted=False) from None
            raise
        except RecursionError:
            raise ctx.error("is nested too deeply to evaluate") from None

    def eval(self, node: Any) -> Any:
        kind = type(node)
        if kind is Str or kind is Num:
            return node.value
        if kind is Member:
            target = self.eval(node.target)
            return self.member(target, node.name)
        if kind is Index:
            target = self.eval(node.target)
            index = self.eval(node.index)
            if isinstance(index, DeploymentTimeValue):
                return index
            return self.member(target, index)
        return self.call(node)

    def member(self, target: Any, key: Any) -> Any:
        if isinstance(target, DeploymentTimeValue):
            return target
        if isinstance(target, dict) and isinstance(key, str):
            found = _find_key(target, key)
            if found is None:
                raise self.error(f"the object has no property {key!r} (it has: {', '.join(target) or 'none'})")
            return target[found]
        if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(target):
                raise self.error(f"index {key} is outside the array of {len(target)} elements")
            return target[key]
        raise self.error(f"cannot take {key!r} of {_kind(target)}")

    def call(self, node: Call) -> Any:
        name = node.name.lower()
        special = _SPECIAL.get(name)
        if special is not None:
            try:
                return special(self, node.args)
            except (TypeError, ValueError, IndexError) as e:
                raise self.error(f"{node.name}() cannot be evaluated: {_reason(e)}") from None
        if name not in self.scope.functions and (name.startswith("list") or name in _DEPLOYMENT_TIME):
            return self.deferred(_DEPLOYMENT_TIME.get(name, f"{node.name}() reads a resource's secrets or state"))
        args = [self.eval(a) for a in node.args]
        for arg in args:
            if isinstance(arg, DeploymentTimeValue):
                return arg
        if name in self.scope.functions:
            return self.user_function(node.name, self.scope.functions[name], args)
        function = _FUNCTIONS.get(name)
        if function is None and name in _NOT_EVALUATED:
            raise self.error(f"{node.name}() is not evaluated by this simulator; give the value it computes")
        if function is None:
            raise self.error(f"{node.name}() is not a template function")
        try:
            return function(self, *args)
        except TemplateError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, AttributeError) as e:
            shown = ", ".join(_show(a) for a in args)
            raise self.error(f"{node.name}({shown}) cannot be evaluated: {_reason(e)}") from None

    def user_function(self, name: str, member: dict, args: list) -> Any:
        """A user-defined function sees only its own parameters (no variables, no other parameters)."""
        declared = [p.get("name") for p in member.get("parameters") or [] if isinstance(p, dict)]
        if len(args) != len(declared):
            raise self.error(f"{name}() takes {len(declared)} arguments, got {len(args)}")
        doc = {"parameters": {p: {} for p in declared}}
        given = {p: (lambda v=v: v) for p, v in zip(declared, args, strict=True)}
        scope = Scope(doc, given, self.scope.file, self.where)
        return Context(scope, {}, {}, self.where).resolve(_mapping(member.get("output")).get("value"))


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _find_key(mapping: dict, name: str) -> str | None:
    """ARM names (parameters, variables, properties) compare case-insensitively."""
    if name in mapping:
        return name
    lowered = name.lower()
    return next((k for k in mapping if isinstance(k, str) and k.lower() == lowered), None)


def _coerce_parameter(value: Any, spec: dict, name: str, ctx: Context) -> Any:
    """ARM converts the strings "true"/"false" and digits given for bool and int parameters, and refuses a
    value outside `allowedValues` (strings compared case-insensitively)."""
    kind = str(spec.get("type", "")).lower()
    if isinstance(value, DeploymentTimeValue):
        return value
    if kind == "bool" and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    elif kind == "int" and isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    allowed = spec.get("allowedValues")
    if isinstance(allowed, list) and not isinstance(value, list) and value not in allowed and not (
            isinstance(value, str) and any(isinstance(a, str) and a.lower() == value.lower() for a in allowed)):
        raise ctx.error(f"parameter {name!r} is {_show(value)}, not one of its allowedValues "
                        f"({', '.join(_show(a) for a in allowed)})")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, _Lambda) else "lambda"
    return text if len(text) <= 60 else text[:57] + "..."


def _reason(error: Exception) -> str:
    return str(error) or type(error).__name__


# -- functions whose arguments are evaluated lazily ------------------------------------------------------

def _parameters(ctx: Context, args: tuple) -> Any:
    name = _one_name(ctx, args, "parameters")
    if isinstance(name, DeploymentTimeValue):
        return name
    return ctx.scope.parameter(name, ctx)


def _variables(ctx: Context, args: tuple) -> Any:
    name = _one_name(ctx, args, "variables")
    if isinstance(name, DeploymentTimeValue):
        return name
    return ctx.scope.variable(name, ctx)


def _one_name(ctx: Context, args: tuple, function: str) -> Any:
    if len(args) != 1:
        raise ctx.error(f"{function}() takes one name")
    name = ctx.eval(args[0])
    if not isinstance(name, (str, DeploymentTimeValue)):
        raise ctx.error(f"{function}() takes a name, got {_show(name)}")
    return name


def _copy_index(ctx: Context, args: tuple) -> Any:
    values = [ctx.eval(a) for a in args]
    name = next((v for v in values if isinstance(v, str)), None)
    offset = next((v for v in values if isinstance(v, int) and not isinstance(v, bool)), 0)
    key = name.lower() if name is not None else None
    if key not in ctx.loops:
        raise ctx.error(f"copyIndex({_show(name) if name else ''}) is used outside a copy loop of that name"
                        if name else "copyIndex() is used outside a resource copy loop")
    return ctx.loops[key] + offset


def _if(ctx: Context, args: tuple) -> Any:
    if len(args) != 3:
        raise ctx.error("if() takes a condition, a true value and a false value")
    condition = ctx.eval(args[0])
    if isinstance(condition, DeploymentTimeValue):
        return condition
    return ctx.eval(args[1] if _truth(ctx, condition, "if") else args[2])


def _and(ctx: Context, args: tuple) -> Any:
    for arg in args:
        value = ctx.eval(arg)
        if isinstance(value, DeploymentTimeValue) or not _truth(ctx, value, "and"):
            return value if isinstance(value, DeploymentTimeValue) else False
    return True


def _or(ctx: Context, args: tuple) -> Any:
    for arg in args:
        value = ctx.eval(arg)
        if isinstance(value, DeploymentTimeValue) or _truth(ctx, value, "or"):
            return value if isinstance(value, DeploymentTimeValue) else True
    return False


def _coalesce(ctx: Context, args: tuple) -> Any:
    for arg in args:
        value = ctx.eval(arg)
        if value is not None:
            return value
    return None


def _truth(ctx: Context, value: Any, function: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ctx.error(f"{function}() needs a boolean, got {_show(value)}")


def _lambda(ctx: Context, args: tuple) -> Any:
    names = tuple(ctx.eval(a) for a in args[:-1])
    return _Lambda(names, args[-1], ctx)


def _lambda_variables(ctx: Context, args: tuple) -> Any:
    name = ctx.eval(args[0])
    if name not in ctx.lambdas:
        raise ctx.error(f"lambdaVariables({name!r}) is used outside a lambda that declares it")
    return ctx.lambdas[name]


def _deployment(ctx: Context, args: tuple) -> Any:
    return {"name": ctx.deferred("deployment().name is chosen when deploying"),
            "properties": ctx.deferred("deployment().properties describes the running deployment")}


def _try_get(ctx: Context, args: tuple) -> Any:
    value = ctx.eval(args[0])
    for arg in args[1:]:
        if isinstance(value, DeploymentTimeValue):
            return value
        key = ctx.eval(arg)
        if isinstance(value, dict) and isinstance(key, str):
            found = _find_key(value, key)
            value = value[found] if found is not None else None
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        else:
            return None
    return value


_SPECIAL: dict[str, Callable[[Context, tuple], Any]] = {
    "parameters": _parameters, "variables": _variables, "copyindex": _copy_index, "if": _if, "and": _and,
    "or": _or, "coalesce": _coalesce, "lambda": _lambda, "lambdavariables": _lambda_variables,
    "deployment": _deployment, "tryget": _try_get,
}

# Template functions whose value is known before deployment but that this reader does not compute.
_NOT_EVALUATED = {"datetimeadd"}

_DEPLOYMENT_TIME = {
    "reference": "reference() reads a deployed resource's state",
    "newguid": "newGuid() is new on every deployment",
    "utcnow": "utcNow() is the time of the deployment",
    "providers": "providers() reads what the subscription's resource providers offer",
    "pickzones": "pickZones() reads which zones the region offers",
    "managementgroup": "managementGroup() is the deployment's management group",
}


# -- functions of evaluated arguments ------------------------------------------------------------------

def _to_string(value: Any) -> str:
    """ARM's string(): booleans as .NET writes them, arrays and objects as compact JSON."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _concat(ctx: Context, *args: Any) -> Any:
    if args and all(isinstance(a, list) or a is None for a in args):
        return [x for a in args if a for x in a]
    if any(isinstance(a, (list, dict)) for a in args):
        raise ValueError("concat() takes all arrays or all strings and numbers")
    return "".join(_to_string(a) for a in args)


_FORMAT_ITEM = re.compile(r"\{\{|\}\}|\{(\d+)(?:,(-?\d+))?(?::([^}]*))?\}")


def _format(ctx: Context, template: str, *args: Any) -> str:
    """.NET composite formatting, with the numeric formats templates use (D, N, X, 0-padding)."""
    def item(m: re.Match) -> str:
        if m.group() in ("{{", "}}"):
            return m.group()[0]
        value = args[int(m.group(1))]
        spec = m.group(3) or ""
        if spec and isinstance(value, int) and not isinstance(value, bool):
            text = _number_format(value, spec)
        else:
            text = _to_string(value)
        width = int(m.group(2) or 0)
        return text.rjust(width) if width > 0 else text.ljust(-width)
    return _FORMAT_ITEM.sub(item, template)


def _number_format(value: int, spec: str) -> str:
    letter, digits = spec[:1].upper(), spec[1:]
    if letter == "D":
        return f"{value:0{int(digits or 0)}d}" if value >= 0 else "-" + f"{-value:0{int(digits or 0)}d}"
    if letter == "X":
        text = f"{value:0{int(digits or 0)}x}"
        return text.upper() if spec[0] == "X" else text
    if letter == "N":
        return f"{value:,.{int(digits or 2)}f}"
    if set(spec) <= {"0", "#"}:
        return f"{value:0{spec.count('0')}d}"
    raise ValueError(f"format {spec!r} is not supported")


def _length(ctx: Context, value: Any) -> int:
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise ValueError(f"length() takes a string, an array or an object, not {_kind(value)}")


def _int(ctx: Context, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("int() does not take a boolean")
    if isinstance(value, float):
        return int(value)
    return int(value)


def _bool(ctx: Context, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"bool() takes true, false, 'true', 'false' or a number, not {_show(value)}")


def _whole(value: Any, function: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{function}() takes integers, not {_show(value)}")
    return value


def _div(ctx: Context, a: Any, b: Any) -> int:
    a, b = _whole(a, "div"), _whole(b, "div")
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _mod(ctx: Context, a: Any, b: Any) -> int:
    a, b = _whole(a, "mod"), _whole(b, "mod")
    return a - b * _div(ctx, a, b)


def _equals(ctx: Context, a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _compare(ctx: Context, a: Any, b: Any) -> int:
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return (a > b) - (a < b)
    raise ValueError("compares two integers or two strings")


def _contains(ctx: Context, container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return _to_string(item) in container
    if isinstance(container, list):
        return any(_equals(ctx, x, item) for x in container)
    if isinstance(container, dict):
        return _find_key(container, _to_string(item)) is not None
    raise ValueError(f"contains() searches a string, an array or an object, not {_kind(container)}")


def _empty(ctx: Context, value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and len(value) == 0)


def _first(ctx: Context, value: Any) -> Any:
    if isinstance(value, (str, list)):
        return value[0] if value else ("" if isinstance(value, str) else None)
    raise ValueError(f"first() takes a string or an array, not {_kind(value)}")


def _last(ctx: Context, value: Any) -> Any:
    if isinstance(value, (str, list)):
        return value[-1] if value else ("" if isinstance(value, str) else None)
    raise ValueError(f"last() takes a string or an array, not {_kind(value)}")


def _union(ctx: Context, *args: Any) -> Any:
    if all(isinstance(a, dict) for a in args):
        merged: dict = {}
        for a in args:
            for key, value in a.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = _union(ctx, merged[key], value)
                else:
                    merged[key] = value
        return merged
    if all(isinstance(a, list) for a in args):
        out: list = []
        for a in args:
            out.extend(x for x in a if not any(_equals(ctx, x, y) for y in out))
        return out
    raise ValueError("union() takes all arrays or all objects")


def _intersection(ctx: Context, first: Any, *rest: Any) -> Any:
    if isinstance(first, dict) and all(isinstance(a, dict) for a in rest):
        return {k: v for k, v in first.items() if all(k in a and _equals(ctx, a[k], v) for a in rest)}
    if isinstance(first, list) and all(isinstance(a, list) for a in rest):
        out: list = []
        for x in first:
            if all(any(_equals(ctx, x, y) for y in a) for a in rest) and not any(_equals(ctx, x, y) for y in out):
                out.append(x)
        return out
    raise ValueError("intersection() takes all arrays or all objects")


def _take(ctx: Context, value: Any, count: Any) -> Any:
    return value[:max(0, _whole(count, "take"))]


def _skip(ctx: Context, value: Any, count: Any) -> Any:
    return value[max(0, _whole(count, "skip")):]


def _range(ctx: Context, start: Any, count: Any) -> list:
    start, count = _whole(start, "range"), _whole(count, "range")
    if count < 0 or count > 10000:
        raise ValueError("the count must be between 0 and 10000")
    return list(range(start, start + count))


def _substring(ctx: Context, text: Any, start: Any, length: Any = None) -> str:
    start = _whole(start, "substring")
    length = len(text) - start if length is None else _whole(length, "substring")
    if start < 0 or length < 0 or start + length > len(text):
        raise ValueError(f"start {start} and length {length} lie outside the string of {len(text)} characters")
    return text[start:start + length]


def _split(ctx: Context, text: str, delimiters: Any) -> list:
    delimiters = [delimiters] if isinstance(delimiters, str) else delimiters
    return re.split("|".join(re.escape(d) for d in delimiters), text) if delimiters else [text]


def _join(ctx: Context, items: list, delimiter: str) -> str:
    return delimiter.join(_to_string(i) for i in items)


def _index_of(ctx: Context, container: Any, item: Any, last: bool = False) -> int:
    if isinstance(container, str):
        return (container.lower().rfind if last else container.lower().find)(str(item).lower())
    matches = [i for i, x in enumerate(container) if _equals(ctx, x, item)]
    return (matches[-1] if last else matches[0]) if matches else -1


def _pad_left(ctx: Context, value: Any, length: Any, char: str = " ") -> str:
    return _to_string(value).rjust(_whole(length, "padLeft"), char[:1])


def _unique_string(ctx: Context, *args: Any) -> str:
    import hashlib

    digest = hashlib.sha256("-".join(_to_string(a) for a in args).encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:13]


def _guid(ctx: Context, *args: Any) -> str:
    import uuid  # here: few templates call guid(), and uuid takes a twentieth of `lint`'s start-up

    return str(uuid.uuid5(uuid.UUID(GUID_NAMESPACE), "-".join(_to_string(a) for a in args)))


def _resource_id(ctx: Context, *args: Any) -> str:
    """`resourceId([subscriptionId], [resourceGroupName], type, name...)`: the type is the first argument with a
    slash; the arguments before it are the subscription and group."""
    typed = _type_argument(args)
    before = args[:typed]
    sub = before[0] if len(before) == 2 else SUBSCRIPTION_ID
    group = before[-1] if before else RESOURCE_GROUP
    return f"/subscriptions/{sub}/resourceGroups/{group}" + _provider_path(args[typed], args[typed + 1:])


def _subscription_resource_id(ctx: Context, *args: Any) -> str:
    typed = _type_argument(args)
    sub = args[0] if typed == 1 else SUBSCRIPTION_ID
    return f"/subscriptions/{sub}" + _provider_path(args[typed], args[typed + 1:])


def _type_argument(args: tuple) -> int:
    found = next((i for i, a in enumerate(args) if isinstance(a, str) and "/" in a), None)
    if found is None:
        raise ValueError("no argument is a resource type (Namespace/type)")
    return found


def _tenant_resource_id(ctx: Context, kind: str, *names: Any) -> str:
    return _provider_path(kind, names)


def _extension_resource_id(ctx: Context, scope: str, kind: str, *names: Any) -> str:
    return scope.rstrip("/") + _provider_path(kind, names)


def _provider_path(kind: str, names: tuple) -> str:
    namespace, *types = [part for part in kind.split("/") if part]
    if len(types) != len(names):
        raise ValueError(f"type {kind!r} needs {len(types)} names, got {len(names)}")
    return f"/providers/{namespace}" + "".join(f"/{t}/{_to_string(n)}" for t, n in zip(types, names, strict=True))


def _resource_group(ctx: Context) -> dict:
    return {"id": f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}", "name": RESOURCE_GROUP,
            "type": "Microsoft.Resources/resourceGroups", "location": LOCATION, "tags": {},
            "properties": {"provisioningState": "Succeeded"}}


def _subscription(ctx: Context) -> dict:
    return {"id": f"/subscriptions/{SUBSCRIPTION_ID}", "subscriptionId": SUBSCRIPTION_ID, "tenantId": TENANT_ID,
            "displayName": "subscription"}


def _environment(ctx: Context) -> dict:
    """Azure's public cloud, as `environment()` returns it there."""
    return {
        "name": "AzureCloud", "gallery": "https://gallery.azure.com/",
        "graph": "https://graph.windows.net/", "portal": "https://portal.azure.com",
        "graphAudience": "https://graph.windows.net/", "activeDirectoryDataLake": "https://datalake.azure.net/",
        "batch": "https://batch.core.windows.net/", "media": "https://rest.media.azure.net",
        "sqlManagement": "https://management.core.windows.net:8443/", "vmImageAliasDoc": "",
        "resourceManager": "https://management.azure.com/",
        "authentication": {"loginEndpoint": "https://login.microsoftonline.com/",
                           "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                           "tenant": "common", "identityProvider": "AAD"},
        "suffixes": {"acrLoginServer": ".azurecr.io",
                     "azureDatalakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
                     "azureDatalakeStoreFileSystem": "azuredatalakestore.net",
                     "azureFrontDoorEndpointSuffix": "azurefd.net", "keyvaultDns": ".vault.azure.net",
                     "sqlServerHostname": ".database.windows.net", "storage": "core.windows.net"},
    }


def _json(ctx: Context, text: str) -> Any:
    return json.loads(text)


def _base64_to_string(ctx: Context, text: str) -> str:
    return base64.b64decode(text).decode("utf-8")


def _uri(ctx: Context, base: str, relative: str) -> str:
    return urllib.parse.urljoin(base, relative)


def _data_uri(ctx: Context, value: Any) -> str:
    return "data:text/plain;charset=utf8;base64," + base64.b64encode(_to_string(value).encode()).decode()


def _data_uri_to_string(ctx: Context, value: str) -> str:
    return base64.b64decode(value.split(",", 1)[1]).decode("utf-8")


def _items(ctx: Context, value: dict) -> list:
    return [{"key": k, "value": value[k]} for k in sorted(value, key=str.lower)]


def _min(ctx: Context, *args: Any) -> Any:
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    return min(_whole(v, "min") for v in values)


def _max(ctx: Context, *args: Any) -> Any:
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    return max(_whole(v, "max") for v in values)


def _apply(ctx: Context, function: Any, *values: Any) -> Any:
    if not isinstance(function, _Lambda):
        raise ValueError("expects a lambda()")
    if len(function.names) != len(values):
        raise ValueError(f"the lambda takes {len(function.names)} arguments, not {len(values)}")
    bound = {**function.ctx.lambdas, **dict(zip(function.names, values, strict=True))}
    inner = Context(function.ctx.scope, function.ctx.loops, bound, ctx.where, ctx.text)
    return inner.eval(function.body)


def _filter(ctx: Context, items: list, function: Any) -> list:
    return [x for x in items if _apply(ctx, function, x) is True]


def _map(ctx: Context, items: list, function: Any) -> list:
    return [_apply(ctx, function, x) for x in items]


def _reduce(ctx: Context, items: list, initial: Any, function: Any) -> Any:
    value = initial
    for x in items:
        value = _apply(ctx, function, value, x)
    return value


def _to_object(ctx: Context, items: list, key: Any, value: Any = None) -> dict:
    return {_apply(ctx, key, x): (_apply(ctx, value, x) if value is not None else x) for x in items}


def _index_from_end(ctx: Context, items: list, index: Any) -> Any:
    index = _whole(index, "indexFromEnd")
    if not 1 <= index <= len(items):
        raise ValueError(f"{index} from the end is outside the array of {len(items)} elements")
    return items[-index]


def _try_index_from_end(ctx: Context, items: list, index: Any) -> Any:
    index = _whole(index, "tryIndexFromEnd")
    return items[-index] if 1 <= index <= len(items) else None


def _ipv4_network(text: str, function: str) -> ipaddress.IPv4Network:
    """parseCidr() and cidrHost() for IPv4 only: their IPv6 host offsets are not documented clearly enough."""
    network = ipaddress.ip_network(text, strict=False)
    if network.version != 4:
        raise ValueError(f"{function}() of an IPv6 network is not evaluated here")
    return network


def _parse_cidr(ctx: Context, text: str) -> dict:
    network = _ipv4_network(text, "parseCidr")
    return {"network": str(network.network_address), "netmask": str(network.netmask),
            "broadcast": str(network.broadcast_address), "firstUsable": str(network.network_address + 1),
            "lastUsable": str(network.broadcast_address - 1), "cidr": network.prefixlen}


def _cidr_subnet(ctx: Context, text: str, length: Any, index: Any) -> str:
    network = ipaddress.ip_network(text, strict=False)
    length, index = _whole(length, "cidrSubnet"), _whole(index, "cidrSubnet")
    if not network.prefixlen <= length <= network.max_prefixlen:
        raise ValueError(f"/{length} does not fit in {network}")
    size = 2 ** (network.max_prefixlen - length)
    if not 0 <= index < 2 ** (length - network.prefixlen):
        raise ValueError(f"{network} has no subnet /{length} number {index}")
    return f"{ipaddress.ip_address(int(network.network_address) + index * size)}/{length}"


def _cidr_host(ctx: Context, text: str, index: Any) -> str:
    network = _ipv4_network(text, "cidrHost")
    index = _whole(index, "cidrHost")
    if not 0 <= index < network.num_addresses - 2:
        raise ValueError(f"{network} has no usable host number {index}")
    return str(network.network_address + 1 + index)


def _map_values(ctx: Context, value: dict, function: Any) -> dict:
    return {k: _apply(ctx, function, v) for k, v in value.items()}


def _group_by(ctx: Context, items: list, function: Any) -> dict:
    groups: dict = {}
    for x in items:
        groups.setdefault(_apply(ctx, function, x), []).append(x)
    return groups


def _date_time_from_epoch(ctx: Context, seconds: Any) -> str:
    moment = datetime.datetime.fromtimestamp(_whole(seconds, "dateTimeFromEpoch"), datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _date_time_to_epoch(ctx: Context, text: str) -> int:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp())


def _flatten(ctx: Context, items: list) -> list:
    return [y for x in items for y in x]


def _last_index_of(ctx: Context, container: Any, item: Any) -> int:
    return _index_of(ctx, container, item, last=True)


def _replace(ctx: Context, text: str, old: str, new: str) -> str:
    return text.replace(old, new)


def _starts_with(ctx: Context, text: str, prefix: str) -> bool:
    return text.lower().startswith(prefix.lower())


def _ends_with(ctx: Context, text: str, suffix: str) -> bool:
    return text.lower().endswith(suffix.lower())


def _not(ctx: Context, value: Any) -> bool:
    return not _truth(ctx, value, "not")


def _add(ctx: Context, a: Any, b: Any) -> int:
    return _whole(a, "add") + _whole(b, "add")


def _sub(ctx: Context, a: Any, b: Any) -> int:
    return _whole(a, "sub") - _whole(b, "sub")


def _mul(ctx: Context, a: Any, b: Any) -> int:
    return _whole(a, "mul") * _whole(b, "mul")


def _tenant(ctx: Context) -> dict:
    return {"tenantId": TENANT_ID, "countryCode": "US", "displayName": "tenant"}


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "concat": _concat, "format": _format, "replace": _replace,
    "tolower": lambda ctx, s: s.lower(), "toupper": lambda ctx, s: s.upper(), "trim": lambda ctx, s: s.strip(),
    "substring": _substring, "split": _split, "join": _join, "string": lambda ctx, v: _to_string(v),
    "int": _int, "float": lambda ctx, v: float(v), "bool": _bool, "json": _json, "length": _length,
    "add": _add, "sub": _sub, "mul": _mul, "div": _div, "mod": _mod,
    "equals": _equals, "not": _not, "true": lambda ctx: True, "false": lambda ctx: False,
    "null": lambda ctx: None,
    "greater": lambda ctx, a, b: _compare(ctx, a, b) > 0, "greaterorequals": lambda ctx, a, b: _compare(ctx, a, b) >= 0,
    "less": lambda ctx, a, b: _compare(ctx, a, b) < 0, "lessorequals": lambda ctx, a, b: _compare(ctx, a, b) <= 0,
    "contains": _contains, "empty": _empty, "first": _first, "last": _last, "union": _union,
    "intersection": _intersection, "createarray": lambda ctx, *a: list(a),
    "createobject": lambda ctx, *a: {a[i]: a[i + 1] for i in range(0, len(a), 2)},
    "array": lambda ctx, v: v if isinstance(v, list) else [v], "range": _range, "take": _take, "skip": _skip,
    "indexof": _index_of, "lastindexof": _last_index_of, "startswith": _starts_with, "endswith": _ends_with,
    "padleft": _pad_left, "min": _min, "max": _max, "items": _items, "flatten": _flatten,
    "indexfromend": _index_from_end, "tryindexfromend": _try_index_from_end,
    "parsecidr": _parse_cidr, "cidrsubnet": _cidr_subnet, "cidrhost": _cidr_host,
    "mapvalues": _map_values, "groupby": _group_by,
    "datetimefromepoch": _date_time_from_epoch, "datetimetoepoch": _date_time_to_epoch,
    "objectkeys": lambda ctx, o: list(o), "shallowmerge": lambda ctx, objs: {k: v for o in objs for k, v in o.items()},
    "uniquestring": _unique_string, "guid": _guid,
    "base64": lambda ctx, s: base64.b64encode(s.encode("utf-8")).decode("ascii"),
    "base64tostring": _base64_to_string, "base64tojson": lambda ctx, s: json.loads(_base64_to_string(ctx, s)),
    "datauri": _data_uri, "datauritostring": _data_uri_to_string,
    "uri": _uri, "uricomponent": lambda ctx, s: urllib.parse.quote(s, safe=""),
    "uricomponenttostring": lambda ctx, s: urllib.parse.unquote(s),
    "resourceid": _resource_id, "subscriptionresourceid": _subscription_resource_id,
    "tenantresourceid": _tenant_resource_id, "extensionresourceid": _extension_resource_id,
    "resourcegroup": _resource_group, "subscription": _subscription, "tenant": _tenant,
    "environment": _environment,
    "filter": _filter, "map": _map, "reduce": _reduce, "toobject": _to_object,
    "sort": lambda ctx, items, f: _sorted(ctx, items, f),
}


def _sorted(ctx: Context, items: list, function: Any) -> list:
    out: list = []
    for x in items:
        at = next((i for i, y in enumerate(out) if _apply(ctx, function, x, y) is True), len(out))
        out.insert(at, x)
    return out


# -- templates: resources, loops, conditions, nested deployments --------------------------------------------

class TemplateNsg(NamedTuple):
    """An NSG resource as the template declares it, its rules (inline and child resources) evaluated."""

    name: str
    rules: list
    flush_connection: Any
    classic: bool
    where: str


class TemplateRules(NamedTuple):
    """Every NSG of a template, the problems found while evaluating it (each names its field), and where it
    deploys linked templates, which are not fetched."""

    nsgs: list[TemplateNsg]
    problems: list[DataplaneError]
    linked: list[str]


def template_nsgs(doc: dict, *, parameters: dict[str, Any] | None = None, file: str | None = None) -> TemplateRules:
    """The NSGs a deployment of the template creates, with the given parameter values."""
    given = {name: (lambda v=v: v) for name, v in (parameters or {}).items()}
    scope = Scope(doc, given, file, "")
    walker = _Walker(file)
    try:
        walker.template(doc, Context(scope, {}, {}, ""), "")
    except RecursionError:
        raise TemplateError("nests deployments or expressions too deeply to evaluate", file=file) from None
    return walker.finish()


def evaluate(value: Any, doc: dict | None = None, *, parameters: dict[str, Any] | None = None,
             file: str | None = None, where: str = "") -> Any:
    """A JSON value with its expressions evaluated in the scope of the template `doc`; deployment-time
    values stay `DeploymentTimeValue`s."""
    given = {name: (lambda v=v: v) for name, v in (parameters or {}).items()}
    return Context(Scope(doc or {}, given, file, ""), {}, {}, where).resolve(value)


class _Walker:
    def __init__(self, file: str | None):
        self.file = file
        self.nsgs: dict[str, TemplateNsg] = {}
        self.children: list[tuple[str, dict, str]] = []
        self.failed: set[str] = set()
        self.problems: list[DataplaneError] = []
        self.deployments = 0
        self.current = 0
        self.declared: dict[str, tuple[int, str]] = {}
        self.linked: list[str] = []

    def template(self, doc: dict, ctx: Context, prefix: str) -> None:
        self.in_deployment(doc.get("resources"), ctx, f"{prefix}resources")

    def in_deployment(self, resources: Any, ctx: Context, where: str) -> None:
        """Resources of one deployment: the template's, or one nested deployment's (each copy on its own)."""
        outer = self.current
        self.deployments += 1
        self.current = self.deployments
        try:
            self.resources(resources, ctx, where, None)
        finally:
            self.current = outer

    def resources(self, resources: Any, ctx: Context, where: str, parent: str | None) -> None:
        for key, res in _entries(resources, where):
            if isinstance(res, dict) and res.get("existing") is not True:
                try:
                    self.resource(res, ctx, key, parent)
                except DataplaneError as e:
                    self.problems.append(e)

    def resource(self, res: dict, ctx: Context, here: str, parent: str | None) -> None:
        """Only NSGs, their rules and nested deployments are evaluated: another resource's condition or loop
        does not matter, even when only a deployment knows it."""
        kind = str(self.value(ctx, res.get("type", ""), f"{here}.type")).lower()
        if kind not in (NSG_TYPE, CLASSIC_NSG_TYPE, RULE_TYPE, DEPLOYMENT_TYPE) \
                and not (parent is not None and kind == "securityrules"):
            return
        copy = res.get("copy")
        if isinstance(copy, dict):
            count = ctx.at(f"{here}.copy.count").resolve(copy.get("count"))
            self.known(count, f"{here}.copy.count")
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COPIES:
                raise TemplateError(f"copy count {_show(count)} is not a whole number from 0 to {MAX_COPIES}",
                                    file=self.file, field=f"{here}.copy.count")
            name = str(copy.get("name", "")).lower()
            for i in range(count):
                loops = {**ctx.loops, None: i, name: i}
                self.one(res, Context(ctx.scope, loops, ctx.lambdas, here), here, parent, kind)
        else:
            self.one(res, ctx, here, parent, kind)

    def one(self, res: dict, ctx: Context, here: str, parent: str | None, kind: str) -> None:
        if "condition" in res:
            condition = ctx.at(f"{here}.condition").resolve(res["condition"])
            self.known(condition, f"{here}.condition")
            if not _truth(ctx.at(f"{here}.condition"), condition, "condition"):
                return
        if kind in (NSG_TYPE, CLASSIC_NSG_TYPE):
            self.nsg(res, ctx, here, kind == CLASSIC_NSG_TYPE)
        elif kind == RULE_TYPE or (parent is not None and kind == "securityrules"):
            full = self.value(ctx, res.get("name"), f"{here}.name")
            owner, _, rule_name = str(full).rpartition("/")
            owner = owner or parent or ""
            try:
                props = self.properties(res, ctx, here)
            except DataplaneError as e:
                e.located(nsg=owner)
                e.rule = e.rule or rule_name
                raise
            self.children.append((owner, {"name": rule_name, "properties": props}, here))
        elif kind == DEPLOYMENT_TYPE:
            self.deployment(res, ctx, here)

    def nsg(self, res: dict, ctx: Context, here: str, classic: bool) -> None:
        name = self.value(ctx, res.get("name"), f"{here}.name")
        if not isinstance(name, str) or not name:
            raise TemplateError(f"an NSG needs a name: a non-empty string, got {_show(name)}", file=self.file,
                                field=f"{here}.name")
        earlier = self.declared.get(name.lower())
        if earlier is not None and earlier[0] == self.current:
            raise TemplateError(f"NSG {name!r} is declared again (first at {earlier[1]}): Azure refuses a resource "
                                "defined more than once in a template", file=self.file, nsg=name, field=f"{here}.name")
        self.declared[name.lower()] = (self.current, here)
        try:
            self.nsg_body(res, ctx, here, classic, name)
        except DataplaneError as e:
            self.failed.add(name.lower())
            e.located(nsg=name)
            raise
        self.resources(res.get("resources"), ctx, f"{here}.resources", name)

    def nsg_body(self, res: dict, ctx: Context, here: str, classic: bool, name: str) -> None:
        raw = res.get("properties")
        if is_expression(raw):
            props = self.value(ctx, raw, f"{here}.properties")
            if not isinstance(props, dict):
                raise TemplateError(f"properties is {_kind(props)}, not an object", file=self.file,
                                    field=f"{here}.properties")
            raw = props
        raw = raw if raw is not None else {}
        if not isinstance(raw, dict):
            raise TemplateError(f"properties is {_kind(raw)}, not an object", file=self.file,
                                field=f"{here}.properties")
        at = f"{here}.properties"
        copies = [c for c in raw.get("copy") or [] if isinstance(c, dict) and c.get("name") == "securityRules"] \
            if isinstance(raw.get("copy"), list) else []
        written = raw.get("securityRules")
        if copies:
            rules = ctx.at(f"{at}.copy").copy_property(copies[0])
        elif isinstance(written, list):
            rules = [self.resolved_rule(ctx, r, f"{at}.securityRules[{i}]", name) for i, r in enumerate(written)]
        else:
            rules = ctx.at(f"{at}.securityRules").resolve(written)
        rules = [] if rules is None else rules
        if not isinstance(rules, list):
            self.known(rules, f"{at}.securityRules")
            raise TemplateError(f"securityRules is {_kind(rules)}, not an array", file=self.file,
                                field=f"{at}.securityRules")
        rules = [self.rule(r, f"{at}.securityRules[{i}]", name) for i, r in enumerate(rules)]
        flush = self.value(ctx, raw.get("flushConnection", False), f"{at}.flushConnection")
        self.nsgs[name.lower()] = TemplateNsg(name, [r for r in rules if r is not None], flush, classic, here)

    def resolved_rule(self, ctx: Context, rule: Any, where: str, nsg: str) -> Any:
        """One inline rule; a rule that cannot be evaluated is reported and left out, so the others load."""
        try:
            return ctx.at(where).resolve(rule)
        except DataplaneError as e:
            name = rule.get("name") if isinstance(rule, dict) else None
            e.rule = e.rule or (name if isinstance(name, str) and not is_expression(name) else None)
            self.problems.append(e.located(nsg=nsg))
            return None

    def rule(self, rule: Any, where: str, nsg: str) -> Any:
        """A rule with a deployment-time value is reported and left out, so the NSG's other problems show too;
        a description is only shown, so one known only at deployment stays as written."""
        if rule is None:
            return None
        props = rule.get("properties") if isinstance(rule, dict) else None
        for holder in (rule, props):
            if isinstance(holder, dict) and isinstance(holder.get("description"), DeploymentTimeValue):
                holder["description"] = holder["description"].expression
        found = _deferred_in(rule, where)
        if found is not None:
            value, path = found
            error = value.error(path, self.file)
            error.nsg = nsg
            error.rule = rule.get("name") if isinstance(rule, dict) and isinstance(rule.get("name"), str) else None
            self.problems.append(error)
            return None
        return rule

    def properties(self, res: dict, ctx: Context, here: str) -> Any:
        props = ctx.at(f"{here}.properties").resolve(_without_description(res.get("properties") or {}))
        if isinstance(props, dict) and isinstance(res.get("properties"), dict) \
                and "description" in res["properties"]:
            props["description"] = _lenient(ctx.at(f"{here}.properties.description"),
                                            res["properties"]["description"])
        self.known(props, f"{here}.properties")
        return props

    def deployment(self, res: dict, ctx: Context, here: str) -> None:
        props = res.get("properties")
        if isinstance(props, dict) and "templateLink" in props:
            self.linked.append(here)
        if not isinstance(props, dict) or not isinstance(props.get("template"), dict):
            return
        template = props["template"]
        where = f"{here}.properties.template."
        options = props.get("expressionEvaluationOptions")
        scope_name = options.get("scope", "") if isinstance(options, dict) else ""
        if str(scope_name).lower() == "inner":
            passed = props.get("parameters")
            passed = ctx.at(f"{here}.properties.parameters").resolve(passed) if is_expression(passed) else passed
            given = {}
            for name, spec in _mapping(passed).items():
                at = ctx.at(f"{here}.properties.parameters.{name}.value")
                if isinstance(spec, dict) and "value" in spec:
                    given[name] = _memo(lambda at=at, v=spec["value"]: at.resolve(v))
                elif isinstance(spec, dict) and "reference" in spec:
                    given[name] = lambda at=at, n=name: DeploymentTimeValue(
                        f"[parameters('{n}')]", at.where, "a Key Vault secret reference")
            inner = Scope(template, given, self.file, where)
            self.template(template, Context(inner, {}, {}, where), where)
        else:
            self.in_deployment(template.get("resources"), ctx, f"{where}resources")

    def value(self, ctx: Context, raw: Any, where: str) -> Any:
        value = ctx.at(where).resolve(raw)
        self.known(value, where)
        return value

    def known(self, value: Any, where: str) -> None:
        found = _deferred_in(value, where)
        if found is not None:
            raise found[0].error(found[1], self.file)

    def finish(self) -> TemplateRules:
        for owner, rule, here in self.children:
            nsg = self.nsgs.get(owner.lower())
            if nsg is None and owner.lower() in self.failed:
                continue
            if nsg is None:
                self.problems.append(TemplateError(
                    f"security rule {rule['name']!r} belongs to NSG {owner!r}, which the template does not define",
                    file=self.file, field=here))
                continue
            same = [i for i, r in enumerate(nsg.rules) if isinstance(r, dict)
                    and str(r.get("name", "")).lower() == rule["name"].lower()]
            if same:
                nsg.rules[same[0]] = rule
            else:
                nsg.rules.append(rule)
        return TemplateRules(list(self.nsgs.values()), self.problems, self.linked)


def _entries(resources: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(resources, list):
        for i, res in enumerate(resources):
            yield f"{where}[{i}]", res
    elif isinstance(resources, dict):
        for name, res in resources.items():
            yield f"{where}.{name}", res


def _without_description(props: Any) -> Any:
    if isinstance(props, dict):
        return {k: v for k, v in props.items() if k != "description"}
    return props


def _lenient(ctx: Context, value: Any) -> Any:
    """A field the simulator only shows (a rule's description): as written when it cannot be computed."""
    try:
        result = ctx.resolve(value)
    except TemplateError:
        return value
    return value if _deferred_in(result, "") is not None else result


def _memo(compute: Callable[[], Any]) -> Callable[[], Any]:
    box: list = []

    def get() -> Any:
        if not box:
            box.append(compute())
        return box[0]
    return get


def _deferred_in(value: Any, where: str) -> tuple[DeploymentTimeValue, str] | None:
    """The first deployment-time value inside a computed value, with its path."""
    if isinstance(value, DeploymentTimeValue):
        return value, where
    if isinstance(value, dict):
        for key, item in value.items():
            found = _deferred_in(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _deferred_in(item, f"{where}[{i}]")
            if found:
                return found
    return None
