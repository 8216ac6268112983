from __future__ import annotations

import pytest
from pydantic import SecretStr

from models.errors import ConfigError
from streams.settings import load_settings


def test_precedence_file_then_environment_then_overrides(tmp_path, monkeypatch):
    config = tmp_path / "clv.toml"
    config.write_text(
        'topic_prefix = "shop."\n[scoring]\nchurn_window_days = 45\nhorizon_days = 200\n'
    )
    settings = load_settings(config)
    assert (settings.topic_prefix, settings.scoring.churn_window_days) == ("shop.", 45)
    monkeypatch.setenv("CLVSTREAM_SCORING__CHURN_WINDOW_DAYS", "60")
    settings = load_settings(config)
    assert settings.scoring.churn_window_days == 60 and settings.scoring.horizon_days == 200
    settings = load_settings(config, scoring={"churn_window_days": 7})
    assert settings.scoring.churn_window_days == 7 and settings.scoring.horizon_days == 200


def test_secrets_are_not_printed(monkeypatch):
    monkeypatch.setenv("CLVSTREAM_REDIS_URL", "redis://:hunter2@cache:6379/0")
    settings = load_settings()
    assert isinstance(settings.redis_url, SecretStr)
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_invalid_settings_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="churn_window_days"):
        load_settings(scoring={"churn_window_days": -1})
    with pytest.raises(ConfigError):
        load_settings(unknown_option=1)


def test_segment_and_needs_definitions_come_from_the_config_file(tmp_path):
    config = tmp_path / "clv.toml"
    config.write_text(
        "[scoring.segments]\nat_risk = 0.5\nlapsing = 0.7\n"
        'value_tiers = [["vip", 0.01], ["gold", 0.1]]\n'
        "[scoring.needs]\ntop_needs = 5\n"
    )
    scoring = load_settings(config).scoring
    assert (scoring.segments.at_risk, scoring.segments.lost) == (0.5, 0.93)
    assert scoring.segments.value_tiers == (("vip", 0.01), ("gold", 0.1))
    assert scoring.needs.top_needs == 5
    config.write_text("[scoring.segments]\nat_risk = 0.9\n")
    with pytest.raises(ConfigError, match="risk thresholds must increase"):
        load_settings(config)


def test_kafka_security_options_pass_through_to_the_clients(monkeypatch):
    monkeypatch.setenv("CLVSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CLVSTREAM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CLVSTREAM_KAFKA__SASL_PLAIN_USERNAME", "svc")
    monkeypatch.setenv("CLVSTREAM_KAFKA__SASL_PLAIN_PASSWORD", "s3cret")
    settings = load_settings()
    assert "s3cret" not in repr(settings)
    options = settings.kafka.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    assert options["sasl_plain_password"] == "s3cret"
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    with pytest.raises(ConfigError, match="security_protocol"):
        load_settings(kafka={"security_protocol": "TLS"})


def test_streaming_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLVSTREAM_PARTITIONS", "8")
    monkeypatch.setenv("CLVSTREAM_LIVE_CLOCK_IDLE_SECONDS", "30")
    settings = load_settings()
    assert (settings.partitions, settings.live_clock_idle_seconds) == (8, 30.0)
    assert settings.live_clock_idle_seconds is not None and load_settings().max_batch > 0


def test_kafka_security_reaches_the_topic_creation_admin_client(monkeypatch, tmp_path):
    """`clvstream worker` and `up` create the topics first (and check their partition
    counts) with kafka-python's admin client: it must get the same SASL / SSL settings
    as the aiokafka clients."""
    from streams import kafka_admin
    from streams.up import ensure_topics

    ca = tmp_path / "ca.pem"
    ca.write_text("")  # (named files must exist)
    settings = load_settings(
        kafka_url="kafka://broker-1:9093,broker-2:9093",
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "svc",
            "sasl_plain_password": "s3cret",
            "ssl_cafile": str(ca),
        },
    )
    options = settings.kafka.admin_options()
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
    }
    from kafka.admin import KafkaAdminClient

    assert set(options) <= set(KafkaAdminClient.DEFAULT_CONFIG)  # kafka-python's names
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("")
    key.write_text("")
    mtls = load_settings(
        kafka={"security_protocol": "SSL", "ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    ).kafka.admin_options()
    assert (mtls["ssl_certfile"], mtls["ssl_keyfile"], mtls["ssl_cafile"]) == (
        str(cert), str(key), None,
    )  # fmt: skip
    assert "sasl_mechanism" not in mtls
    assert load_settings().kafka.admin_options() == {"security_protocol": "PLAINTEXT"}

    clients: list[dict] = []

    class FakeAdmin:
        DEFAULT_CONFIG = KafkaAdminClient.DEFAULT_CONFIG

        def __init__(self, **config):
            clients.append(config)

        def create_topics(self, topics, timeout_ms):
            pass

        def describe_cluster(self):
            return {"brokers": [{"node_id": 1}]}

        def describe_topics(self, topics):  # as created: the settings' count each
            partitions = [{"partition": p} for p in range(settings.partitions)]
            return [{"error_code": 0, "name": t, "partitions": partitions} for t in topics]

        def close(self):
            pass

    class FakeSocket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(kafka_admin, "KafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(kafka_admin.socket, "create_connection", lambda *a, **k: FakeSocket())
    ensure_topics(settings)
    assert kafka_admin.kafka_ready(settings.kafka_url, security=options)
    assert len(clients) == 2  # creating the topics (and reading their partitions), readiness
    for config in clients:
        assert config["bootstrap_servers"] == "broker-1:9093,broker-2:9093"
        assert {key: config.get(key) for key in options} == options


def test_a_nested_section_that_is_not_json_in_the_environment_is_a_config_error(monkeypatch):
    """`CLVSTREAM_SCORING` / `CLVSTREAM_KAFKA` are read as JSON objects; text that is not
    JSON was a pydantic-settings SettingsError (a traceback), not a ConfigError (exit 2)."""
    monkeypatch.setenv("CLVSTREAM_SCORING", "churn_window_days=60")
    with pytest.raises(ConfigError, match="CLVSTREAM_SCORING"):
        load_settings()


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    """A TOML file saved in another encoding (here UTF-16, as some Windows editors do)
    was a UnicodeDecodeError from tomllib: a traceback instead of one line, exit 2."""
    config = tmp_path / "clv.toml"
    config.write_text('topic_prefix = "shop."\n', encoding="utf-16")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)


def test_a_misspelled_secret_is_named_in_the_error_but_its_value_is_not(tmp_path, monkeypatch):
    """An unknown key is rejected, and the error said `input_value='hunter2'`: a
    misspelled password variable or file key printed the password on the terminal (and
    into any log of the command). The error names the key; no value of a secret or of
    an unknown key is shown, a bad plain value still is."""
    monkeypatch.setenv("CLVSTREAM_KAFKA__SASL_PASSWORD", "hunter2")
    with pytest.raises(ConfigError, match=r"kafka\.sasl_password") as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)
    monkeypatch.delenv("CLVSTREAM_KAFKA__SASL_PASSWORD")
    config = tmp_path / "clv.toml"
    config.write_text('redis_password = "hunter2"\n[kafka]\nsasl_plain_password = "s3cret"\n')
    with pytest.raises(ConfigError, match="redis_password") as caught:
        load_settings(config)
    assert "hunter2" not in str(caught.value) and "s3cret" not in str(caught.value)
    with pytest.raises(ConfigError, match="'many'"):
        load_settings(partitions="many")


def test_kafka_security_that_cannot_work_is_rejected_when_the_settings_load():
    """SASL settings that disagree were accepted and failed later, differently in each
    client: SASL_SSL without a mechanism gave Faust's consumer plain SSL (no SASL) and
    aiokafka's other clients a ValueError at start; a mechanism with PLAINTEXT gave
    Faust SASL and the other clients none; a misspelled mechanism was a ValueError
    traceback from Faust's SASLMechanism. Now each is a ConfigError at load, and the
    password is never in it."""
    password = {"sasl_plain_username": "svc", "sasl_plain_password": "s3cret"}
    for kafka, reason in (
        ({"security_protocol": "SASL_SSL", **password}, "sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN", **password}, "security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM_SHA_256", **password},
         "sasl_mechanism"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
          "sasl_plain_password": "s3cret"}, "sasl_plain_username"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=reason) as caught:
            load_settings(kafka=kafka)
        assert "s3cret" not in str(caught.value)
    fine = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256", **password}
    assert load_settings(kafka=fine).kafka.client_options()["sasl_mechanism"] == "SCRAM-SHA-256"


def test_a_missing_certificate_file_is_a_config_error_naming_it(tmp_path):
    """A Kafka CA / certificate / key file that does not exist was an OSError without a
    file name from `ssl` (a traceback at worker start, after the settings had loaded);
    kafka-python's admin client, which creates the topics first, got the path as it was."""
    missing = tmp_path / "missing-ca.pem"
    security = load_settings(kafka={"security_protocol": "SSL", "ssl_cafile": str(missing)}).kafka
    with pytest.raises(ConfigError, match=r"kafka\.ssl_cafile .*missing-ca\.pem"):
        security.client_options()
    with pytest.raises(ConfigError, match=r"missing-ca\.pem"):
        security.admin_options()
    key = tmp_path / "missing-key.pem"
    cert = tmp_path / "cert.pem"
    cert.write_text("")
    security = load_settings(
        kafka={"security_protocol": "SSL", "ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    ).kafka
    with pytest.raises(ConfigError, match=r"kafka\.ssl_keyfile .*missing-key\.pem"):
        security.admin_options()


def test_a_misspelled_variable_is_rejected_not_ignored(monkeypatch):
    """`CLVSTREAM_PARTITION=8` (for PARTITIONS) or `CLVSTREAM_REDIS=...` was silently
    ignored: the service ran with 4 partitions, or the embedded Redis, as if nothing had
    been set, while a misspelled key in the TOML file or a nested variable was an error.
    The project's own variables that are not settings stay allowed."""
    monkeypatch.setenv("CLVSTREAM_CONFIG_FILE", "")
    monkeypatch.setenv("CLVSTREAM_BENCH_KEEP", "1")
    monkeypatch.setenv("CLVSTREAM_PARTITIONS", "8")
    assert load_settings().partitions == 8
    monkeypatch.setenv("CLVSTREAM_PARTITION", "8")
    with pytest.raises(ConfigError, match="CLVSTREAM_PARTITION ") as caught:
        load_settings()
    assert "CLVSTREAM_PARTITIONS" not in str(caught.value)
