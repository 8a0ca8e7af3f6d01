"""The configuration of ``threadbox`` processes (API.md §9), read with pydantic-settings: every
setting from a ``THREADBOX_*`` environment variable, a command-line flag winning over it, each
value checked once, here. ``threadbox config`` prints the effective configuration, secrets
masked, with where each value came from."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from threadbox.application.settings import Settings
from threadbox.domain.errors import InvalidInput

from .http.auth import checked_token
from .http.browsers import cors_origins
from .http.timeouts import ServerLimits
from .wiring import DEFAULT_URL, masked_url

PREFIX = "THREADBOX_"
# The environment ``Config.load`` reads, instead of ``os.environ``, while it builds a Config.
_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar(
    "threadbox_config_env", default=None
)
LIMITS = ServerLimits()
LIBRARY = Settings()


class Config(BaseSettings):
    """Every setting of a threadbox process. The environment variable of a field is
    ``THREADBOX_`` + its name in upper case; flags are passed as keyword arguments."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, case_sensitive=False, extra="ignore", validate_default=True
    )

    url: str = Field(
        DEFAULT_URL, description="the store (memory://, sqlite:///PATH, postgresql://…)"
    )
    api_token: SecretStr | None = Field(
        None, description="bearer token every HTTP route but /healthz needs (unset: no auth)"
    )
    host: str = Field("127.0.0.1", description="the address serve binds")
    port: int = Field(8787, ge=1, le=65535, description="the port serve listens on")
    insecure: bool = Field(False, description="serve a non-loopback host without a token")
    max_message_bytes: int = Field(
        LIBRARY.max_message_bytes, gt=0, description="largest message, JSON-encoded bytes"
    )
    max_pending: int = Field(
        LIBRARY.max_pending, gt=0, description="most entries a thread's pending zone may hold"
    )
    log_format: Literal["text", "json"] = Field("text", description="serve's log lines")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="serve's log level"
    )
    header_timeout: float = Field(
        LIMITS.header_timeout, gt=0, description="seconds a client may take to send headers"
    )
    body_timeout: float = Field(
        LIMITS.body_timeout, gt=0, description="seconds a client may take to send a body"
    )
    keep_alive_timeout: float = Field(
        LIMITS.keep_alive_timeout, gt=0, description="seconds an idle keep-alive connection lives"
    )
    limit_concurrency: int = Field(
        LIMITS.limit_concurrency, gt=0, description="connections beyond which requests get 503"
    )
    workers: int = Field(
        1,
        gt=0,
        description="serve processes on the one port, each with its own views follower "
        "(PostgreSQL, or SQLite in WAL mode)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins browsers may call from (comma-separated)"
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _usable_token(cls, value: Any) -> Any:
        if isinstance(value, str):
            return checked_token(value)  # empty or padded tokens refuse to start, naming why
        return value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            try:  # each a scheme://host[:port] origin (ADR 0018)
                return cors_origins(value)
            except InvalidInput as bad:
                raise ValueError(bad.text) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then the environment ``load`` was given (else the process's); no dotenv or
        secret files."""
        given = _ENVIRONMENT.get()
        return init_settings, env_settings if given is None else MappingSource(settings_cls, given)

    @classmethod
    def load(cls, env: Mapping[str, str], **flags: Any) -> Config:
        """The configuration from ``env`` (a process environment) and the flags given (None:
        not given); a bad value is ``InvalidInput`` naming its variable, and nothing starts."""
        given = {name: value for name, value in flags.items() if value is not None}
        token = _ENVIRONMENT.set(env)
        try:
            return cls(**given)
        except ValidationError as invalid:
            raise _invalid(invalid, given) from None
        finally:
            _ENVIRONMENT.reset(token)

    def library_settings(self) -> Settings:
        """The mailbox's ``Settings`` with this configuration's limits."""
        return Settings(max_message_bytes=self.max_message_bytes, max_pending=self.max_pending)

    def token(self) -> str | None:
        """The API token, unmasked (for the server alone)."""
        return self.api_token.get_secret_value() if self.api_token is not None else None

    def effective(self, env: Mapping[str, str], flags: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Each setting: its name, environment variable, value (secrets masked) and where the
        value came from (``flag``, ``env`` or ``default``)."""
        rows = []
        upper = {k.upper() for k in env}
        for name in type(self).model_fields:
            variable = PREFIX + name.upper()
            value: Any = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif name == "url":
                value = masked_url(value)
            source = (
                "flag" if flags.get(name) is not None else "env" if variable in upper else "default"
            )
            rows.append({"name": name, "variable": variable, "value": value, "source": source})
        return rows


class MappingSource(EnvSettingsSource):
    """The ``THREADBOX_*`` variables of a given mapping instead of ``os.environ`` (the command
    line is built over an environment mapping, so that tests give it one of their own)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = {k.lower(): v for k, v in env.items()}
        super().__init__(settings_cls, case_sensitive=False, env_prefix=PREFIX)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._mapping


def _invalid(invalid: ValidationError, flags: Mapping[str, Any]) -> InvalidInput:
    first = invalid.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "configuration"
    where = f"--{name.replace('_', '-')}" if name in flags else PREFIX + name.upper()
    given = first.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    return InvalidInput(f"{where}: {first['msg']}{shown}", where)


def field_help(name: str) -> str:
    """A setting's description with its variable and default, for a flag's help."""
    info: FieldInfo = Config.model_fields[name]
    default = info.get_default(call_default_factory=True)
    shown = "" if default in (None, [], "") else f"; {default}"
    return f"{info.description} [{PREFIX}{name.upper()}{shown}]"
