"""Settings: hermetic construction, strict booleans, bounds on every number, the rules between
fields, and flags beating ``REMEDIATOR_*`` variables beating the defaults. The command line's
sentences for the same mistakes are pinned in ``test_cli``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from remediator.config import PayloadLimits, Settings, Sourced, from_sources
from remediator.core.errors import ConfigError

INSECURE = {"REMEDIATOR_INSECURE_NO_AUTH": "1"}


def load(flags: Sourced | None = None, **environ: str) -> Settings:
    return from_sources(flags or {}, {**INSECURE, **environ})


def refusal(flags: Sourced | None = None, **environ: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(flags, **environ)
    return str(raised.value)


def test_constructing_settings_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_DRY_RUN", "1")
    monkeypatch.setenv("REMEDIATOR_LISTEN", "0.0.0.0:1")
    monkeypatch.setenv("REMEDIATOR_LEASE_SECONDS", "30s")
    settings = Settings(insecure_no_auth=True)
    assert (settings.dry_run, settings.listen_host, settings.lease_s) == (False, "127.0.0.1", 30)


@pytest.mark.parametrize("word", ["1", "true", "yes", "on", "TRUE", "On", " yes "])
def test_a_true_word_turns_a_switch_on(word: str) -> None:
    assert load(REMEDIATOR_DRY_RUN=word).dry_run is True


@pytest.mark.parametrize("word", ["0", "false", "no", "off", "FALSE", "Off"])
def test_a_false_word_turns_a_switch_off(word: str) -> None:
    assert load(REMEDIATOR_DRY_RUN=word).dry_run is False


@pytest.mark.parametrize("word", ["maybe", "2", "y", "t", "enabled", "none"])
def test_any_other_word_is_an_error_never_off(word: str) -> None:
    assert refusal(REMEDIATOR_DRY_RUN=word) == (
        f"REMEDIATOR_DRY_RUN {word!r} is not a boolean: use 1, true, yes, on or 0, false, no, off"
    )


def test_an_empty_variable_counts_as_unset() -> None:
    assert load(REMEDIATOR_DRY_RUN="", REMEDIATOR_TOKEN_FILE="").token_file is None


BOUNDS = {
    "port-above-65535": ("REMEDIATOR_LISTEN", "127.0.0.1:65536",
                         "REMEDIATOR_LISTEN port '65536' must be at most 65535"),
    "port-negative": ("REMEDIATOR_LISTEN", "127.0.0.1:-1",
                      "REMEDIATOR_LISTEN port '-1' must be at least 0"),
    "port-not-a-number": ("REMEDIATOR_LISTEN", "127.0.0.1:http",
                          "REMEDIATOR_LISTEN port 'http' is not a whole number"),
    "listen-without-port": ("REMEDIATOR_LISTEN", "localhost",
                            "REMEDIATOR_LISTEN 'localhost' is not HOST:PORT"),
    "lease-zero": ("REMEDIATOR_LEASE_SECONDS", "0",
                   "REMEDIATOR_LEASE_SECONDS '0' must be at least 1.0"),
    "lease-an-hour-and-more": ("REMEDIATOR_LEASE_SECONDS", "3601",
                               "REMEDIATOR_LEASE_SECONDS '3601' must be at most 3600.0"),
    "lease-with-a-unit": ("REMEDIATOR_LEASE_SECONDS", "30s",
                          "REMEDIATOR_LEASE_SECONDS '30s' is not a number"),
    "lease-infinite": ("REMEDIATOR_LEASE_SECONDS", "inf",
                       "REMEDIATOR_LEASE_SECONDS 'inf' is not a finite number"),
    "workers-negative": ("REMEDIATOR_VALIDATION_WORKERS", "-1",
                         "REMEDIATOR_VALIDATION_WORKERS '-1' must be at least 0"),
    "workers-65": ("REMEDIATOR_VALIDATION_WORKERS", "65",
                   "REMEDIATOR_VALIDATION_WORKERS '65' must be at most 64"),
    "workers-fractional": ("REMEDIATOR_VALIDATION_WORKERS", "1.5",
                           "REMEDIATOR_VALIDATION_WORKERS '1.5' is not a whole number"),
    "log-level": ("REMEDIATOR_LOG_LEVEL", "verbose", "REMEDIATOR_LOG_LEVEL 'verbose' is not"
                  " one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'"),
    "log-format": ("REMEDIATOR_LOG_FORMAT", "xml",
                   "REMEDIATOR_LOG_FORMAT 'xml' is not one of 'text', 'json', 'logfmt'"),
    "state-a-path": ("REMEDIATOR_STATE", "/tmp/x.db", "REMEDIATOR_STATE '/tmp/x.db' is not a"
                     " state URL: use sqlite:///relative/path, sqlite:////absolute/path or"
                     " postgresql://user@host:port/database"),
    "state-bad-port": ("REMEDIATOR_STATE", "postgresql://h:x/db",
                       "REMEDIATOR_STATE 'postgresql://h:x/db' has a port that is not a number"),
    "database": ("REMEDIATOR_DATABASES", "orders=postgres://h/db",
                 "REMEDIATOR_DATABASES 'orders=postgres://h/db' is not NAME=file:PATH or"
                 " NAME=env:VAR"),
    "misspelt-variable": ("REMEDIATOR_DRYRUN", "1",
                          "REMEDIATOR_DRYRUN is not a setting; did you mean REMEDIATOR_DRY_RUN?"),
}  # fmt: skip


@pytest.mark.parametrize(("variable", "value", "sentence"), BOUNDS.values(), ids=BOUNDS)
def test_a_value_out_of_bounds_is_one_sentence_naming_the_variable(
    variable: str, value: str, sentence: str
) -> None:
    assert refusal(**{variable: value}) == sentence


def test_a_flag_is_named_in_its_own_error() -> None:
    flags: Sourced = {"lease_s": ("--lease-seconds", "30s")}
    assert refusal(flags) == "--lease-seconds '30s' is not a number"


def test_every_number_has_a_lower_and_an_upper_bound() -> None:
    fields = {**Settings.model_fields, **_limit_fields()}
    numbers = {name: f for name, f in fields.items() if f.annotation in (int, float)}
    assert len(numbers) > 20
    assert [name for name, field in numbers.items() if not _bounded(field.metadata)] == []


def _limit_fields() -> dict[str, Any]:
    fields: dict[str, Any] = PayloadLimits.__pydantic_fields__  # type: ignore[attr-defined]
    return {f"payload_limits.{name}": field for name, field in fields.items()}


def _bounded(metadata: list[Any]) -> bool:
    kinds = {type(m).__name__ for m in metadata}
    return bool(kinds & {"Gt", "Ge"}) and bool(kinds & {"Lt", "Le"})


def test_every_setting_says_what_it_is_in_a_docstring() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not (f.description or "")]
    assert undocumented == []


def test_payload_limits_refuse_zero() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        PayloadLimits(max_alerts=0)


def test_a_flag_beats_its_variable_which_beats_the_default() -> None:
    flag: Sourced = {"lease_s": ("--lease-seconds", "5")}
    assert load(flag, REMEDIATOR_LEASE_SECONDS="10").lease_s == 5
    assert load(REMEDIATOR_LEASE_SECONDS="10").lease_s == 10
    assert load().lease_s == 30


def test_listen_sets_host_and_port_and_a_flag_beats_the_variable() -> None:
    flags: Sourced = {"listen_host": ("--listen", "::1"), "listen_port": ("--listen port", "1")}
    from_env = load(REMEDIATOR_LISTEN="[::]:9100")
    assert (from_env.listen_host, from_env.listen_port) == ("::", 9100)
    from_flag = load(flags, REMEDIATOR_LISTEN="[::]:9100")
    assert (from_flag.listen_host, from_flag.listen_port) == ("::1", 1)


def test_kubectls_kubeconfig_counts_unless_remediators_own_is_set() -> None:
    assert load(KUBECONFIG="/k/a").kubeconfig == Path("/k/a")
    both = load(KUBECONFIG="/k/a", REMEDIATOR_KUBECONFIG="/k/b")
    assert both.kubeconfig == Path("/k/b")


def test_databases_are_comma_separated_in_their_variable() -> None:
    settings = load(REMEDIATOR_DATABASES="orders=file:/run/dsn,billing=env:BILLING_DSN")
    assert settings.databases == {"orders": "file:/run/dsn", "billing": "env:BILLING_DSN"}


def test_a_variable_read_elsewhere_is_not_refused() -> None:
    assert load(REMEDIATOR_FAILPOINTS="x=error").dry_run is False


RULES_BETWEEN_FIELDS = {
    "no-token": ({}, "--token-file is required (or --insecure-no-auth for local use)"),
    "spool-beside-sqlite": (
        {"insecure_no_auth": True, "journal_spool": Path("spool")},
        "--journal-spool needs a postgresql:// --state",
    ),
    "key-without-cert": (
        {"insecure_no_auth": True, "tls_key": Path("k.pem")},
        "--tls-key and --tls-client-ca need --tls-cert",
    ),
    "client-ca-without-cert": (
        {"insecure_no_auth": True, "tls_client_ca": Path("ca.pem")},
        "--tls-key and --tls-client-ca need --tls-cert",
    ),
}


@pytest.mark.parametrize(("fields", "sentence"), RULES_BETWEEN_FIELDS.values(),
                         ids=RULES_BETWEEN_FIELDS)  # fmt: skip
def test_the_model_itself_refuses_a_combination(fields: dict[str, Any], sentence: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(**fields)
    assert raised.value.errors()[0]["msg"] == f"Value error, {sentence}"


def test_a_copy_is_validated_as_a_new_settings_is() -> None:
    settings = Settings(insecure_no_auth=True)
    assert settings.model_copy(update={"dry_run": "on"}).dry_run is True
    with pytest.raises(ValidationError, match="is not a boolean"):
        settings.model_copy(update={"dry_run": "maybe"})
    with pytest.raises(ValidationError, match="--token-file is required"):
        settings.model_copy(update={"insecure_no_auth": False})


def test_settings_are_frozen() -> None:
    settings = Settings(insecure_no_auth=True)
    with pytest.raises(ValidationError, match="frozen"):
        settings.dry_run = True  # type: ignore[misc]
