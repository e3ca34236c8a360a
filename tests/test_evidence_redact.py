"""Evidence redaction: every row of what is a secret, what must survive, and hostile input.

The table below is the contract: (name, input, expected copy, expected count). A text row's
name starts with the ``TEXT_RULES`` row it exercises, and a test checks that every rule has
one. Each row is also redacted a second time (nothing more changes, nothing is counted) and
its input is compared with a deep copy taken before (never mutated).
"""

from __future__ import annotations

import copy
import datetime
import json
import time
from typing import Any

import pytest

from remediator.evidence.redact import (
    MAX_DEPTH,
    REDACTED,
    REFERENCES,
    SECRET_WORDS,
    TEXT_RULES,
    TRUNCATED,
    Redacted,
    Redactor,
    Reference,
    hides_value,
    names_secret,
    normalized,
)

R = REDACTED
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2  # 40 characters after the prefix
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HecDmr\n"
    "-----END RSA PRIVATE KEY-----"
)
UID = "0b3f1c2e-8d4a-4f6e-9a7b-1c2d3e4f5a6b"
DIGEST = "registry.example.com/shop/api@sha256:" + "9f86d081884c7d65" * 4

# (name, input, expected copy, expected count)
CASES: list[tuple[str, Any, Any, int]] = [
    # --- mapping keys: the value goes, whatever it is
    ("key password", {"password": "hunter2"}, {"password": R}, 1),
    (
        "key suffix and case",
        {"DB_PASSWORD": "x", "pgPassword": "y"},
        {"DB_PASSWORD": R, "pgPassword": R},
        2,
    ),
    ("key passwd", {"passwd": "x"}, {"passwd": R}, 1),
    ("key client.secret", {"client.secret": "x"}, {"client.secret": R}, 1),
    ("key X-Api-Key", {"X-Api-Key": "x"}, {"X-Api-Key": R}, 1),
    ("key aws_secret_access_key", {"aws_secret_access_key": "x"}, {"aws_secret_access_key": R}, 1),
    ("key private-key", {"private-key": "x"}, {"private-key": R}, 1),
    ("key session_key", {"session_key": "x"}, {"session_key": R}, 1),
    ("key dsn", {"dsn": "host=db user=app"}, {"dsn": R}, 1),
    ("key Authorization", {"Authorization": "Bearer abc"}, {"Authorization": R}, 1),
    ("key number value", {"token": 123456}, {"token": R}, 1),
    ("key bool value", {"tokenRotated": True}, {"tokenRotated": R}, 1),
    ("key nested object value", {"credentials": {"user": "a", "pw": "b"}}, {"credentials": R}, 1),
    ("key list value", {"cookies": ["a=1", "b=2"]}, {"cookies": R}, 1),
    ("key None kept", {"password": None}, {"password": None}, 0),
    ("key empty string kept", {"password": ""}, {"password": ""}, 0),
    (
        "key fullwidth NFKC",
        {"\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44": "x"},
        {"\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44": R},
        1,
    ),
    ("key zero-width space", {"pass\u200bword": "x"}, {"pass\u200bword": R}, 1),
    ("key zero-width joiner", {"to\u200dken": "x"}, {"to\u200dken": R}, 1),
    ("key right-to-left mark", {"\u200fsecret": "x"}, {"\u200fsecret": R}, 1),
    (
        "key fullwidth uppercase",
        {"\uff30\uff21\uff33\uff33\uff37\uff2f\uff32\uff24": "x"},
        {"\uff30\uff21\uff33\uff33\uff37\uff2f\uff32\uff24": R},
        1,
    ),
    ("key not a string", {1: "a", None: "b"}, {"1": "a", "None": "b"}, 0),
    # --- Kubernetes fields that only name a secret
    (
        "ref secretKeyRef",
        {"secretKeyRef": {"name": "db", "key": "password"}},
        {"secretKeyRef": {"name": "db", "key": "password"}},
        0,
    ),
    (
        "ref secretRef",
        {"envFrom": [{"secretRef": {"name": "db"}}]},
        {"envFrom": [{"secretRef": {"name": "db"}}]},
        0,
    ),
    ("ref secretName", {"secretName": "tls-cert"}, {"secretName": "tls-cert"}, 0),
    (
        "ref secret volume",
        {"secret": {"secretName": "db", "defaultMode": 420}},
        {"secret": {"secretName": "db", "defaultMode": 420}},
        0,
    ),
    (
        "ref imagePullSecrets",
        {"imagePullSecrets": [{"name": "regcred"}]},
        {"imagePullSecrets": [{"name": "regcred"}]},
        0,
    ),
    (
        "ref serviceAccountToken projection",
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
        0,
    ),
    (
        "ref automountServiceAccountToken",
        {"automountServiceAccountToken": False},
        {"automountServiceAccountToken": False},
        0,
    ),
    ("ref secret holding a string is a secret", {"secret": "hunter2"}, {"secret": R}, 1),
    (
        "ref secretKeyRef with a value",
        {"secretKeyRef": {"name": "db", "value": "x"}},
        {"secretKeyRef": R},
        1,
    ),
    (
        "ref automount holding a string",
        {"automountServiceAccountToken": "x"},
        {"automountServiceAccountToken": R},
        1,
    ),
    # --- env entries and their kin
    (
        "env secret-ish name",
        {"env": [{"name": "DB_PASSWORD", "value": "hunter2"}]},
        {"env": [{"name": "DB_PASSWORD", "value": R}]},
        1,
    ),
    (
        "env plain name kept",
        {"env": [{"name": "LOG_LEVEL", "value": "debug"}]},
        {"env": [{"name": "LOG_LEVEL", "value": "debug"}]},
        0,
    ),
    (
        "env empty value kept",
        [{"name": "API_KEY", "value": ""}],
        [{"name": "API_KEY", "value": ""}],
        0,
    ),
    (
        "env valueFrom untouched",
        [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
        [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
        0,
    ),
    (
        "env zero-width name",
        [{"name": "GITHUB_\u200bTOKEN", "value": "x"}],
        [{"name": "GITHUB_\u200bTOKEN", "value": R}],
        1,
    ),
    (
        "probe httpHeaders",
        {"httpHeaders": [{"name": "Authorization", "value": "Bearer x"}]},
        {"httpHeaders": [{"name": "Authorization", "value": R}]},
        1,
    ),
    # --- Secret objects
    (
        "Secret data and stringData",
        {
            "kind": "Secret",
            "metadata": {"name": "db"},
            "type": "Opaque",
            "data": {"user": "YXBw", "url": "cG9zdGdyZXM="},
            "stringData": {"note": "plain"},
        },
        {
            "kind": "Secret",
            "metadata": {"name": "db"},
            "type": "Opaque",
            "data": {"user": R, "url": R},
            "stringData": {"note": R},
        },
        3,
    ),
    (
        "SecretList items carry no kind",
        {"kind": "SecretList", "items": [{"metadata": {"name": "a"}, "data": {"k": "dg=="}}]},
        {"kind": "SecretList", "items": [{"metadata": {"name": "a"}, "data": {"k": R}}]},
        1,
    ),
    (
        "Secret data not an object",
        {"kind": "Secret", "data": "garbage"},
        {"kind": "Secret", "data": R},
        1,
    ),
    (
        "ConfigMap data kept",
        {"kind": "ConfigMap", "data": {"k": "v"}},
        {"kind": "ConfigMap", "data": {"k": "v"}},
        0,
    ),
    # --- strings: URL userinfo
    (
        "url userinfo password: postgres",
        "postgres://app:hunter2@db:5432/shop",
        f"postgres://app:{R}@db:5432/shop",
        1,
    ),
    (
        "url userinfo password: empty user",
        "redis://:hunter2@cache:6379/0",
        f"redis://:{R}@cache:6379/0",
        1,
    ),
    (
        "url userinfo password: unencoded @",
        "mongodb+srv://app:p@ss@cluster/db",
        f"mongodb+srv://app:{R}@cluster/db",
        1,
    ),
    (
        "url userinfo password: in JSON-ish text",
        'url="https://u:pw@h/x"',
        f'url="https://u:{R}@h/x"',
        1,
    ),
    (
        "url without password kept",
        "https://app@db.example.com:5432/x",
        "https://app@db.example.com:5432/x",
        0,
    ),
    (
        "url port and @ in query kept",
        "http://host:8080/a?email=a@b.c",
        "http://host:8080/a?email=a@b.c",
        0,
    ),
    # --- strings: key=value
    (
        "key=value: libpq",
        "host=db port=5432 password=hunter2 user=app",
        f"host=db port=5432 password={R} user=app",
        1,
    ),
    ("key=value: libpq quoted", "password='x y' host=db", f"password='{R}' host=db", 1),
    ("key=value: libpq spaces", "password = hunter2 host=db", f"password = {R} host=db", 1),
    ("key=value: passwd", "passwd=abc", f"passwd={R}", 1),
    ("key=value: token", "token=abc", f"token={R}", 1),
    ("key=value: secret", "secret=abc", f"secret={R}", 1),
    (
        "key=value: api_key in a query",
        "GET /v1?api_key=abc&page=2",
        f"GET /v1?api_key={R}&page=2",
        1,
    ),
    ("key=value: colon, YAML", "password: hunter2", f"password: {R}", 1),
    (
        "key=value: JSON-ish",
        '{"level":"info","token":"abc" }x',
        f'{{"level":"info","token":"{R}" }}x',
        1,
    ),
    ("key=value: escaped JSON", '{\\"password\\":\\"abc\\"}', f'{{\\"password\\":\\"{R}\\"}}', 1),
    ("key=value: CLI flag", "--db-password=hunter2 --verbose", f"--db-password={R} --verbose", 1),
    (
        "key=value: env",
        "export AWS_SECRET_ACCESS_KEY=abc/def",
        f"export AWS_SECRET_ACCESS_KEY={R}",
        1,
    ),
    ("key=value: toString", "Config{password=abc, host=db}", f"Config{{password={R}, host=db}}", 1),
    (
        "key=value: quoted scheme kept",
        '"Authorization": "Bearer abc"',
        f'"Authorization": "Bearer {R}"',
        1,
    ),
    ("key=value: secretName in text kept", "secretName: db-creds", "secretName: db-creds", 0),
    ("key=value: empty kept", "password= ", "password= ", 0),
    (
        "key=value: no separator kept",
        "password authentication failed for user app",
        "password authentication failed for user app",
        0,
    ),
    # --- strings: HTTP
    ("http header: Authorization", "Authorization: Bearer abc", f"Authorization: Bearer {R}", 1),
    ("http header: Basic", "authorization: Basic dXNlcjpwYXNz", f"authorization: Basic {R}", 1),
    (
        "http header: Cookie to end of line",
        "Cookie: sid=abc; theme=dark\nnext",
        f"Cookie: {R}\nnext",
        1,
    ),
    ("http header: Set-Cookie", "Set-Cookie: sid=abc; Path=/", f"Set-Cookie: {R}", 1),
    ("http auth scheme: Bearer", "calling with Bearer abc", f"calling with Bearer {R}", 1),
    ("http auth scheme: Basic", "Basic dXNlcjpwYXNz==", f"Basic {R}", 1),
    ("http auth scheme: Token", "Token abc", f"Token {R}", 1),
    # --- strings: SQL
    (
        "sql password literal",
        "ALTER ROLE app WITH PASSWORD 'it''s'",
        f"ALTER ROLE app WITH PASSWORD '{R}'",
        1,
    ),
    # --- strings: token shapes
    ("aws access key id: AKIA", "key AKIAIOSFODNN7EXAMPLE used", f"key {R} used", 1),
    ("aws access key id: ASIA", "ASIAY34FZKBOKMUTVV7A", R, 1),
    ("aws access key id too short kept", "AKIAIOSFODNN7", "AKIAIOSFODNN7", 0),
    ("github token: ghp", f"push with {GITHUB}", f"push with {R}", 1),
    (
        "github token: gho ghu ghs ghr",
        " ".join(p + GITHUB[4:] for p in ("gho_", "ghu_", "ghs_", "ghr_")),
        " ".join([R] * 4),
        4,
    ),
    ("github token: fine-grained", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop", R, 1),
    ("github token too short kept", "ghp_short", "ghp_short", 0),
    ("slack token", " ".join(f"xox{c}-1234567890-abcdef" for c in "bpars"), " ".join([R] * 5), 5),
    ("jwt", f"id_token {JWT} end", f"id_token {R} end", 1),
    ("pem private key", f"key:\n{PEM}\nafter", f"key:\n{R}\nafter", 1),
    ("pem private key cut off", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", R, 1),
    (
        "pem certificate kept",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        0,
    ),
    # --- strings holding JSON
    (
        "JSON string redacted as a document",
        {"a": '{"env": [{"name": "TOKEN", "value": "abc"}], "n": 1}'},
        {"a": f'{{"env":[{{"name":"TOKEN","value":"{R}"}}],"n":1}}'},
        1,
    ),
    (
        "JSON string without secrets kept as written",
        {"a": '{ "b": [1, 2] }'},
        {"a": '{ "b": [1, 2] }'},
        0,
    ),
    (
        "JSON string non-ASCII kept",
        '["ünï", {"password": "x"}]',
        f'["ünï",{{"password":"{R}"}}]',
        1,
    ),
    ("broken JSON redacted as text", '{"password": "x", ', f'{{"password": "{R}", ', 1),
    # --- what must survive
    ("survives: uid", {"uid": UID}, {"uid": UID}, 0),
    (
        "survives: resourceVersion",
        {"resourceVersion": "184467440737"},
        {"resourceVersion": "184467440737"},
        0,
    ),
    ("survives: image digest", {"image": DIGEST}, {"image": DIGEST}, 0),
    (
        "survives: imageID",
        {"imageID": "docker-pullable://" + DIGEST},
        {"imageID": "docker-pullable://" + DIGEST},
        0,
    ),
    (
        "survives: pod-template-hash",
        {"labels": {"pod-template-hash": "5d8f7c9b6"}},
        {"labels": {"pod-template-hash": "5d8f7c9b6"}},
        0,
    ),
    ("survives: long hex", "trace " + "ab" * 32, "trace " + "ab" * 32, 0),
    (
        "survives: event message",
        'MountVolume.SetUp failed for volume "db-secret" : secret "db-secret" not found',
        'MountVolume.SetUp failed for volume "db-secret" : secret "db-secret" not found',
        0,
    ),
    ("survives: scalars", [1, 2.5, True, None], [1, 2.5, True, None], 0),
    ("survives: REDACTED itself", R, R, 0),
    # --- non-JSON values: str() then text
    ("non-JSON bytes", {"b": b"password=abc"}, {"b": f"b'password={R}'"}, 1),
    ("non-JSON set", {"s": {"Bearer abc"}}, {"s": f"{{'Bearer {R}'}}"}, 1),
    (
        "non-JSON datetime",
        {"t": datetime.datetime(2024, 1, 2, 3, 4, 5)},
        {"t": "2024-01-02 03:04:05"},
        0,
    ),
    ("non-JSON tuple is a list", {"t": (1, "x")}, {"t": [1, "x"]}, 0),
    # --- odd unicode
    (
        "lone surrogate in a value",
        {"msg": "a\ud800b password=x\udfff"},
        {"msg": f"a\ufffdb password={R}"},
        1,
    ),
    ("lone surrogate in a key", {"k\ud800": "v"}, {"k\ufffd": "v"}, 0),
    ("right-to-left text kept", {"msg": "\u202eabc\u202c"}, {"msg": "\u202eabc\u202c"}, 0),
]

IDS = [case[0] for case in CASES]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(("name", "value", "expected", "count"), CASES, ids=IDS)
def test_redacts_each_row_of_the_table(
    redactor: Redactor, name: str, value: Any, expected: Any, count: int
) -> None:
    assert redactor.document(value) == Redacted(expected, count)


@pytest.mark.parametrize(("name", "value", "expected", "count"), CASES, ids=IDS)
def test_never_mutates_the_input(
    redactor: Redactor, name: str, value: Any, expected: Any, count: int
) -> None:
    before = copy.deepcopy(value)
    redactor.document(value)
    assert value == before


@pytest.mark.parametrize(("name", "value", "expected", "count"), CASES, ids=IDS)
def test_redacting_twice_changes_and_counts_nothing_more(
    redactor: Redactor, name: str, value: Any, expected: Any, count: int
) -> None:
    once = redactor.document(value).value
    assert redactor.document(once) == Redacted(once, 0)


def test_every_text_rule_has_a_row() -> None:
    tried = {name.partition(":")[0] for name, value, _, _ in CASES if isinstance(value, str)}
    assert {rule.name for rule in TEXT_RULES} <= tried


def test_text_redacts_one_string_as_document_does(redactor: Redactor) -> None:
    line = "2024-05-01T10:00:00Z connecting to postgres://app:hunter2@db/shop"
    assert redactor.text(line) == Redacted(
        f"2024-05-01T10:00:00Z connecting to postgres://app:{R}@db/shop", 1
    )
    assert redactor.text('{"msg":"login","token":42}') == Redacted(
        f'{{"msg":"login","token":"{R}"}}', 1
    )


@pytest.mark.parametrize("word", SECRET_WORDS)
def test_each_secret_word_names_a_secret_in_any_spelling(word: str) -> None:
    spellings = (word, word.upper(), f"x_{word}_y", "-".join(word), f"{word[:2]}\u200b{word[2:]}")
    assert all(names_secret(spelling) for spelling in spellings)
    assert hides_value(f"my{word.title()}", "x")


def test_normalizes_keys_by_folding_and_dropping_separators() -> None:
    assert normalized("Client.Secret_Value-X") == "clientsecretvaluex"
    assert normalized("\uff30\uff41\uff53\uff53\u200d\u200e\ufeffword") == "password"
    assert normalized("ka\ud800") == "ka\ud800"  # a lone surrogate is no error
    assert not names_secret("p\u0430ssword")  # a Cyrillic a: look-alikes are not folded
    assert not names_secret("passphrase") and not names_secret("pod-template-hash")


def _sample(reference: Reference) -> Any:
    """A value such as Kubernetes puts under the field."""
    if reference.holds is str:
        return "db-creds"
    if reference.holds is bool:
        return True
    sample = {key: "x" for key in sorted(reference.keys)}
    return [sample] if reference.holds is list else sample


@pytest.mark.parametrize("reference", REFERENCES, ids=[ref.field for ref in REFERENCES])
def test_keeps_each_kubernetes_reference_holding_what_the_field_holds(
    redactor: Redactor, reference: Reference
) -> None:
    assert names_secret(reference.field), "a field that needs no allow-listing"
    value = {reference.field: _sample(reference)}
    assert redactor.document(value) == Redacted(value, 0)


@pytest.mark.parametrize("reference", REFERENCES, ids=[ref.field for ref in REFERENCES])
def test_redacts_a_kubernetes_reference_holding_something_else(
    redactor: Redactor, reference: Reference
) -> None:
    odd = {"value": "hunter2"} if reference.holds is str else "hunter2"
    assert redactor.document({reference.field: odd}) == Redacted({reference.field: R}, 1)


# ---------------------------------------------------------------------------------------
# Configured patterns

NOT_IN_RE2 = "which RE2 (Alertmanager's regex syntax) does not have"


def test_configured_patterns_redact_every_match() -> None:
    redactor = Redactor([r"acct-\d{6}", r"(?i)internal-[a-z]+"])
    text = "acct-123456 paid acct-654321 via INTERNAL-ledger, acct-12 kept"
    assert redactor.text(text) == Redacted(f"{R} paid {R} via {R}, acct-12 kept", 3)
    assert redactor.document({"note": text}).count == 3
    assert Redactor().text(text) == Redacted(text, 0)


def test_configured_patterns_run_after_the_built_in_rules_and_do_not_touch_redacted() -> None:
    redactor = Redactor([r"[A-Z]{4,}", r"x*"])  # one matches inside REDACTED, one matches ""
    once = redactor.text("password=abc SHOUT")
    assert once == Redacted(f"password={R} {R}", 2)
    assert redactor.text(once.value) == Redacted(once.value, 0)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(", 'its regular expression does not compile as RE2 (missing ) at "(")'),
        (
            r"(a)\1",
            f"it uses a backreference such as \\1, {NOT_IN_RE2}",
        ),
        (
            "(?=x)",
            f"it uses a lookahead or lookbehind, {NOT_IN_RE2}",
        ),
    ],
)
def test_refuses_a_pattern_that_does_not_compile_naming_it(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        Redactor([r"fine-\d+", pattern])
    shown = json.dumps(pattern)
    assert str(caught.value) == f"redaction pattern 2 {shown} is not usable: {reason}"


# ---------------------------------------------------------------------------------------
# Nesting, size and hostile input


def _nested(levels: int, core: Any = "core") -> Any:
    """``levels`` lists, one inside the other, around ``core``."""
    value = core
    for _ in range(levels):
        value = [value]
    return value


def test_keeps_nesting_up_to_the_limit_and_truncates_deeper(redactor: Redactor) -> None:
    assert redactor.document(_nested(MAX_DEPTH)) == Redacted(_nested(MAX_DEPTH), 0)
    # the 65th list, and all it holds, is the marker
    expected = _nested(MAX_DEPTH, TRUNCATED)
    assert redactor.document(_nested(MAX_DEPTH + 1)) == Redacted(expected, 1)
    assert redactor.document(_nested(MAX_DEPTH + 50)) == Redacted(expected, 1)
    assert TRUNCATED == "[TRUNCATED: nested deeper than 64]"


def test_survives_nesting_far_past_the_recursion_limit(redactor: Redactor) -> None:
    deep = redactor.document(_nested(100_000))
    assert deep.count == 1
    looped: dict[str, Any] = {"name": "loop"}
    looped["self"] = looped
    assert redactor.document(looped).count == 1
    brackets = "[" * 100_000 + "]" * 100_000  # too deep for json: redacted as text
    assert redactor.text(brackets) == Redacted(brackets, 0)


def test_a_json_string_counts_towards_the_nesting(redactor: Redactor) -> None:
    value: Any = json.dumps(_nested(10))  # ten levels inside a string inside 59 lists
    for _ in range(MAX_DEPTH - 5):
        value = [value]
    redacted = redactor.document(value)
    assert redacted.count == 1
    assert TRUNCATED in json.dumps(redacted.value)


def test_five_megabytes_of_near_matches_take_linear_time(redactor: Redactor) -> None:
    near = (
        "passwor=x Bearer\n AKIA12345 ghp_abc xoxq-1 eyJabc. postgres://host/db password "
        'pass: -----BEGIN KEY----- http://a:b/c token "secret" : x Basic, '
    )
    text = near * (5_000_000 // len(near)) + " password=hunter2 " + near
    started = time.monotonic()
    redacted = redactor.text(text)
    assert time.monotonic() - started < 10
    assert redacted.count == 1
    assert redacted.value == text.replace("password=hunter2", f"password={R}")


def test_many_real_matches_are_all_found(redactor: Redactor) -> None:
    text = "password=x " * 100_000
    assert redactor.text(text) == Redacted(f"password={R} " * 100_000, 100_000)


def test_huge_values_and_keys_are_redacted_whole(redactor: Redactor) -> None:
    huge = "x" * 1_000_000
    assert redactor.document({huge + "_token": huge}) == Redacted({huge + "_token": R}, 1)
    assert redactor.text(f"token={huge} ok") == Redacted(f"token={R} ok", 1)


def test_the_copy_always_encodes_as_utf8(redactor: Redactor) -> None:
    hostile = {"\udc80": ["\ud800", "\ud83d\ude00", "\u200b\u200f\ufeff", "\uff50"], "z": "\x00"}
    value = redactor.document(hostile).value
    json.dumps(value, ensure_ascii=False).encode("utf-8")
    assert value == {
        "\ufffd": ["\ufffd", "\U0001f600", "\u200b\u200f\ufeff", "\uff50"],
        "z": "\x00",
    }


# ---------------------------------------------------------------------------------------
# A realistic bundle


def _deployment() -> dict[str, Any]:
    container = {
        "name": "api",
        "image": DIGEST,
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "DATABASE_URL", "value": "postgres://shop:s3cr3t-url@db:5432/shop"},
            {"name": "STRIPE_API_KEY", "value": "sk_live_51Habc"},
            {"name": "SESSION_SECRET", "value": "keyboard-cat"},
            {
                "name": "PGPASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
            },
        ],
        "envFrom": [{"secretRef": {"name": "api-env"}}],
        "readinessProbe": {
            "httpGet": {
                "path": "/healthz",
                "port": 8080,
                "httpHeaders": [{"name": "X-Probe-Token", "value": "probe-t0ken"}],
            }
        },
        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
    }
    spec = {
        "serviceAccountName": "api",
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": "regcred"}],
        "containers": [container],
        "volumes": [
            {"name": "tls", "secret": {"secretName": "api-tls", "defaultMode": 420}},
            {
                "name": "vault-token",
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "audience": "vault",
                                "expirationSeconds": 3600,
                                "path": "token",
                            }
                        }
                    ]
                },
            },
        ],
    }
    applied = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"template": {"spec": {"containers": [{"name": "api", "env": container["env"]}]}}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api",
            "namespace": "shop",
            "uid": UID,
            "resourceVersion": "48213377",
            "generation": 7,
            "labels": {"app": "api", "pod-template-hash": "5d8f7c9b6"},
            "annotations": {
                "deployment.kubernetes.io/revision": "12",
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied) + "\n",
            },
        },
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "api"}}, "spec": spec}},
        "status": {"replicas": 3, "readyReplicas": 2},
    }


SECRETS = ("s3cr3t-url", "sk_live_51Habc", "keyboard-cat", "probe-t0ken", "hunter2", "abc.def.ghi")


def test_redacts_a_realistic_deployment_and_keeps_what_a_reviewer_needs(
    redactor: Redactor,
) -> None:
    deployment = _deployment()
    before = copy.deepcopy(deployment)
    redacted = redactor.document(deployment)
    assert deployment == before
    # env: a URL's password, two secret-ish names, a probe header; last-applied: the same three
    assert redacted.count == 4 + 3
    shown = json.dumps(redacted.value, ensure_ascii=False)
    assert not [secret for secret in SECRETS if secret in shown]

    container = redacted.value["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "DATABASE_URL", "value": f"postgres://shop:{R}@db:5432/shop"},
        {"name": "STRIPE_API_KEY", "value": R},
        {"name": "SESSION_SECRET", "value": R},
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]
    assert container["envFrom"] == [{"secretRef": {"name": "api-env"}}]
    assert container["readinessProbe"]["httpGet"]["httpHeaders"] == [
        {"name": "X-Probe-Token", "value": R}
    ]
    spec = redacted.value["spec"]["template"]["spec"]
    for kept in (
        "automountServiceAccountToken",
        "imagePullSecrets",
        "volumes",
        "serviceAccountName",
    ):
        assert spec[kept] == before["spec"]["template"]["spec"][kept]
    metadata = redacted.value["metadata"]
    assert (metadata["uid"], metadata["resourceVersion"], metadata["labels"]) == (
        UID,
        "48213377",
        {"app": "api", "pod-template-hash": "5d8f7c9b6"},
    )
    assert container["image"] == DIGEST

    applied = json.loads(
        metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert applied["spec"]["template"]["spec"]["containers"][0]["env"] == container["env"]
    assert redactor.document(redacted.value) == Redacted(redacted.value, 0)


def test_redacts_a_pod_log_line_with_a_dsn_and_a_bearer_token(redactor: Redactor) -> None:
    line = (
        '2024-05-01T10:00:00.123Z ERROR db: connect "host=db.shop.svc port=5432 user=shop '
        'password=hunter2 sslmode=require" failed; retrying upstream with '
        "Authorization: Bearer abc.def.ghi"
    )
    redacted = redactor.text(line)
    assert redacted == Redacted(
        '2024-05-01T10:00:00.123Z ERROR db: connect "host=db.shop.svc port=5432 user=shop '
        f'password={R} sslmode=require" failed; retrying upstream with '
        f"Authorization: Bearer {R}",
        2,
    )


def test_redacts_pg_stat_activity_rows(redactor: Redactor) -> None:
    rows = [
        {
            "pid": 4242,
            "usename": "app",
            "state": "active",
            "query_start": datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC),
            "query": "ALTER ROLE app PASSWORD 'hunter2'",
        },
        {"pid": 4243, "query": "SELECT dblink_connect('host=db password=hunter2')"},
    ]
    redacted = redactor.document(
        {"activity": rows, "locks": [{"pid": 4242, "mode": "AccessExclusiveLock"}]}
    )
    assert redacted.count == 2
    activity = redacted.value["activity"]
    assert activity[0]["query"] == f"ALTER ROLE app PASSWORD '{R}'"
    assert activity[0]["query_start"] == "2024-05-01 10:00:00+00:00"
    assert activity[1]["query"] == f"SELECT dblink_connect('host=db password={R}')"
    assert redacted.value["locks"] == [{"pid": 4242, "mode": "AccessExclusiveLock"}]


def test_redacts_an_alert_s_labels_and_annotations(redactor: Redactor) -> None:
    alert = {
        "labels": {"alertname": "PostgresDown", "namespace": "shop", "instance": "db:9187"},
        "annotations": {
            "summary": "db down",
            "runbook_url": "https://runbooks.example.com/db?token=abc",
            "dsn": "postgres://x",
        },
    }
    redacted = redactor.document(alert)
    assert redacted == Redacted(
        {
            "labels": alert["labels"],
            "annotations": {
                "summary": "db down",
                "runbook_url": f"https://runbooks.example.com/db?token={R}",
                "dsn": R,
            },
        },
        2,
    )
