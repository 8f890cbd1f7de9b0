"""One redaction filter under every log line (issue 16): what botocore, the SDK or capt print at
DEBUG passes `redact` — registered user secret values, SecretString/SecretBinary bodies, PEM
blocks (plain and base64), kubeconfig credentials, bootstrap tokens, AWS keys — and the
formatter wrapper covers the message, its arguments and a traceback."""

from __future__ import annotations

import base64
import io
import logging

import pytest

from capt.activities import redaction

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        # botocore.parsers at DEBUG: the response body of GetSecretValue, as a bytes repr
        (
            'Response body:\nb\'{"ARN":"arn:aws:secretsmanager:x","Name":"capt/a/b/pki/ca",'
            '"SecretString":"{\\\\"cert\\\\": \\\\"abc\\\\", \\\\"key\\\\": \\\\"s3cr3t-v4lue\\\\"}"}\'',
            "s3cr3t-v4lue",
        ),
        # botocore.endpoint at DEBUG: the params of CreateSecret
        (
            "Making request for OperationModel(name=CreateSecret) with params: {'body': "
            'b\'{"Name": "capt/a/b/user/x", "SecretString": "hunter2-longer"}\'}',
            "hunter2-longer",
        ),
        (f"loaded key {PEM} ok", "MIIEowIBAAKCAQEAx"),
        ("truncated -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI", "MHcCAQEEI"),
        (
            "kubeconfig client-key-data: " + base64.b64encode(PEM.encode()).decode(),
            base64.b64encode(PEM.encode()).decode()[:20],
        ),
        ("joining with abcdef.0123456789abcdef now", "0123456789abcdef"),
        ("env AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCY", "wJalrXUtnFEMIK7MDENGbPxRfiCY"),
        ("header X-Amz-Security-Token: IQoJb3JpZ2luX2VjEJr", "IQoJb3JpZ2luX2VjEJr"),
        ("user ops password: Sup3rSecret!", "Sup3rSecret!"),
    ],
)
def test_secret_values_are_redacted(line, secret):
    out = redaction.redact(line)
    assert secret not in out, out
    assert "[REDACTED" in out, out


def test_registered_values_are_masked_in_text_and_base64_form():
    value = b"capt-user-value-9f8e7d"
    redaction.register(value)
    line = f"content={value.decode()} b64={base64.b64encode(value).decode()}"
    out = redaction.redact(line)
    assert value.decode() not in out and base64.b64encode(value).decode() not in out
    redaction.register(b"short")  # too short to register: ordinary words survive
    assert redaction.redact("a short line") == "a short line"


def test_ordinary_lines_pass_unchanged():
    for line in (
        "stored bootstrap data for cp-1 (init): 13427 bytes rendered, 8125 stored in 1 chunk(s)",
        "instance i-0abc (machine md-0-x) running in ap-northeast-2a",
        "cluster team-a/prod: Ready (3/3 control plane, 3/3 md-0)",
    ):
        assert redaction.redact(line) == line


def test_install_wraps_every_root_handler_message_args_and_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("capt.test.redaction")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        redaction.install(logger)
        redaction.install(logger)  # idempotent
        assert isinstance(handler.formatter, redaction.RedactingFormatter)
        assert not isinstance(handler.formatter.inner, redaction.RedactingFormatter)
        logger.debug("params %s", {"SecretString": "capt-arg-secret-1234"})
        try:
            raise ValueError(f"bad key {PEM}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "DEBUG params" in out and "capt-arg-secret-1234" not in out
    assert "Traceback" in out and "MIIEowIBAAKCAQEAx" not in out
