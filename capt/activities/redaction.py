"""One redaction filter for every log line the worker and the CLI write.

capt never logs a secret on purpose; this is the net under the libraries that do at DEBUG —
botocore prints request and response bodies (a `GetSecretValue` answer holds the `SecretString`),
urllib3 and the Temporal SDK print what they are handed. `install()` wraps the formatter of every
handler on the root logger, so whatever reaches a log file or the terminal — message, arguments
and traceback — passes `redact()` first:

- values registered at run time (`register`): what the process read from or stored in Secrets
  Manager for the user (their Secrets' values, in text and base64 form);
- everything after `SecretString` / `SecretBinary` in a message (botocore's bodies and params);
- PEM blocks (and base64-encoded PEM, as a kubeconfig's `*-data` fields hold it), kubeconfig
  credential fields, kubeadm bootstrap tokens, AWS secret keys and session tokens.

Redaction is textual and conservative: a false positive costs a `[REDACTED]` in a debug line.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import threading
from collections import OrderedDict

MASK = "[REDACTED]"
_MIN_REGISTERED = 6  # shorter values would mask ordinary words
_MAX_REGISTERED = 4096

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # botocore's DEBUG bodies/params of Secrets Manager calls: the rest of the message goes.
    (re.compile(r"(Secret(?:String|Binary)).*", re.DOTALL), r"\1 " + MASK),
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", re.DOTALL), "[REDACTED PEM]"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*", re.DOTALL), "[REDACTED PEM]"),
    (re.compile(r"LS0tLS1CRUdJT[A-Za-z0-9+/=]*"), "[REDACTED PEM]"),
    (
        re.compile(
            r"((?:client-key-data|client-certificate-data|token|password|passwd)[\"']?\s*[:=]\s*)[^\s,}\]]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"), "[REDACTED token]"),
    (
        re.compile(
            r"((?:aws_secret_access_key|AWS_SECRET_ACCESS_KEY|aws_session_token|AWS_SESSION_TOKEN|"
            r"X-Amz-Security-Token|SecretAccessKey|SessionToken)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"
        ),
        r"\1" + MASK,
    ),
)

_lock = threading.Lock()
_registered: OrderedDict[str, None] = OrderedDict()


def register(value: str | bytes) -> None:
    """Mask `value` (and its base64 form) in every later log line of this process."""
    if isinstance(value, bytes):
        forms = [base64.b64encode(value).decode()]
        with contextlib.suppress(UnicodeDecodeError):
            forms.append(value.decode())
    else:
        forms = [value, base64.b64encode(value.encode()).decode()]
    with _lock:
        for form in forms:
            for line in {form, *form.splitlines()}:
                line = line.strip()
                if len(line) >= _MIN_REGISTERED:
                    _registered[line] = None
                    _registered.move_to_end(line)
        while len(_registered) > _MAX_REGISTERED:
            _registered.popitem(last=False)


def redact(text: str) -> str:
    with _lock:
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats with the handler's own formatter, then redacts the whole line (traceback too)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def install(logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of every handler of `logger` (default: the root logger). Idempotent."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))
