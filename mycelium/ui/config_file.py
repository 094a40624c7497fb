"""Where a node's options come from: defaults < config file < MYCELIUM_* environment < flags.

Theory of operation. The node parser (`add_node_options`) is the one schema. Every long option is
a key of the TOML file, written like the option without its leading dashes (`bootstrap-timeout =
5`), an environment variable (`MYCELIUM_BOOTSTRAP_TIMEOUT=5`) and a flag (`--bootstrap-timeout
5`). A value from the file or the environment goes through the option's own argparse converter and
choices, so it is checked exactly as the flag is; the file's TOML types must fit the option too
(a list for a repeatable option, true/false for a switch, a number for a numeric option).

`LayeredParser.parse_known_args` parses the flags alone (every layered default suppressed, so it
sees which were given), reads the file named by `--config` or `MYCELIUM_CONFIG`, and stacks the
layers; each value remembers where it came from, which `--print-config` shows. A higher layer
replaces a repeatable option, it does not extend it: `--bootstrap X` means exactly X, whatever the
file or the environment list. Everything here but the parser and the file read is pure.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from mycelium.errors import ConfigError
from mycelium.ui.options import ENV_PREFIX

CONFIG_ENV = "MYCELIUM_CONFIG"
NOT_LAYERED = frozenset({"help", "config", "print_config"})  # about the layers, not in them
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One key of the schema: a long option of the node parser."""

    key: str  # the long option without "--": the file's key
    dest: str
    kind: str  # "switch" (store_true), "list" (repeatable), "value"
    default: Any
    convert: Callable[[str], Any] | None
    choices: tuple[Any, ...] | None
    hidden: bool  # help=SUPPRESS: accepted, but printed only when set

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper().replace("-", "_")

    @property
    def toml_types(self) -> tuple[type, ...]:
        """What a file may write for a plain value: TOML integers for integer options, any TOML
        number for float options, strings for the rest."""
        returns: Any = self.convert
        if self.convert not in (None, int, float):
            try:
                returns = get_type_hints(self.convert).get("return")
            except Exception:  # noqa: BLE001 - a converter without usable hints takes strings
                returns = None
        if returns is int:
            return (int,)
        if returns is float:
            return (int, float)
        return (str,)


def option_schema(parser: argparse.ArgumentParser) -> tuple[Option, ...]:
    """The layered options of a parser, in the parser's order."""
    options = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public iterator
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long is None or action.dest in NOT_LAYERED:
            continue
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            kind = "switch"
        elif isinstance(action, argparse._AppendAction):  # noqa: SLF001
            kind = "list"
        elif type(action) is argparse._StoreAction:  # noqa: SLF001
            kind = "value"
        else:
            continue  # other kinds of action (none today) are left to argparse alone
        options.append(
            Option(
                key=long[2:],
                dest=action.dest,
                kind=kind,
                default=action.default,
                convert=action.type if callable(action.type) else None,
                choices=tuple(action.choices) if action.choices is not None else None,
                hidden=action.help == argparse.SUPPRESS,
            )
        )
    return tuple(options)


# --- one value from one layer -------------------------------------------------------------------


def convert_text(option: Option, text: str, label: str) -> Any:
    """Text through the option's converter and choices, as argparse would take it from a flag."""
    try:
        value = option.convert(text) if option.convert else text
    except argparse.ArgumentTypeError as error:
        raise ConfigError(f"{label} {error}") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{label}: {text!r} is not a valid value") from None
    if option.choices is not None and value not in option.choices:
        raise ConfigError(f"{label} must be one of {', '.join(map(str, option.choices))}; got {text!r}")
    return value


def from_toml(option: Option, value: Any, label: str) -> Any:
    """A value read from the file, checked against the option's TOML type and then its converter."""
    if option.kind == "switch":
        if not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {_shown(value)}")
        return value
    if option.kind == "list":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(
                f'{label} must be a list of strings, e.g. {option.key} = ["..."]; got {_shown(value)}'
            )
        return [convert_text(option, item, label) for item in value]
    expected = option.toml_types
    if isinstance(value, bool) or not isinstance(value, expected):
        wanted = {(int,): "an integer", (int, float): "a number"}.get(expected, "a string")
        raise ConfigError(f"{label} must be {wanted}, got {_shown(value)}")
    return convert_text(option, str(value), label)


def from_environment(option: Option, text: str) -> Any:
    label = option.env
    if option.kind == "switch":
        word = text.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ConfigError(f"{label} must be one of 1, true, yes, on, 0, false, no, off; got {text!r}")
        return word in TRUE_WORDS
    if option.kind == "list":
        return [convert_text(option, item, label) for item in text.split()]
    return convert_text(option, text, label)


def _shown(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    described = kind.get(type(value), "a table" if isinstance(value, dict) else type(value).__name__)
    return f"{_toml(value) if not isinstance(value, dict) else '{...}'} ({described})"


# --- the layers ---------------------------------------------------------------------------------


def read_config_file(path: Path, options: Sequence[Option]) -> dict[str, Any]:
    """dest -> value of every key in the file; ConfigError for a missing file, bad TOML, an unknown
    key (naming the nearest valid one) or a value the option would refuse."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    by_key = {option.key: option for option in options}
    values = {}
    for key, value in data.items():
        option = by_key.get(key)
        if option is None and isinstance(value, dict):
            raise ConfigError(f"{path}: unknown table [{key}]: the options go at the top of the file")
        if option is None:
            raise ConfigError(f"{path}: unknown key {key!r}{_nearest(key, options)}")
        values[option.dest] = from_toml(option, value, f"{path}: {key}")
    return values


def _nearest(key: str, options: Iterable[Option]) -> str:
    keys = [option.key for option in options if not option.hidden]
    if key.replace("_", "-") in keys:
        return f" (did you mean {key.replace('_', '-')!r}? keys are written with dashes, like the options)"
    close = difflib.get_close_matches(key, keys, n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (the keys are the long options of --help)"


def environment_values(environ: Mapping[str, str], options: Sequence[Option]) -> dict[str, Any]:
    return {o.dest: from_environment(o, environ[o.env]) for o in options if o.env in environ}


def default_value(option: Option) -> Any:
    if isinstance(option.default, str) and option.convert:
        return option.convert(option.default)  # argparse converts string defaults too
    return list(option.default) if isinstance(option.default, list) else option.default


@dataclass(frozen=True)
class EffectiveOptions:
    """Every layered option's value and where it came from ("default", "file", "env", "flag")."""

    options: tuple[Option, ...]
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    config_file: str | None

    def to_toml(self) -> str:
        """The options as a config file that --config reads back to the same values."""
        lines = [
            "# mycelium node: effective options (flags > MYCELIUM_* environment > config file > defaults)"
        ]
        if self.config_file:
            lines.append(f"# config file: {self.config_file}")
        for option in self.options:
            value, source = self.values[option.dest], self.sources[option.dest]
            if option.hidden and source == "default":
                continue
            origin = f"env {option.env}" if source == "env" else source
            if value is None:
                lines.append(f"# {option.key}: not set")
            else:
                lines.append(f"{option.key} = {_toml(value)}  # {origin}")
        return "\n".join(lines) + "\n"


def stack(
    options: Sequence[Option],
    file_values: Mapping[str, Any],
    env_values: Mapping[str, Any],
    flag_values: Mapping[str, Any],
    config_file: str | None = None,
) -> EffectiveOptions:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in options:
        values[option.dest], sources[option.dest] = default_value(option), "default"
        for source, layer in (("file", file_values), ("env", env_values), ("flag", flag_values)):
            if option.dest in layer:
                values[option.dest], sources[option.dest] = layer[option.dest], source
    return EffectiveOptions(tuple(options), values, sources, config_file)


def resolve(
    options: Sequence[Option], flags: Mapping[str, Any], environ: Mapping[str, str]
) -> EffectiveOptions:
    """Stack defaults, the config file (--config, else MYCELIUM_CONFIG), environment and flags."""
    path = flags.get("config") or environ.get(CONFIG_ENV) or None
    file_values = read_config_file(Path(path), options) if path else {}
    given = {o.dest: flags[o.dest] for o in options if o.dest in flags}
    return stack(options, file_values, environment_values(environ, options), given, path)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # repr of a float is a TOML float (5.0, 1e-05, inf, nan)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# --- the parser ---------------------------------------------------------------------------------


class LayeredParser(argparse.ArgumentParser):
    """An ArgumentParser that stacks its options over a config file and the environment when it has
    a --config option (the node parser); any other parser parses as usual. The namespace gets the
    effective values and `effective` (an EffectiveOptions, for --print-config)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not any(action.dest == "config" for action in self._actions):
            return super().parse_known_args(args, namespace)
        options = option_schema(self)
        layered = [a for a in self._actions if a.dest in {o.dest for o in options}]
        saved = [(action, action.default) for action in layered]
        for action in layered:
            action.default = argparse.SUPPRESS  # so that only the flags given show up
        try:
            parsed, extras = super().parse_known_args(args, namespace)
        finally:
            for action, default in saved:
                action.default = default
        effective = resolve(options, vars(parsed), os.environ)
        for dest, value in effective.values.items():
            setattr(parsed, dest, value)
        parsed.effective = effective
        return parsed, extras
