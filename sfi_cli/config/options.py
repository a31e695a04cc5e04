"""Click parameters built from the schema: a flag's name, type, choices and help come from its ``Key``.

A keyed flag is not handed to its command as an argument: Click parses and type-checks it, and its
value waits under its dotted key (``flag_values``) until the command reads its settings, where it is
laid over the config file's value (``Config.with_flags``), so each key is named once per option.
"""

from __future__ import annotations

from typing import Any

import click

from sfi_cli.config.schema import SCHEMA
from sfi_cli.config.toml import unicode_text


class Prompt(click.ParamType):
    """Free text for an engine: bytes that are not UTF-8 (which Python hands over as lone surrogates)
    become U+FFFD, so the prompt can be stored in recipes, manifests and cache keys as it was used."""

    name = "text"

    def convert(self, value, param, ctx):
        return unicode_text(value) if isinstance(value, str) else value


PROMPT = Prompt()
FLAG_TYPES = {(int,): int, (int, float): float}
_FLAG_VALUES = "sfi.flag_values"  # where keyed flags wait in the Click context's ``meta``


def keyed_option(key_name: str, note: str = "", **extra):
    """The flag that sets config key ``key_name``: its name, type, choices and help come from the schema
    (``note`` adds what applies to this command only); ``Config.with_flags`` checks its value against the
    same key."""
    key = SCHEMA[key_name]
    kind = click.Choice(key.choices) if isinstance(key.choices, tuple) and key.choices else FLAG_TYPES.get(key.types)

    def remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta.setdefault(_FLAG_VALUES, {})[key_name] = value

    text = f"{key.help}; {note}" if note else key.help
    return click.option(key.flag, type=extra.pop("type", kind), default=None, expose_value=False, callback=remember,
                        help=f"{text} [config {key_name}].", **extra)


def flag_values(ctx: click.Context) -> dict[str, Any]:
    """The keyed flags given to the command being run, by dotted key."""
    return dict(ctx.meta.get(_FLAG_VALUES, {}))
