"""One exception hierarchy. Every message names where the bad value came from.

The parts of a location (file, NSG, rule, Azure code, field) are kept as attributes so the CLI
can print `FILE: NSG/rule: AzureErrorCode: field: what is wrong` and tests can check each part.
"""

from __future__ import annotations


class DataplaneError(Exception):
    """Base of every error the package raises on bad input."""

    def __init__(self, message: str, *, file: str | None = None, nsg: str | None = None,
                 rule: str | None = None, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.nsg = nsg
        self.rule = rule
        self.code = code
        self.field = field

    def located(self, *, file: str | None = None, nsg: str | None = None) -> "DataplaneError":
        """Fill in the outer context that the code raising the error did not know."""
        if file is not None and self.file is None:
            self.file = file
        if nsg is not None and self.nsg is None:
            self.nsg = nsg
        return self

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.nsg or self.rule:
            parts.append("/".join(p for p in (self.nsg, self.rule) if p))
        if self.code:
            parts.append(self.code)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class RuleError(DataplaneError):
    """A security rule or NSG that Azure would reject; `code` is Azure's error code."""


class ScenarioError(DataplaneError):
    """A scenario file that does not describe a valid topology; `field` is the path of the bad value."""


class CaptureError(DataplaneError):
    """A capture file that cannot be read; the message names the byte offset."""


class FlowSyntaxError(DataplaneError):
    """A flow written in the flow notation that cannot be parsed."""


class ValidationErrors(DataplaneError):
    """Several problems found at once, so `lint` can report them all."""

    def __init__(self, problems: list[DataplaneError]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems

    def located(self, *, file: str | None = None, nsg: str | None = None) -> "ValidationErrors":
        for problem in self.problems:
            problem.located(file=file, nsg=nsg)
        return self

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
