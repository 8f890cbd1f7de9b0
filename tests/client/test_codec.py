"""capt/client/codec.py: payloads sealed with AES-256-GCM, keys rotating, failures encoded, and a
workflow's history holding no plaintext of its input, result or failure."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from capt.client import codec

MARKER = "MARKER-" + "s3cr3t-payload"


def keyset(*ids: str) -> codec.KeySet:
    return codec.KeySet(current=ids[0], keys={i: hashlib.sha256(i.encode()).digest() for i in ids})


async def test_a_payload_is_sealed_whole_and_opens_again() -> None:
    c = codec.AesGcmCodec(keyset("k1"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"secret": MARKER}).encode())
    [sealed] = await c.encode([plain])
    assert sealed.metadata["encoding"] == codec.ENCODING and sealed.metadata[codec.KEY_ID_META] == b"k1"
    assert MARKER.encode() not in sealed.SerializeToString() and b"json/plain" not in sealed.data
    [again] = await c.decode([sealed])
    assert again == plain
    # Each seal has its own nonce: the same payload never looks the same twice.
    [other] = await c.encode([plain])
    assert other.data != sealed.data


async def test_keys_rotate_old_payloads_still_open_and_unknown_or_tampered_ones_do_not() -> None:
    old = codec.AesGcmCodec(keyset("k1"))
    [by_k1] = await old.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    rotated = codec.AesGcmCodec(keyset("k2", "k1"))  # k2 current, k1 kept
    [by_k2] = await rotated.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"y"')])
    assert by_k2.metadata[codec.KEY_ID_META] == b"k2"
    assert [p.data for p in await rotated.decode([by_k1, by_k2])] == [b'"x"', b'"y"']
    with pytest.raises(ValueError, match="key 'k2'"):
        await old.decode([by_k2])  # a key set without k2
    tampered = Payload()
    tampered.CopyFrom(by_k1)
    tampered.data = by_k1.data[:-1] + bytes([by_k1.data[-1] ^ 1])
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        await rotated.decode([tampered])
    relabelled = Payload()
    relabelled.CopyFrom(by_k1)
    relabelled.metadata[codec.KEY_ID_META] = b"k2"  # the key id is authenticated too
    with pytest.raises(Exception):  # noqa: B017
        await rotated.decode([relabelled])


async def test_plaintext_payloads_pass_through() -> None:
    """Histories written before encryption was on (e.g. the committed test histories) still read."""
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    assert await codec.AesGcmCodec(keyset("k1")).decode([plain]) == [plain]


def test_key_sources(tmp_path, monkeypatch) -> None:
    k1, k2 = codec.new_key(), codec.new_key()
    keys = codec.parse_keys_env(f"k2={k2}, k1={k1}")
    assert keys.current == "k2" and set(keys.keys) == {"k1", "k2"}
    for bad, what in (
        ("k1", "not id="),
        ("k1=!!", "not base64"),
        (f"k1={base64.b64encode(b'short').decode()}", "32"),
    ):
        with pytest.raises(codec.CodecKeyError, match=what):
            codec.parse_keys_env(bad)
    path = tmp_path / "keys.json"
    codec.write_key_file(path, "k1")
    first = codec.load_key_file(path)
    assert first.current == "k1" and oct(path.stat().st_mode)[-3:] == "600"
    existing = [(i, base64.b64encode(k).decode()) for i, k in first.keys.items()]
    codec.write_key_file(path, "k2", existing=existing)  # rotation: k2 current, k1 kept
    second = codec.load_key_file(path)
    assert second.current == "k2" and second.keys["k1"] == first.keys["k1"]
    assert codec.keys_from_env({}) is None
    assert codec.keys_from_env({codec.KEY_FILE_ENV: str(path)}).current == "k2"


def test_a_kms_wrapped_data_key(tmp_path) -> None:
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
        path = tmp_path / "keys.json"
        wrapped = base64.b64encode(data_key["CiphertextBlob"]).decode()
        path.write_text(json.dumps({"current": "kms-1", "keys": {"kms-1": {"kms": wrapped}}}))
        keys = codec.load_key_file(path, kms_client=kms)
    assert keys.keys["kms-1"] == data_key["Plaintext"]
    assert data_key["Plaintext"] not in path.read_bytes()


# --- a workflow's history --------------------------------------------------------------------------


@dataclasses.dataclass
class Order:
    secret: str
    fail: bool = False


@activity.defn
async def echo(order: Order) -> str:
    if order.fail:
        raise ApplicationError(f"refused {order.secret}", non_retryable=True)
    return f"done {order.secret}"


@workflow.defn(sandboxed=False)  # a test module that imports moto: no sandbox needed here
class Sealed:
    @workflow.run
    async def run(self, order: Order) -> str:
        return await workflow.execute_activity(
            echo,
            order,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_a_history_holds_no_plaintext_and_replays_with_the_keys_also_after_rotation(
    time_skipping_env,
) -> None:
    env = time_skipping_env
    sealed = codec.data_converter(keyset("k1"))
    client = Client(env.client.service_client, namespace=env.client.namespace, data_converter=sealed)
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[Sealed], activities=[echo]):
        ok = await client.execute_workflow(Sealed.run, Order(MARKER), id=f"ok-{queue}", task_queue=queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await client.execute_workflow(
                Sealed.run, Order(MARKER, fail=True), id=f"bad-{queue}", task_queue=queue
            )
    assert ok == f"done {MARKER}"
    assert MARKER in str(failed.value.cause.cause)  # decoded for whoever holds the key
    for wf_id in (f"ok-{queue}", f"bad-{queue}"):
        history = await client.get_workflow_handle(wf_id).fetch_history()
        raw = history.to_json()
        assert MARKER not in raw and base64.b64encode(MARKER.encode()).decode()[:12] not in raw
        assert "refused" not in raw  # the failure's message is encoded too
        # Replays with the key set; a plaintext converter cannot read its input.
        replayed = await Replayer(workflows=[Sealed], data_converter=sealed).replay_workflow(history)
        assert replayed.replay_failure is None
        with pytest.raises(Exception):  # noqa: B017
            await Replayer(workflows=[Sealed], data_converter=pydantic_data_converter).replay_workflow(
                history
            )
        # Key rotation: key 2 added (and current) — histories written under key 1 still replay,
        # and their payloads still decode, while new payloads are sealed with key 2.
        rotated = codec.data_converter(keyset("k2", "k1"))
        again = await Replayer(workflows=[Sealed], data_converter=rotated).replay_workflow(history)
        assert again.replay_failure is None
        first = history.events[0].workflow_execution_started_event_attributes.input.payloads
        assert first[0].metadata[codec.KEY_ID_META] == b"k1"
        [opened] = await rotated.payload_codec.decode(list(first))
        assert MARKER.encode() in opened.data
        [resealed] = await rotated.payload_codec.encode([opened])
        assert resealed.metadata[codec.KEY_ID_META] == b"k2"


# --- the remote codec endpoint and keygen ---------------------------------------------------------


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_the_codec_server_decodes_for_the_ui_origin_with_the_token() -> None:
    import threading

    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    from capt.client import codec_server

    c = codec.AesGcmCodec(keyset("k1"))
    server = codec_server.serve(c, "127.0.0.1", 0, ["http://127.0.0.1:8233"], token="t0ken")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(MARKER).encode())
        body = json_format.MessageToJson(Payloads(payloads=[c.seal(plain)])).encode()
        headers = {"Content-Type": "application/json", "Origin": "http://127.0.0.1:8233"}
        status, _, _ = post(f"{url}/decode", body, headers)
        assert status == 401  # no token
        status, got, answer = post(f"{url}/decode", body, {**headers, "Authorization": "Bearer t0ken"})
        assert status == 200 and got["Access-Control-Allow-Origin"] == "http://127.0.0.1:8233"
        assert list(json_format.Parse(answer, Payloads()).payloads) == [plain]
        # The Web UI posts with a query string (found by tests/e2e/test_webui.py).
        status, _, answer = post(
            f"{url}/decode?preserveStorageRefs=true", body, {**headers, "Authorization": "Bearer t0ken"}
        )
        assert status == 200 and list(json_format.Parse(answer, Payloads()).payloads) == [plain]
        # Encode, then decode again: the same payload.
        status, _, sealed = post(
            f"{url}/encode",
            json_format.MessageToJson(Payloads(payloads=[plain])).encode(),
            {**headers, "Authorization": "Bearer t0ken"},
        )
        assert status == 200 and MARKER.encode() not in sealed
        # Another origin gets no CORS grant.
        _, other, _ = post(
            f"{url}/decode",
            body,
            {**headers, "Origin": "http://evil.example", "Authorization": "Bearer t0ken"},
        )
        assert "Access-Control-Allow-Origin" not in other
    finally:
        server.shutdown()
        server.server_close()


def test_keygen_rotates_a_key_file(tmp_path) -> None:
    from click.testing import CliRunner

    from capt import cli

    path = tmp_path / "keys.json"
    first = CliRunner().invoke(cli.main, ["codec", "keygen", "--file", str(path), "--id", "k1"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli.main, ["codec", "keygen", "--file", str(path), "--id", "k1"])
    assert again.exit_code == 1 and "already" in again.output
    second = CliRunner().invoke(cli.main, ["codec", "keygen", "--file", str(path), "--id", "k2"])
    assert second.exit_code == 0 and "current key k2 (2 key(s))" in second.output
    assert set(codec.load_key_file(path).keys) == {"k1", "k2"}
