"""Kafka's config providers (KIP-297, KIP-887): ``${file:/path/x.properties:key}`` and
``${env:NAME}`` in a setting's value, resolved when the broker starts.

Providers are declared as in Kafka: ``config.providers=file,env`` with
``config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider`` and
``config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider``.
Unlike Kafka, which leaves a variable it cannot resolve in place, a missing file, key or variable
stops the broker with a message naming it: a broker that advertised ``${file:...}`` literally would
send every client nowhere. The operator uses the file provider for per-broker values in one shared
pod template (each broker's external port, picked by its id).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from tidelog.broker.log.config import InvalidConfigError

PREFIX = "config.providers"
FILE_CLASS = "org.apache.kafka.common.config.provider.FileConfigProvider"
ENV_CLASS = "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
# Kafka's ConfigTransformer pattern: ${provider:[path:]key}
VARIABLE = re.compile(r"\$\{([^}]*?):(?:([^}]*?):)?([^}]*?)\}")

Provider = Callable[[str | None, str], str]


def is_provider_key(name: str) -> bool:
    return name == PREFIX or name.startswith(PREFIX + ".")


def _file_provider(read: Callable[[Path], dict[str, str]]) -> Provider:
    cache: dict[str, dict[str, str]] = {}

    def resolve(path: str | None, key: str) -> str:
        if not path:
            raise InvalidConfigError(f"${{file:...:{key}}}: the file provider needs a path")
        if path not in cache:
            cache[path] = read(Path(path))
        if key not in cache[path]:
            raise InvalidConfigError(f"config provider file: no key {key!r} in {path}")
        return cache[path][key]

    return resolve


def _env_provider(environ: Mapping[str, str]) -> Provider:
    def resolve(path: str | None, key: str) -> str:
        if key not in environ:
            raise InvalidConfigError(f"config provider env: no environment variable {key}")
        return environ[key]

    return resolve


def resolve(
    props: Mapping[str, str], environ: Mapping[str, str], read_properties: Callable[[Path], dict[str, str]]
) -> dict[str, str]:
    """``props`` with every ``${provider:[path:]key}`` replaced; the ``config.providers*`` keys dropped."""
    providers: dict[str, Provider] = {}
    for name in (n.strip() for n in props.get(PREFIX, "").split(",")):
        if not name:
            continue
        cls = props.get(f"{PREFIX}.{name}.class")
        if cls == FILE_CLASS:
            providers[name] = _file_provider(read_properties)
        elif cls == ENV_CLASS:
            providers[name] = _env_provider(environ)
        else:
            raise InvalidConfigError(
                f"{PREFIX}.{name}.class={cls}: supported are {FILE_CLASS} and {ENV_CLASS}"
                if cls
                else f"config provider {name}: {PREFIX}.{name}.class is not set"
            )
    out: dict[str, str] = {}
    for key, value in props.items():
        if is_provider_key(key):
            continue

        def substitute(match: re.Match[str], key: str = key) -> str:
            provider, path, name = match.group(1), match.group(2), match.group(3)
            if provider not in providers:
                raise InvalidConfigError(f"{key}: ${{{provider}:...}} but no config provider {provider!r} is declared")
            return providers[provider](path, name)

        out[key] = VARIABLE.sub(substitute, value) if "${" in value else value
    return out
