"""Settings classes built from a mapping of environment variables (sample files, tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic_settings import BaseSettings

from chargelift_runtime.settings import env_name

S = TypeVar("S", bound=BaseSettings)


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Field name -> the environment variable that sets it (prefix or alias applied)."""
    return {field: env_name(cls, field) for field in cls.model_fields}


def from_env(cls: type[S], environ: Mapping[str, str]) -> S:
    """``cls`` as it would be built with ``environ`` as the whole environment."""
    upper = {k.upper(): v for k, v in environ.items()}
    values: dict[str, object] = {}
    for field, name in env_names(cls).items():
        if name.upper() in upper:
            alias = cls.model_fields[field].validation_alias
            values[alias if isinstance(alias, str) else field] = upper[name.upper()]
    return cls.model_validate(values)
