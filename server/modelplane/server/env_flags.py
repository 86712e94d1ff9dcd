"""`MODELPLANE_<FLAG>` environment variables as command-line flags (how pods are configured).

`--max-model-len` reads `MODELPLANE_MAX_MODEL_LEN`; a switch reads true/false; a list reads
values separated by spaces or commas. The variables become ordinary flags in front of the
command line, so vLLM's parser checks them like any flag, and a flag given on the command
line wins over its variable.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

ENV_PREFIX = "MODELPLANE_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})

FlagKind = Literal["switch", "negatable", "list", "value"]


@dataclass(frozen=True)
class Flag:
    """One option of the parser: its long name, where it lands, and how a value is spelled."""

    option: str
    dest: str
    kind: FlagKind
    spellings: frozenset[str]  # every option string that sets `dest` (short, --no-...)


def flags_of(parser: argparse.ArgumentParser) -> list[Flag]:
    """The parser's long options.

    argparse has no public way to list a parser's options; `_actions` is read here and only
    here (it has been stable since Python 3.2).
    """
    flags = []
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        positive = [o for o in longs if not o.startswith("--no-")]
        if not positive or action.dest == "help":
            continue
        flags.append(
            Flag(
                option=positive[0],
                dest=action.dest,
                kind=flag_kind(action),
                spellings=frozenset(action.option_strings),
            )
        )
    return flags


def flag_kind(action: argparse.Action) -> FlagKind:
    if isinstance(action, argparse.BooleanOptionalAction):
        return "negatable"
    if action.nargs == 0:  # store_true / store_const
        return "switch"
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return "list"
    return "value"


def env_var_name(option: str) -> str:
    return ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


def dests_on_command_line(flags: Sequence[Flag], argv: Sequence[str]) -> set[str]:
    """The dests the command line sets (`--flag`, `--flag=v`, `--flag.key=v`, `-q`)."""
    by_spelling = {spelling: flag.dest for flag in flags for spelling in flag.spellings}
    dests: set[str] = set()
    for token in argv:
        if not token.startswith("-"):
            continue
        option = token.split("=", 1)[0].split(".", 1)[0]
        option = option.replace("_", "-") if option.startswith("--") else option
        dest = by_spelling.get(option)
        if dest is None and option.startswith("--no-"):
            dest = by_spelling.get("--" + option[5:])
        if dest is not None:
            dests.add(dest)
    return dests


def tokens_for(flag: Flag, value: str) -> list[str]:
    """One variable's value as command-line tokens for `flag`."""
    if flag.kind in ("switch", "negatable"):
        word = value.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise SystemExit(f"{env_var_name(flag.option)}={value!r}: expected true or false")
        if word in TRUE_WORDS:
            return [flag.option]
        return ["--no-" + flag.option[2:]] if flag.kind == "negatable" else []
    if flag.kind == "list":
        return [flag.option, *split_list(value)]
    return [f"{flag.option}={value}"]


def split_list(value: str) -> list[str]:
    """Several values in one variable: separated by spaces (shell quoting) or commas."""
    value = value.strip()
    if value.startswith(("{", "[")):
        return [value]
    items = shlex.split(value)
    if len(items) == 1 and "," in items[0]:
        items = items[0].split(",")
    return [item for item in items if item]


def env_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str]
) -> list[str]:
    """Tokens for the `MODELPLANE_*` variables whose flag the command line does not set."""
    flags = flags_of(parser)
    on_command_line = dests_on_command_line(flags, argv)
    tokens: list[str] = []
    for flag in flags:
        value = environ.get(env_var_name(flag.option))
        if value is not None and flag.dest not in on_command_line:
            tokens.extend(tokens_for(flag, value))
    return tokens
