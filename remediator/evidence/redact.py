"""Secrets out of evidence: the redacted copy of a bundle, made before it leaves the process.

Where it sits: the evidence capture hands each bundle (Kubernetes objects as the API returns
them in JSON, a pod's last log lines, ``pg_stat_activity`` rows and locks, the alert's labels
and annotations) to ``Redactor.document``, and each log line to ``Redactor.text``, before the
bundle is size-capped and queued for the object store.

What is a secret, each a named row of a table below:

- a mapping key whose name holds one of ``SECRET_WORDS``: its value, whatever it is, unless
  the key is one of ``REFERENCES`` (a Kubernetes field that only names a secret) holding what
  that field holds;
- the ``value`` of a ``{"name": ..., "value": ...}`` entry (a container's ``env``, a probe's
  ``httpHeaders``) whose name holds one of ``SECRET_WORDS``; ``valueFrom`` is a reference;
- every value of a Kubernetes ``Secret``'s ``data`` and ``stringData`` (the keys are kept);
- in any string, what ``TEXT_RULES`` find, then what the operator's patterns find; a string
  that holds a JSON object or array is redacted as a document and written back compact.

Decisions a reviewer may look for:

- A mapping key or env name is compared NFKC-folded, casefolded, without format characters
  (zero-width spaces and joiners, direction marks) and without ``-``, ``.`` and ``_``: a
  fullwidth ``password``, ``pass\\u200bword`` and ``DB_PASSWORD`` all hold ``password``.
  Look-alike letters of other scripts (a Cyrillic ``a``, U+0430) are not folded, and keys in
  text (``password=``) are matched as ASCII: a program logs its keys as it spells them.
- ``None`` and ``""`` under a secret key are kept: an empty password hides nothing, and is
  often the finding.
- A value that is not JSON (bytes, a set, a datetime, any object) is written as ``str()``
  writes it, then redacted as text; a tuple is a list; a key that is not a string is
  ``str()``-ed. Keys are otherwise kept as they are: a reviewer needs the shape.
- A lone surrogate (from a JSON ``"\\ud800"`` escape) becomes U+FFFD, as Go's
  ``encoding/json`` and the rule matchers read it, so the copy always encodes as UTF-8.
- Nesting deeper than ``MAX_DEPTH`` containers is replaced by ``TRUNCATED`` (counted): no
  value can make the walk recurse without bound.
- All matching is RE2 on UTF-8, linear in the text: log lines and query texts are untrusted
  and can be megabytes. Long hex strings (UIDs, digests, pod-template-hashes) are not
  secrets here: too many false positives.
- A capitalised ``Bearer``, ``Basic`` or ``Token`` followed by a word is taken for an HTTP
  credential even in prose (``Token refresh failed`` loses ``refresh``): better a word too
  many than a token.
- Redacting a redacted copy changes nothing and counts nothing: a replaced span is
  ``REDACTED``, which no rule finds again.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import re2

from remediator.core.regex import Regex

REDACTED: Final = "[REDACTED]"
MAX_DEPTH: Final = 64
TRUNCATED: Final = f"[TRUNCATED: nested deeper than {MAX_DEPTH}]"

_MARKER: Final = REDACTED.encode()
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would also print each error to stderr
_OPTIONS.max_mem = 8 << 20  # as remediator.core.regex compiles: a full cache goes on, linear


@dataclass(frozen=True, slots=True)
class Redacted:
    value: Any
    """The redacted copy (JSON values only: dict, list, str, int, float, bool, None)."""
    count: int
    """How many values or substrings were replaced."""


# ---------------------------------------------------------------------------------------
# Keys and names

#: A key or env name holding one of these (normalized) names a secret.
SECRET_WORDS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "apikey",
    "privatekey",
    "credential",
    "cookie",
    "dsn",
    "accesskey",
    "sessionkey",
    "clientsecret",
)


@dataclass(frozen=True, slots=True)
class Reference:
    """A Kubernetes field whose name holds a secret word but whose value only names a secret:
    kept when it holds what the field holds (``str``, ``bool``, an object with only ``keys``,
    or a list of such objects), redacted like any secret key otherwise."""

    field: str
    holds: type
    keys: frozenset[str] = frozenset()

    def matches(self, value: Any) -> bool:
        if self.holds is dict:
            return self._object(value)
        if self.holds is list:
            return isinstance(value, list) and all(self._object(item) for item in value)
        return type(value) is self.holds

    def _object(self, value: Any) -> bool:
        return isinstance(value, Mapping) and all(key in self.keys for key in value)


def _keys(*names: str) -> frozenset[str]:
    return frozenset(names)


_NAME_REF = _keys("name", "namespace")

#: The Kubernetes fields a reviewer needs to read although their names say secret or token.
REFERENCES: Final = (
    Reference("secretKeyRef", dict, _keys("name", "key", "optional")),  # env[].valueFrom
    Reference("secretRef", dict, _keys("name", "namespace", "optional")),  # envFrom[], CSI
    Reference("secretName", str),  # volumes[].secret, ingress tls
    Reference("secretNamespace", str),  # azureFile persistent volumes
    Reference("secret", dict, _keys("secretName", "name", "items", "defaultMode", "optional")),
    Reference("imagePullSecrets", list, _keys("name")),
    Reference("secrets", list, _keys("name", "namespace", "kind", "apiVersion", "uid")),
    Reference("serviceAccountToken", dict, _keys("audience", "expirationSeconds", "path")),
    Reference("automountServiceAccountToken", bool),
    Reference("nodePublishSecretRef", dict, _NAME_REF),  # CSI persistent volumes
    Reference("nodeStageSecretRef", dict, _NAME_REF),
    Reference("nodeExpandSecretRef", dict, _NAME_REF),
    Reference("controllerPublishSecretRef", dict, _NAME_REF),
    Reference("controllerExpandSecretRef", dict, _NAME_REF),
)

_SEPARATORS = str.maketrans("", "", "-._")


def normalized(name: str) -> str:
    """``name`` as it is compared with ``SECRET_WORDS``: NFKC-folded, casefolded, without
    format characters and without ``-``, ``.`` and ``_``."""
    if not name.isascii():
        folded = unicodedata.normalize("NFKC", name)
        name = "".join(char for char in folded if unicodedata.category(char) != "Cf")
    return name.casefold().translate(_SEPARATORS)


_REFERENCE_BY_NAME: Final = {normalized(ref.field): ref for ref in REFERENCES}


def names_secret(name: str) -> bool:
    """Whether a key or an env name holds a secret word (references aside)."""
    folded = normalized(name)
    return any(word in folded for word in SECRET_WORDS)


def hides_value(key: str, value: Any) -> bool:
    """Whether the value under mapping key ``key`` is a secret."""
    if not names_secret(key):
        return False
    reference = _REFERENCE_BY_NAME.get(normalized(key))
    return reference is None or not reference.matches(value)


# ---------------------------------------------------------------------------------------
# Strings


@dataclass(frozen=True, slots=True)
class TextRule:
    """An RE2 pattern whose matches hold a secret: the first of ``secret`` (group names) that
    took part is replaced by ``REDACTED``; none given: the whole match. ``keeps(secret,
    context)``, with the text of group ``context``, can spare a match (a key that only names
    a secret)."""

    name: str
    pattern: str
    secret: tuple[str, ...] = ()
    keeps: Callable[[bytes, bytes], bool] | None = None
    context: str = ""


def _words(words: Sequence[str]) -> str:
    """``SECRET_WORDS`` as a regex over raw keys: a separator may stand between the parts."""
    spelled = (
        word.replace("key", "[-_.]?key").replace("clientsecret", "client[-_.]?secret")
        for word in words
    )
    return "(?i:" + "|".join(spelled) + ")"


_KEY = rf"[A-Za-z0-9_.-]*{_words(SECRET_WORDS)}[A-Za-z0-9_.-]*"
#: HTTP authentication schemes: kept before a credential, the reviewer learns its kind.
_SCHEMES = ("bearer", "basic", "token", "digest", "negotiate")
_SCHEME = rf"(?:(?i:{'|'.join(_SCHEMES)})[ \t]+)?"
_DQ = r'(?:[^"\\\n]|\\.)*'
_SQ = r"(?:[^'\\\n]|\\.|'')*"  # with SQL's doubled quote
#: A bare value ends where a word, a query parameter or a field does; it does not open with a
#: bracket (JSON-ish text goes on to the keys inside, and REDACTED is not found again).
_BARE = r"[^\s\"'&,;)}{\[][^\s\"'&,;)}]*"


def _key_value_keeps(value: bytes, key: bytes) -> bool:
    """A key that only names a secret (in text every value is a word, so only the fields
    that hold a name or a flag), or a scheme alone (before a REDACTED credential)."""
    if value.decode().lower() in _SCHEMES:
        return True
    ref = _REFERENCE_BY_NAME.get(normalized(key.decode()))
    return ref is not None and ref.holds in (str, bool)


#: What is a secret in a string, in the order applied (an earlier rule's REDACTED is not
#: found again by a later one).
TEXT_RULES: Final = (
    TextRule(
        # The whole block, first, so that no key=value rule takes only its first word; a
        # block cut off (the last lines of a log) is redacted to the end of the text.
        "pem private key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\z)",
    ),
    TextRule(
        "url userinfo password",
        r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/?#\"'<>]*:(?P<secret>[^\s/?#\"'<>]+)@",
        ("secret",),
    ),
    TextRule(
        # A header's value runs to the end of the line: cookies hold ';' and spaces.
        "http header",
        r"(?i:\b(?:proxy-authorization|authorization|set-cookie|cookie))[ \t]*:[ \t]*"
        rf"{_SCHEME}(?P<secret>[^\r\n\"']*[^\s\"'])",
        ("secret",),
    ),
    TextRule(
        # libpq's password=x and password='x y', query strings, env, YAML, JSON-ish, logfmt.
        "key=value",
        rf"(?P<key>{_KEY})(?:\\?[\"'][:=]|[ \t]*[:=])[ \t]*"
        rf'(?:"{_SCHEME}(?P<dq>{_DQ})"'
        rf"|'{_SCHEME}(?P<sq>{_SQ})'"
        rf'|\\"{_SCHEME}(?P<edq>(?:[^"\\\n]|\\[^"])*)\\"'
        rf"|{_SCHEME}(?P<bare>{_BARE}))",
        ("dq", "sq", "edq", "bare"),
        _key_value_keeps,
        "key",
    ),
    TextRule(
        "sql password literal",  # CREATE ROLE/ALTER ROLE ... PASSWORD 'x', in query texts
        r"(?i:\bpassword)\s+'(?P<secret>(?:[^']|'')*)'",
        ("secret",),
    ),
    TextRule(
        "http auth scheme",
        r"\b(?:Bearer|Basic|Token)[ \t]+(?P<secret>[A-Za-z0-9._~+/-]+=*)",
        ("secret",),
    ),
    TextRule("aws access key id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    TextRule("github token", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    TextRule("slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    TextRule("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
)


class _Compiled:
    """A ``TextRule`` compiled: ``apply`` replaces its secrets in UTF-8 text."""

    __slots__ = ("context", "groups", "keeps", "regex")

    def __init__(self, rule: TextRule) -> None:
        self.regex: Any = re2.compile(rule.pattern, _OPTIONS)
        index = self.regex.groupindex
        self.groups = tuple(index[name] for name in rule.secret) or (0,)
        self.context = index[rule.context] if rule.context else 0
        self.keeps = rule.keeps

    def apply(self, data: bytes) -> tuple[bytes, int]:
        pieces: list[bytes] = []
        done = 0
        for match in self.regex.finditer(data):
            start, end = next((s for s in map(match.span, self.groups) if s[0] != -1), (0, 0))
            if start == end or _within_marker(data, start, end):
                continue
            if self.keeps is not None:
                context_start, context_end = match.span(self.context)
                if self.keeps(data[start:end], data[context_start:context_end]):
                    continue
            pieces += (data[done:start], _MARKER)
            done = end
        if not pieces:
            return data, 0
        pieces.append(data[done:])
        return b"".join(pieces), len(pieces) // 2


def _within_marker(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` lies inside a ``REDACTED`` already there."""
    return data.find(_MARKER, max(0, end - len(_MARKER)), start + len(_MARKER)) != -1


def _scrubbed(value: str) -> str:
    """``value`` with each lone surrogate as U+FFFD."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _json_container(value: str) -> Any:
    """The object or array ``value`` holds, or ``None``."""
    stripped = value.strip()
    if not stripped or (stripped[0], stripped[-1]) not in (("{", "}"), ("[", "]")):
        return None
    try:
        parsed = json.loads(stripped, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict | list) else None


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# ---------------------------------------------------------------------------------------
# The walk


class Redactor:
    """Redacts evidence: ``document`` for a bundle, ``text`` for one string. Stateless once
    built, so one instance serves every bundle."""

    __slots__ = ("_rules",)

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        """``patterns``: extra RE2 regular expressions (configurable by operators); every
        match in any string is replaced by REDACTED. A pattern that does not compile raises
        ValueError naming it."""
        configured = []
        for number, pattern in enumerate(patterns, 1):
            try:
                Regex(pattern)
            except ValueError as exc:
                shown = json.dumps(pattern, ensure_ascii=False)
                raise ValueError(
                    f"redaction pattern {number} {shown} is not usable: {exc}"
                ) from None
            configured.append(TextRule(f"configured pattern {number}", pattern))
        self._rules = tuple(_Compiled(rule) for rule in (*TEXT_RULES, *configured))

    def document(self, value: Any) -> Redacted:
        """A deep copy of ``value`` with secrets replaced; never mutates the input."""
        walk = _Walk(self._rules)
        return Redacted(walk.value(value, 0), walk.count)

    def text(self, value: str) -> Redacted:
        """The same for one string (a log line)."""
        walk = _Walk(self._rules)
        return Redacted(walk.string(value, 0), walk.count)


class _Walk:
    """One redaction: the copy is built as the input is read, counting what is replaced.
    ``depth`` is how many containers hold the value at hand."""

    __slots__ = ("count", "rules")

    def __init__(self, rules: tuple[_Compiled, ...]) -> None:
        self.rules = rules
        self.count = 0

    def value(self, value: Any, depth: int, *, secret_object: bool = False) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.string(value, depth)
        if not isinstance(value, Mapping | list | tuple):
            return self.string(str(value), depth)
        if depth >= MAX_DEPTH:
            self.count += 1
            return TRUNCATED
        if isinstance(value, Mapping):
            return self.mapping(value, depth + 1, secret_object=secret_object)
        return [self.value(item, depth + 1) for item in value]

    def mapping(self, value: Mapping[Any, Any], depth: int, *, secret_object: bool) -> Any:
        kind = value.get("kind")
        secret_object = secret_object or kind == "Secret"
        env_name = value.get("name")
        secret_env = "value" in value and isinstance(env_name, str) and names_secret(env_name)
        copy: dict[str, Any] = {}
        for raw_key, item in value.items():
            key = _scrubbed(raw_key if isinstance(raw_key, str) else str(raw_key))
            if secret_object and key in ("data", "stringData"):
                copy[key] = self.secret_data(item)
            elif (secret_env and key == "value") or hides_value(key, item):
                copy[key] = self.hidden(item)
            elif kind == "SecretList" and key == "items" and isinstance(item, list | tuple):
                copy[key] = self.secret_list(item, depth)
            else:
                copy[key] = self.value(item, depth)
        return copy

    def secret_list(self, items: Sequence[Any], depth: int) -> Any:
        """A SecretList's items carry no ``kind``: each is a Secret all the same."""
        if depth >= MAX_DEPTH:
            self.count += 1
            return TRUNCATED
        return [self.value(item, depth + 1, secret_object=True) for item in items]

    def secret_data(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return self.hidden(data)
        return {
            _scrubbed(key if isinstance(key, str) else str(key)): self.hidden(item)
            for key, item in data.items()
        }

    def hidden(self, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value in ("", REDACTED)):
            return value
        self.count += 1
        return REDACTED

    def string(self, value: str, depth: int) -> str:
        value = _scrubbed(value)
        parsed = _json_container(value)
        if parsed is not None:
            before = self.count
            copy = self.value(parsed, depth)
            if self.count == before:
                return value  # nothing found: the text as it was, spacing and all
            return json.dumps(copy, ensure_ascii=False, separators=(",", ":"))
        return self.text(value)

    def text(self, value: str) -> str:
        data = value.encode()
        found = 0
        for rule in self.rules:
            data, count = rule.apply(data)
            found += count
        if not found:
            return value
        self.count += found
        return data.decode()
