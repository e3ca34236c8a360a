"""The rules directory on disk → the bytes of each rule file, in bounded time and memory.

Where it sits: ``load`` lists the directory with ``rule_files``, reads each file with
``read_bounded``, and hands the bytes to ``read``. Every name ending in .yaml or .yml is a
rule file, and it must be a regular file (a symbolic link must reach one, as a ConfigMap
mount's do): a directory, a named pipe, a device, a dangling link or a link loop stops the
load rather than being skipped. A hidden name (``.x.yaml``, an editor's ``.x.yaml.swp``) is
not a rule file, and the listing is not recursive, so nothing under a subdirectory (a hidden
one such as a ConfigMap's ``..data`` included) is one either. A file is
opened without blocking and checked on the open descriptor (kind, then size) before
anything is read; then it must be UTF-8 holding only characters YAML allows.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from remediator.core.errors import RuleFileError
from remediator.ruleset.read import fail, quoted

RULE_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1 << 20
"""1 MiB per rule file: about 3 000 rules. The example rules' two files hold 7 KiB; a larger
rule set is split over files, which load in name order."""

#: What YAML forbids in a stream (YAML 1.1 "printable"): C0 controls but tab, LF and CR,
#: DEL, C1 controls but NEL, surrogates, U+FFFE and U+FFFF.
_NOT_YAML_TEXT = re.compile(r"[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_YAML_ASCII = bytes([9, 10, 13, *range(0x20, 0x7F)])
"""The ASCII bytes YAML allows: what is left once they are deleted is not YAML text."""
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def is_rule_file(name: str) -> bool:
    """Whether a name in the rules directory names a rule file. Hidden names are not: an
    editor's lock (``.#10-platform.yaml``, a dangling link) or swap file must not stop a
    service whose rules someone is editing, nor a ConfigMap's ``..data`` be read as one."""
    return name.endswith(RULE_SUFFIXES) and not name.startswith(".")


def rule_files(directory: Path) -> list[Path]:
    """The rule files directly in ``directory``, in name order (the order they load in)."""
    where = f"rules directory {directory}"
    if not directory.exists():
        raise fail(where, "", "does not exist")
    if not directory.is_dir():
        raise fail(where, "", "is not a directory")
    # Not only regular files: read_bounded refuses the others, saying what they are.
    files = sorted(p for p in directory.iterdir() if is_rule_file(p.name))
    if not files:
        raise fail(where, "", "holds no rule files (*.yaml or *.yml)")
    return files


def _file_kind(mode: int) -> str | None:
    """What a file that is not a regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in _FILE_KINDS if test(mode)), "not a regular file")


def _open_error(path: Path, exc: OSError) -> RuleFileError:
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        target = quoted(os.readlink(path))
        return fail(path.name, "", f"is a symbolic link to {target}, which does not exist")
    if exc.errno == errno.ELOOP:
        return fail(path.name, "", "is a symbolic link in a loop: it never reaches a file")
    return fail(path.name, "", f"cannot be read ({exc.strerror or exc})")


def _read_up_to(fd: int, size: int) -> bytes:
    """At most ``size`` bytes: a file may grow between the size check and the read."""
    chunks: list[bytes] = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (symbolic links followed). Opened without
    blocking (a named pipe must not hang the load), and checked on the open file, so nothing
    is read of a file that is not one or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        info = os.fstat(fd)
        kind = _file_kind(info.st_mode)
        if kind is not None:
            raise fail(path.name, "", f"is {kind}, not a rule file")
        data = _read_up_to(fd, limit + 1) if info.st_size <= limit else b""
    finally:
        os.close(fd)
    if info.st_size > limit or len(data) > limit:
        size = max(info.st_size, len(data))
        raise fail(
            path.name,
            "",
            f"is {size} bytes; a rule file may be at most {limit} bytes ({limit / 2**20:g} MiB)",
        )
    return data


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of rule file ``path``: a regular file of at most ``limit`` bytes of YAML
    text, or a ``RuleFileError`` saying which it is not."""
    data = _read_regular(path, limit)
    _check_text(path.name, data)
    return data


def _check_text(file: str, data: bytes) -> None:
    """UTF-8, and only the characters YAML allows, or a sentence naming the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise fail(
            file, "", f"is not UTF-8: byte 0x{data[exc.start]:02x} on line {line} is not valid"
        ) from None
    bom = text.find("\ufeff", 1)
    if bom >= 0:  # libyaml takes some and stumbles on others: none, past the first character
        line = text.count("\n", 0, bom) + 1
        raise fail(
            file, "", f"holds a byte order mark (U+FEFF) on line {line}; only a file's first"
            " character may be one",
        )  # fmt: skip
    if text.isascii() and not data.translate(None, _YAML_ASCII):
        return  # the common case, at memory speed
    bad = _NOT_YAML_TEXT.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise fail(
            file,
            "",
            f"holds the character U+{ord(bad.group()):04X} on line {line}, which YAML does not"
            " allow",
        )
