"""One declaration per setting: :func:`setting` makes a dataclass field that carries everything the
command line, job files, the Python API, the JSON Schema and the reference need to know of it.

A declaration's rules (what a new one must keep):

- its type is the field's annotation: ``bool``, ``int``, ``float``, ``str`` (a ``Callable`` beside
  ``str`` is accepted from Python only), ``list[str]``, ``list[int]`` or ``tuple[int, ...]``, each
  ``| None`` when None is a value;
- its default is a value of that type (lists default to None: fields are shared);
- its ``check`` tests the value alone; a rule between settings is a
  :class:`~prunepilot.settings.rules.Rule` (``spec.RULES``), never a declaration's;
- its help is one line, lower case, without the default (the default is shown from the field).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from prunepilot.errors import UsageError
from prunepilot.settings.constraints import Constraint, is_int, is_number
from prunepilot.settings.surface import invalid_field

__all__ = ["KIND_TEXT", "Setting", "field_problems", "kind_allows", "setting", "settings_of"]

@dataclass(frozen=True)
class Setting:
    """One setting of a job, as declared.

    Attributes:
        name: The field's name: the Python API's keyword and ``config.json``'s key.
        kind: A key of :data:`KIND_TEXT` (the kinds a TOML job file holds), from the annotation.
        optional: Whether None is a value.
        default: The default value.
        help: One line: what it does.
        key: The job-file key (``space.ratio_max``; top-level keys have no dot); None: not in files.
        flag: The command-line flag (``--ratio-max``; ``--no-x`` for a switch on by default); None:
            no flag.
        check: What a value must be (None: any value of the kind).
        default_text: How the default is said where it is not a plain value ("sized to the Ray
            cluster"); None shows the value.
        note: More words for the reference, after the help.
        example: A value shown in the example job file when the default is None.
        api: Whether ``prunepilot.search`` takes it as a keyword.
        resumable: Whether it may change when a run is resumed.
        parse: Turns the flag's text into the value (None: by the kind).
        container: ``list`` or ``tuple``: what a list kind's values are made into (``list`` for
            other kinds, where it is not used).
        takes_callable: Whether a callable is a value too (from Python; a ``Callable`` in the
            annotation).
    """

    name: str
    kind: str
    optional: bool
    default: Any
    help: str
    key: str | None
    flag: str | None
    check: Constraint | None = None
    default_text: str | None = None
    note: str = ""
    example: Any = None
    api: bool = True
    resumable: bool = False
    parse: Callable[[str], Any] | None = None
    container: type = list
    takes_callable: bool = False

    @property
    def section(self) -> str:
        """The job file's section of the key ("" for a top-level key or none)."""
        return self.key.split(".")[0] if self.key and "." in self.key else ""

    @property
    def is_switch(self) -> bool:
        """A flag that takes no value (``--distill``, ``--no-screen``)."""
        return self.kind == "bool"

    def shown_default(self) -> str:
        """The default as help says it (``default 24``, ``default: the data's``)."""
        if self.default_text is not None:
            return f"default: {self.default_text}"
        return f"default {self.default}"


_UNSET = object()


def setting(
    default: Any,
    help: str,  # noqa: A002 - the word every declaration reads best with
    *,
    key: str | None,
    flag: str | None | object = _UNSET,
    check: Constraint | None = None,
    default_text: str | None = None,
    note: str = "",
    example: Any = None,
    api: bool = True,
    resumable: bool = False,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A dataclass field declaring one setting (see the module's rules).

    Args:
        default: The default value.
        help: One line: what the setting does (see :class:`Setting` for the other arguments).
        key: The job-file key, or None.
        flag: The flag; by default the name with dashes (``--no-<name>`` for a switch on by
            default); None for none.

    Returns:
        A ``dataclasses.field`` whose metadata :func:`settings_of` reads.
    """
    info = {"help": help, "key": key, "flag": flag, "check": check, "default_text": default_text,
            "note": note, "example": example, "api": api, "resumable": resumable, "parse": parse}  # fmt: skip
    return dataclasses.field(default=default, metadata={"setting": info})


@cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings a dataclass declares, the class's own first, then its bases'."""
    hints = typing.get_type_hints(cls)
    own = [f for f in dataclasses.fields(cls) if f.name in cls.__dict__.get("__annotations__", {})]
    ordered = own + [f for f in dataclasses.fields(cls) if f not in own]
    found = []
    for f in ordered:
        info = f.metadata.get("setting")
        if info is None:
            continue
        kind, optional, container, takes_callable = _kind(hints[f.name], f.name)
        flag = info["flag"]
        if flag is _UNSET:
            dashed = f.name.replace("_", "-")
            flag = f"--no-{dashed}" if kind == "bool" and f.default is True else f"--{dashed}"
        found.append(Setting(name=f.name, kind=kind, optional=optional, default=f.default,
                             container=container, takes_callable=takes_callable,
                             **{**info, "flag": flag}))  # fmt: skip
    return tuple(found)


#: What a value of each kind is, as messages say it; and what it may be, where no check says more.
KIND_TEXT = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
             "int_list": "a list of integers", "str_list": "a list of strings"}  # fmt: skip
_KIND_ALLOWS = {
    "str": lambda v: isinstance(v, (str, os.PathLike)),  # a path from Python
    "int": is_int,
    "float": is_number,
    "bool": lambda v: isinstance(v, bool),
    "int_list": lambda v: isinstance(v, (list, tuple)) and all(kind_allows("int", x) for x in v),
    "str_list": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
}


def kind_allows(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the setting kind ``kind`` (an int is a float; a bool is neither)."""
    return _KIND_ALLOWS[kind](value)


def field_problems(job: Any) -> list[UsageError]:
    """One error for each setting of ``job`` (a dataclass of settings) whose value its declaration
    refuses, in declaration order."""
    found = []
    for declared in settings_of(type(job)):
        value = getattr(job, declared.name)
        if (value is None and declared.optional) or (declared.takes_callable and callable(value)):
            continue
        if declared.check is not None:
            if not declared.check.allows(value):
                found.append(invalid_field(declared.name, declared.check.accepted, value))
        elif not kind_allows(declared.kind, value):
            found.append(invalid_field(declared.name, KIND_TEXT[declared.kind], value))
    return found


def _kind(hint: Any, name: str) -> tuple[str, bool, type, bool]:
    """(kind, optional, container, takes_callable) of an annotation.

    Raises:
        TypeError: for a type no job file can hold.
    """
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    is_callable = [a is Callable or typing.get_origin(a) is Callable for a in args]
    kinds = [a for a, c in zip(args, is_callable) if a is not type(None) and not c]
    if len(kinds) == 1:
        only, optional, takes_callable = kinds[0], type(None) in args, any(is_callable)
        if only in (bool, int, float, str):
            return only.__name__, optional, list, takes_callable
        origin, inner = typing.get_origin(only), typing.get_args(only)
        if origin in (list, tuple) and inner and inner[0] in (int, str):
            return f"{inner[0].__name__}_list", optional, origin, takes_callable
    raise TypeError(f"The setting {name!r} has the type {hint!r}, which no job file can hold.")
