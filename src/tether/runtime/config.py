"""Typed configs: plain dataclasses with a docstring under each field, loaded from YAML + CLI overrides.

A config class is a ``@dataclass`` whose every field carries a one-line docstring right below it; that
docstring is the ``--help`` text and the comment above the field in a saved ``config.yaml``::

    @dataclass
    class TrainConfig:
        learning_rate: float = 1e-5
        \"\"\"Peak learning rate of AdamW.\"\"\"

A field whose type is another dataclass is a section (``SFTConfig.train``); ``Section | None`` makes an
optional section (None until a file or override sets one of its fields). Supported leaf types: ``int``,
``float`` (ints accepted), ``bool``, ``str``, ``Literal[...]``, ``list[X]`` and ``X | None``.

``load_config(SFTConfig, "sft.yaml", ["--train.learning_rate", "1e-4"])`` reads the file, applies the
overrides on top (override wins), checks every value against its annotation once, builds the instance,
and calls each section's optional ``validate()`` (children first) for cross-field rules. Every problem is
a one-line :class:`~tether.errors.ConfigError` naming the file (or ``command line``) and the dotted field.
``save_config`` writes the resolved config (with the field docs as comments) that ``load_config`` reads
back to an equal instance.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import itertools
import os
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, Union

import yaml

from tether.errors import ConfigError

__all__ = [
    "HelpRow",
    "config_help",
    "field_docs",
    "load_config",
    "save_config",
    "to_dict",
]

T = TypeVar("T")

CLI = "command line"
"""Source label used in errors for values that came from overrides."""

_NONE_WORDS = frozenset({"null", "none", "~"})
_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})


class HelpRow(NamedTuple):
    """One settable field, as ``tether <command> --help`` lists it."""

    name: str
    """Dotted name, e.g. ``train.learning_rate`` (the flag is ``--train.learning_rate``)."""
    type: str
    """Readable type, e.g. ``float``, ``int | None``, ``'sigmoid' | 'ipo'``."""
    default: str
    """Default as typed on the command line (``null``, ``true``, ``[a, b]``), or ``(required)``."""
    doc: str
    """The field's docstring."""


# --------------------------------------------------------------------------------------------------
# Schema: what a dataclass declares


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for a dataclass, read from the string literal under each field.

    Uses ``inspect.getsource`` + ``ast`` (cached per class); inherited fields keep their base's doc.
    Fields without a docstring are absent; classes without retrievable source give ``{}``.
    """
    return dict(_field_docs(cls))


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        class_def = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef))
        body = class_def.body
        for stmt, following in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(following.value.value.split())
    return docs


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (handles ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields a config sets (``init=True``), by name."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None`` / ``Optional[X]``; ``(tp, False)`` otherwise."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
        raise TypeError(f"config fields support only `X | None` unions, got {tp}")
    return tp, False


def _section_class(tp: Any) -> type | None:
    """The dataclass that a section field holds (``Section`` or ``Section | None``), else None."""
    inner, _ = _unwrap_optional(tp)
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def _type_name(tp: Any) -> str:
    """Readable name of a field type: ``float``, ``list[str]``, ``int | None``, ``'a' | 'b'``."""
    inner, optional = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    if origin is Literal:
        name = " | ".join(repr(c) for c in typing.get_args(inner))
    elif origin is list:
        (item,) = typing.get_args(inner) or (Any,)
        name = f"list[{_type_name(item)}]"
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} | None" if optional else name


def _all_names(cls: type, prefix: str = "") -> list[str]:
    """Every dotted section and field name under ``cls``, for 'did you mean' suggestions."""
    names = []
    for name in _fields(cls):
        dotted = prefix + name
        names.append(dotted)
        section = _section_class(_hints(cls)[name])
        if section is not None:
            names.extend(_all_names(section, dotted + "."))
    return names


def _unknown_field(root: type, cls: type, dotted: str, source: str) -> ConfigError:
    """ConfigError for an unknown dotted name, suggesting the closest known one."""
    # never suggest the section that already holds the unknown name
    candidates = [name for name in _all_names(root) if not dotted.startswith(name + ".")]
    match = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6)
    hint = f"did you mean '{match[0]}'?" if match else f"known here: {', '.join(_fields(cls))}"
    return ConfigError(f"{source}: unknown field '{dotted}' ({hint})")


def _describe(value: Any) -> str:
    """A short one-line rendering of a bad value for an error message."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return text if isinstance(value, str) else f"{type(value).__name__} {text}"


def _type_error(source: str, dotted: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{source}: field '{dotted}' expects {_type_name(tp)}, got {_describe(value)}")


# --------------------------------------------------------------------------------------------------
# Checking values from YAML (already typed by the YAML parser)


def _check_value(value: Any, tp: Any, dotted: str, source: str) -> Any:
    """``value`` checked against the leaf type ``tp`` (ints widened to float); ConfigError if it fails."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise _type_error(source, dotted, tp, value)
    origin = typing.get_origin(inner)
    if origin is Literal:
        choices = typing.get_args(inner)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise ConfigError(
            f"{source}: field '{dotted}' must be one of {', '.join(map(repr, choices))}; got {_describe(value)}"
        )
    if origin is list:
        (item,) = typing.get_args(inner) or (Any,)
        if isinstance(value, list):
            return [_check_value(v, item, f"{dotted}[{i}]", source) for i, v in enumerate(value)]
    elif inner is bool or inner is str:
        if isinstance(value, inner):
            return value
    elif inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif inner is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif inner is Any:
        return value
    else:
        raise TypeError(f"config field '{dotted}' has an unsupported type {tp}")
    raise _type_error(source, dotted, tp, value)


def _check_tree(root: type, cls: type, raw: Mapping, prefix: str, source: str) -> dict[str, Any]:
    """A YAML mapping for section ``cls`` checked field by field into ``{name: value or subtree}``."""
    fields, hints, tree = _fields(cls), _hints(cls), {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise _unknown_field(root, cls, dotted, source)
        section = _section_class(hints[key])
        if section is None:
            tree[key] = _check_value(value, hints[key], dotted, source)
        elif value is None and _unwrap_optional(hints[key])[1]:
            tree[key] = None
        elif isinstance(value, Mapping):
            tree[key] = _check_tree(root, section, value, dotted + ".", source)
        else:
            raise ConfigError(
                f"{source}: '{dotted}' is a section ({section.__name__}) and needs a mapping of its fields, "
                f"got {_describe(value)}"
            )
    return tree


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (plain PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are resolved (and may be overridden) by SafeLoader
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: str | os.PathLike) -> Mapping:
    """The top-level mapping of a YAML file; ConfigError naming the file (and line) otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {' '.join(str(exc.problem).split())}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of fields, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------------
# Overrides from the command line (strings, parsed by the field's type)


def _split_overrides(tokens: Sequence[str]) -> list[tuple[str, str | None]]:
    """``["--a.b", "1", "--c=x", "--flag"]`` -> ``[("a.b", "1"), ("c", "x"), ("flag", None)]``."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"{CLI}: expected an option like --train.learning_rate, got {token!r}")
        name, eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if eq:
            pairs.append((name, value))
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            pairs.append((name, tokens[i + 1]))
            i += 2
        else:
            pairs.append((name, None))
            i += 1
    return pairs


def _parse_text(raw: str, tp: Any, dotted: str) -> Any:
    """A command-line string converted to the leaf type ``tp``; ConfigError if it does not parse."""
    inner, optional = _unwrap_optional(tp)
    text = raw.strip()
    if optional and text.lower() in _NONE_WORDS:
        return None
    origin = typing.get_origin(inner)
    if origin is Literal:
        for choice in typing.get_args(inner):
            if str(choice) == text or (isinstance(choice, bool) and text.lower() == str(choice).lower()):
                return choice
        return _check_value(text, tp, dotted, CLI)  # raises the 'must be one of' error
    if origin is list:
        (item,) = typing.get_args(inner) or (str,)
        body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        parts = [p.strip().strip("'\"") for p in body.split(",")] if body.strip() else []
        return [_parse_text(p, item, f"{dotted}[{i}]") for i, p in enumerate(parts)]
    if inner is str or inner is Any:
        return raw
    if inner is bool and text.lower() in _TRUE_WORDS | _FALSE_WORDS:
        return text.lower() in _TRUE_WORDS
    if inner in (int, float):
        try:
            return inner(text)
        except ValueError:
            pass
    elif inner is not bool:
        raise TypeError(f"config field '{dotted}' has an unsupported type {tp}")
    raise _type_error(CLI, dotted, tp, raw)


def _apply_override(root: type, tree: dict[str, Any], dotted: str, raw: str | None) -> None:
    """Set ``dotted`` (e.g. ``train.learning_rate``) in ``tree`` from its command-line text ``raw``."""
    cls, node = root, tree
    *sections, leaf = dotted.split(".")
    for depth, name in enumerate(sections):
        section = _section_class(_hints(cls)[name]) if name in _fields(cls) else None
        if section is None:
            prefix = ".".join(sections[: depth + 1])
            if name in _fields(cls):
                raise ConfigError(f"{CLI}: --{dotted}: '{prefix}' is a field, not a section")
            raise _unknown_field(root, cls, dotted, CLI)
        if not isinstance(node.get(name), dict):
            node[name] = {}
        cls, node = section, node[name]
    if leaf not in _fields(cls):
        raise _unknown_field(root, cls, dotted, CLI)
    tp = _hints(cls)[leaf]
    inner, optional = _unwrap_optional(tp)
    if _section_class(tp) is not None:
        if optional and raw is not None and raw.strip().lower() in _NONE_WORDS:
            node[leaf] = None
            return
        raise ConfigError(f"{CLI}: --{dotted} is a section; set its fields, e.g. --{dotted}.<field> VALUE")
    if raw is None:
        if inner is not bool:
            raise ConfigError(f"{CLI}: --{dotted} needs a value ({_type_name(tp)})")
        raw = "true"
    node[leaf] = _parse_text(raw, tp, dotted)


# --------------------------------------------------------------------------------------------------
# Building, validating, saving


def _build(cls: type[T], tree: Mapping[str, Any], prefix: str, source: str, defaults: Any = None) -> T:
    """Instantiate ``cls`` from a checked tree; absent fields take their defaults.

    ``defaults`` is the instance the enclosing config's default_factory makes for this section (e.g.
    ``PPOConfig.train`` = ``TrainConfig(learning_rate=1e-5, ...)``): fields the tree does not set keep
    *its* values, not the section class's, so setting one field never resets the others.
    """
    kwargs = {}
    for name, field in _fields(cls).items():
        section = _section_class(_hints(cls)[name])
        if name in tree:
            value = tree[name]
            if section is not None and value is not None:
                value = _build(section, value, f"{prefix}{name}.", source, _section_default(cls, name, defaults))
            kwargs[name] = value
        elif defaults is not None:
            kwargs[name] = getattr(defaults, name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            expected = _type_name(_hints(cls)[name])
            raise ConfigError(f"{source}: missing required field '{prefix}{name}' ({expected})")
    return cls(**kwargs)


def _section_default(cls: type, name: str, defaults: Any) -> Any:
    """The default instance of section field ``name`` of ``cls`` (from ``defaults`` or the field's factory)."""
    if defaults is not None:
        return getattr(defaults, name)
    field = _fields(cls)[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _validate(cfg: Any, source: str) -> None:
    """Call ``validate()`` on every section, children before parents; prefix errors with ``source``."""
    for name in _fields(type(cfg)):
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _validate(value, source)
    check = getattr(cfg, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError as exc:
            message = " ".join(str(exc).split())
            raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from None


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a ``cls`` from defaults, then the YAML file at ``path`` (if any), then CLI ``overrides``.

    ``overrides`` are command-line tokens: ``["--train.learning_rate", "1e-4", "--train.packing=true"]``;
    a bare ``--flag`` sets a bool field to true; list fields take ``a,b,c`` or ``[a, b, c]``; optional
    fields take ``null``/``none``. Every value is type-checked once, then ``validate()`` runs on each
    section. Raises ConfigError (one line, naming the file or ``command line`` and the field).
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    source = str(path) if path is not None else "config"
    tree = _check_tree(cls, cls, _read_yaml(path), "", source) if path is not None else {}
    for dotted, raw in _split_overrides(overrides):
        _apply_override(cls, tree, dotted, raw)
    cfg = _build(cls, tree, "", source)
    _validate(cfg, source)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config instance as nested plain dicts/lists (what ``save_config`` writes)."""
    out: dict[str, Any] = {}
    for name in _fields(type(cfg)):
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[name] = to_dict(value)
        else:
            out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _yaml_lines(cfg: Any, indent: int) -> list[str]:
    """YAML lines for one section: each field preceded by its docstring as a comment."""
    pad, docs, lines = "  " * indent, _field_docs(type(cfg)), []
    for name in _fields(type(cfg)):
        value = getattr(cfg, name)
        if name in docs:
            lines.append(f"{pad}# {docs[name]}")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            body = _yaml_lines(value, indent + 1)
            lines.extend([f"{pad}{name}:", *body] if body else [f"{pad}{name}: {{}}"])
        else:
            lines.append(f"{pad}{name}: {_yaml_inline(value)}")
    return lines


def _yaml_inline(value: Any) -> str:
    """``value`` as one line of YAML (flow style; strings with line breaks double-quoted with escapes)."""
    for style in (None, '"'):
        text = yaml.safe_dump(
            value, default_flow_style=True, default_style=style, allow_unicode=True, width=10**9
        )
        text = text.removesuffix("\n...\n").rstrip("\n")
        if "\n" not in text:
            break
    return text


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved ``cfg`` as commented YAML (atomically); ``load_config`` reads it back equal."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Resolved {type(cfg).__name__} written by tether; replay with this file as the config.\n"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(header + "\n".join(_yaml_lines(cfg, 0)) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def _default_text(value: Any) -> str:
    """A default as one would type it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_default_text(v) for v in value) + "]"
    return str(value)


def config_help(cls: type) -> list[HelpRow]:
    """One row per settable leaf field of ``cls`` (sections flattened to dotted names), in order."""
    return _help_rows(cls, None, "")


def _help_rows(cls: type, defaults: Any, prefix: str) -> list[HelpRow]:
    """Help rows for section ``cls``; ``defaults`` is its default instance when one exists."""
    rows, docs, hints = [], _field_docs(cls), _hints(cls)
    for name, field in _fields(cls).items():
        if defaults is not None:
            default = getattr(defaults, name)
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        section = _section_class(hints[name])
        if section is not None:
            section_defaults = default if dataclasses.is_dataclass(default) else None
            rows.extend(_help_rows(section, section_defaults, f"{prefix}{name}."))
            continue
        shown = "(required)" if default is dataclasses.MISSING else _default_text(default)
        rows.append(HelpRow(prefix + name, _type_name(hints[name]), shown, docs.get(name, "")))
    return rows
