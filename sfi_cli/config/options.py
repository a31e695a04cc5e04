"""Click parameters built from the schema: a flag's name, type, choices and help come from its ``Key``."""

from __future__ import annotations

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


def keyed_option(key_name: str, help: str, **extra):
    """The flag that sets config key ``key_name``: its name, type and choices come from the schema, and
    ``Config.override`` checks the value against the same key."""
    key = SCHEMA[key_name]
    kind = click.Choice(key.choices) if isinstance(key.choices, tuple) and key.choices else FLAG_TYPES.get(key.types)
    return click.option(key.flag, type=extra.pop("type", kind), default=None, help=f"{help} [config {key_name}].", **extra)
