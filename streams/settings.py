"""The one settings object of the service and the CLI, built once at start-up.

Precedence, lowest to highest: defaults, a TOML file (`--config` or
`CLVSTREAM_CONFIG_FILE`), `CLVSTREAM_*` environment variables (nested with `__`,
e.g. `CLVSTREAM_SCORING__CHURN_WINDOW_DAYS=60`), command-line options. Nested
values merge across sources. Nothing is read at import time.

>>> s = load_settings()
>>> s.scoring.churn_window_days, s.topic_prefix
(90, 'clv.')
>>> load_settings(scoring={"churn_window_days": 30}).scoring.churn_window_days
30
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from models.config import ScoringConfig
from models.errors import ConfigError

STOP_GRACE_SECONDS = 5.0
"""After a worker's stop timeout, the time its Faust services have left to stop."""


class KafkaSecurity(BaseModel):
    """Passed to the Kafka clients as they are (aiokafka / kafka-python names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _sasl_agrees(self) -> KafkaSecurity:
        """SASL is all there or not at all: every client (Faust's, aiokafka's,
        kafka-python's) must speak the same, and a missing part only failed later."""
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs a sasl_mechanism")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(
                f"sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL, "
                f"not {self.security_protocol}"
            )
        if sasl and (not self.sasl_plain_username or self.sasl_plain_password is None):
            raise ValueError(
                f"{self.sasl_mechanism} needs sasl_plain_username and sasl_plain_password"
            )
        return self

    def _protocol_and_sasl(self) -> dict[str, Any]:
        """The options both client libraries name alike."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_plain_username
            if self.sasl_plain_password is not None:
                options["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        return options

    def client_options(self) -> dict[str, Any]:
        """Keyword options for aiokafka clients (an SSL context is built when needed).

        >>> KafkaSecurity().client_options()
        {'security_protocol': 'PLAINTEXT'}
        """
        options = self._protocol_and_sasl()
        if "SSL" in self.security_protocol:
            import ssl

            self._check_ssl_files()
            try:
                context = ssl.create_default_context(cafile=self.ssl_cafile)
                if self.ssl_certfile:
                    context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            except ssl.SSLError as error:  # (a file that is not PEM, a key that does not fit)
                raise ConfigError(f"kafka SSL files: {error}") from error
            options["ssl_context"] = context
        return options

    def _check_ssl_files(self) -> None:
        """The certificate files named exist (`ssl` says only "No such file")."""
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"kafka.{name} {path}: no such file")

    def admin_options(self) -> dict[str, Any]:
        """The same security for kafka-python clients (the topic-creation admin client):
        its option names, certificates as files (it builds its own SSL context, verifying
        the broker's certificate and host name as aiokafka's default context does).

        >>> KafkaSecurity().admin_options()
        {'security_protocol': 'PLAINTEXT'}
        """
        options = self._protocol_and_sasl()
        if "SSL" in self.security_protocol:
            self._check_ssl_files()
            options["ssl_check_hostname"] = True
            options["ssl_cafile"] = self.ssl_cafile
            if self.ssl_certfile:
                options["ssl_certfile"] = self.ssl_certfile
                options["ssl_keyfile"] = self.ssl_keyfile
        return options


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLVSTREAM_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    scoring: ScoringConfig = ScoringConfig()
    kafka_url: str | None = Field(None, description="kafka://host:port[,host:port]; none: embedded")
    redis_url: SecretStr | None = Field(None, description="redis://...; none: embedded Valkey")
    topic_prefix: str = "clv."
    partitions: int = Field(4, ge=1, le=1024, description="partitions of every topic created")
    input_partitioner: Literal["murmur2", "crc32", "none"] = Field(
        "murmur2",
        description="the partitioner of the producers of the input topics: murmur2 (the "
        "Java client's, aiokafka's and `clvstream replay`'s default), crc32 (librdkafka's "
        "default, e.g. confluent-kafka). A worker dead-letters a record that is not on the "
        "partition it gives the record's key (`wrong_partition`): it would split its "
        "customer's state. none: no check (every producer must still agree)",
    )
    app_id: str = Field("clvstream", description="consumer group and Faust app id")
    redis_prefix: str = "clvstream:"
    kafka: KafkaSecurity = KafkaSecurity()
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    checkpoint_interval_seconds: float = Field(2.0, gt=0, le=3600)
    stop_timeout_seconds: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="on stop, how long the last steps (the final checkpoint, leaving the "
        "group, the producer's flush, the last Redis write) may wait for an unreachable "
        "broker or Redis before they are given up; a checkpoint given up costs nothing but "
        "a longer replay at the next start. A stop still hanging "
        f"{STOP_GRACE_SECONDS:.0f} s later (Faust's own clients) ends the process",
    )
    redis_outage_confirm_seconds: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="a checkpoint is confirmed once Redis has the scores it covers; after "
        "Redis has been behind this long, regardless (held back for a whole outage, a "
        "restart would replay all of it). A restore from such a checkpoint reads the "
        "scores Redis may lack back from the scores topic and writes them again",
    )
    redis_check_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="how often a worker checks that Redis still has the scores it "
        "acknowledged (a marker per partition): a Redis restarted without persistence, "
        "flushed or failed over to a replica behind gets them written again, read back "
        "from the scores topic",
    )
    max_batch: int = Field(1000, ge=1, description="records per poll of the input topics")
    fetch_max_wait_ms: int = Field(
        50,
        ge=1,
        le=60_000,
        description="how long a fetch may wait for records at the broker. On Tansu the "
        "Kafka client's default of 500 ms made input arrive in bursts twice a second "
        "and each changelog restore take about a second; Apache Kafka answers as soon "
        "as there is data either way",
    )
    input_in_flight_seconds: float = Field(
        0.05,
        ge=0,
        le=60,
        description="how long a record may take from its producer (its Kafka timestamp) "
        "to the broker: linger, network, clock difference. An input with nothing left "
        "to fetch is known complete up to this long before its last fetch; where event "
        "time runs faster than the wall clock (a replay), the other inputs' records "
        "wait for that rather than make its records late",
    )
    max_buffered_per_input: int = Field(
        5000,
        ge=1,
        description="records a partition's input may hold in memory waiting for the "
        "merge by event time; beyond it fetching that input pauses",
    )
    max_events_per_step: int = Field(
        250,
        ge=1,
        description="buffered records a partition processes before its outputs go out "
        "and the next poll: a backlog drained in one step held every score of it back "
        "from Redis until its end",
    )
    max_rescores_per_tick: int = Field(
        2000,
        ge=1,
        description="silent customers a partition re-scores per poll when its clock jumps "
        "without events (live idle clock); the others stay due for the next polls",
    )
    store: Literal["memory", "rocksdb"] = Field(
        "memory",
        description="where a worker keeps its partitions' customer states: memory, or "
        "RocksDB on local disk with `store_cache_customers` per partition in memory (for "
        "state larger than memory); the changelog topic backs both",
    )
    store_dir: Path | None = Field(
        None,
        description="RocksDB store: directory for the partitions' databases (none: a "
        "temporary directory per worker, deleted at stop)",
    )
    store_cache_customers: int = Field(
        50_000, ge=1, description="RocksDB store: states kept deserialized per partition"
    )
    live_clock_idle_seconds: float | None = Field(
        None,
        gt=0,
        description="live mode: after this many idle seconds a partition's clock follows "
        "the wall clock (None: never, as in replay)",
    )
    leader_idle_release_seconds: float | None = Field(
        30.0,
        gt=0,
        description="with several partitions: once partition 0 has had nothing to read for "
        "this many seconds, the others stop waiting for its value-model refits and go on "
        "(its refits published later are installed late); once another partition has had "
        "nothing to read for as long, it publishes its value statistics for every later "
        "refit of partition 0, which stops waiting for them; None: they wait",
    )

    @field_validator("kafka_url", "redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, url: Any) -> Any:
        """An empty URL (`CLVSTREAM_REDIS_URL=`) is no URL: `up` starts the embedded
        server, a worker says it needs one.

        >>> Settings(redis_url=" ").redis_url is None
        True
        """
        return None if isinstance(url, str) and not url.strip() else url

    @property
    def partitioner(self) -> Literal["murmur2", "crc32"]:
        """The partitioner of replays and offline partitioned runs: the producers' one,
        murmur2 when the input is not checked.

        >>> Settings(input_partitioner="none").partitioner
        'murmur2'
        """
        return "murmur2" if self.input_partitioner == "none" else self.input_partitioner

    def client_options(self) -> dict[str, Any]:
        """What every aiokafka client of the service is given: the brokers and the
        Kafka security.

        >>> Settings(kafka_url="kafka://a:1").client_options()["bootstrap_servers"]
        'a:1'
        """
        from streams.kafka_admin import bootstrap_servers  # (brings Kafka's admin client)

        brokers = bootstrap_servers(self.kafka_url or "")
        return {"bootstrap_servers": brokers, **self.kafka.client_options()}

    def consumer_options(self) -> dict[str, Any]:
        """What every aiokafka consumer of the service is given: `client_options` and
        the fetch wait.

        >>> Settings(kafka_url="kafka://a:1").consumer_options()["fetch_max_wait_ms"]
        50
        """
        return {**self.client_options(), "fetch_max_wait_ms": self.fetch_max_wait_ms}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def redacted_url(url: str) -> str:
    """A server URL fit to show: its password (in the address or as a `password`
    query parameter, as redis-py reads it) replaced by ***.

    >>> redacted_url("redis://:hunter2@cache:6379/0"), redacted_url("redis://h:1/0")
    ('redis://:***@cache:6379/0', 'redis://h:1/0')
    >>> redacted_url("unix:///run/redis.sock?db=0&password=hunter2")
    'unix:///run/redis.sock?db=0&password=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # (not a URL: nothing of it is shown)
        return "***"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = "&".join(
        "password=***" if pair.partition("=")[0] == "password" else pair
        for pair in parts.query.split("&")
    )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


SECRET_FIELDS = frozenset({"redis_url", "sasl_plain_password"})


def describe_invalid(error: ValidationError) -> str:
    """What is wrong, one line per problem, showing a bad value only when it is a plain
    one: never a secret's, nor an unknown key's (a misspelled password is a password).

    >>> try:
    ...     Settings(partitions=0, kafka={"password": "hunter2"})
    ... except ValidationError as error:
    ...     print(describe_invalid(error))
    invalid settings:
      partitions: Input should be greater than or equal to 1 (got 0)
      kafka.password: unknown setting (misspelled?)
    """
    lines = ["invalid settings:"]
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "settings"
        if problem["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown setting (misspelled?)")
            continue
        value = problem.get("input")
        secret = SECRET_FIELDS.intersection(map(str, problem["loc"]))
        plain = isinstance(value, str | int | float | bool) and not secret
        lines.append(f"  {where}: {problem['msg']}" + (f" (got {value!r})" if plain else ""))
    return "\n".join(lines)


NOT_SETTINGS = frozenset({"CONFIG_FILE", "BENCH_KEEP"})
"""`CLVSTREAM_*` variables of the project that are not settings."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The `CLVSTREAM_*` variables that name no setting (the environment source would
    ignore them, as if nothing had been set).

    >>> unknown_variables({"CLVSTREAM_PARTITION": "8", "CLVSTREAM_SCORING__X": "1", "HOME": "/"})
    ['CLVSTREAM_PARTITION']
    """
    prefix = "CLVSTREAM_"
    return sorted(
        name
        for name in environ
        if name.upper().startswith(prefix)
        and name.upper()[len(prefix) :] not in NOT_SETTINGS
        and name[len(prefix) :].split("__", 1)[0].lower() not in Settings.model_fields
    )


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings once: TOML file < environment < explicit overrides."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(unknown)} (misspelled? `clvstream settings` lists "
            "every setting; nested ones as CLVSTREAM_SECTION__KEY)"
        )
    config_file = config_file or os.environ.get("CLVSTREAM_CONFIG_FILE")
    settings_class = Settings
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=path)

        settings_class = FileSettings
    try:
        return settings_class(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_invalid(error)) from None  # (its text shows the inputs)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:  # (TOML is UTF-8)
        raise ConfigError(f"config file {config_file} is not valid TOML: {error}") from error
    except SettingsError as error:  # a section in one variable that is not a JSON object
        field = re.search(r'field "(\w+)"', str(error))
        name = f"CLVSTREAM_{field.group(1).upper()}" if field else "a CLVSTREAM_* variable"
        raise ConfigError(
            f"invalid settings: {name} must be a JSON object (or set its keys one by one, "
            f"e.g. {name}__KEY=value)"
        ) from error
