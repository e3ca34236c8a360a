"""The S3 test support works: moto's server answers a real client, and the fault proxy in
front of it forwards, fails, delays, goes down and names the operations it saw."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.exceptions import ConnectionError as BotoConnectionError

from tests.support.s3 import (
    ACCESS_KEY,
    NO_ANSWER,
    REGION,
    SECRET_KEY,
    MotoS3,
    S3Faults,
    Seen,
    create_bucket,
    env,
    get_object,
    list_keys,
    object_meta,
    operation,
)

BUCKET = "archive"


@pytest.fixture
async def moto() -> AsyncIterator[MotoS3]:
    async with MotoS3() as server:
        await create_bucket(server.url, BUCKET)
        yield server


@pytest.fixture
async def faults(moto: MotoS3) -> AsyncIterator[S3Faults]:
    async with S3Faults(moto.url) as proxy:
        yield proxy


@contextlib.asynccontextmanager
async def client_of(url: str) -> AsyncIterator[Any]:
    """A client as one under test would be set up: path-style, and one attempt only, so a
    failure the proxy injects is seen, not retried away."""
    config = Config(
        s3={"addressing_style": "path"},
        # max_attempts counts retries after the first try; total_max_attempts counts all.
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=2,
        read_timeout=10,
    )
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    ) as s3:
        yield s3


async def test_moto_answers_a_put_and_get_round_trip(moto: MotoS3) -> None:
    async with client_of(moto.url) as s3:
        await s3.put_object(
            Bucket=BUCKET,
            Key="2026/01/01/a.json.gz",
            Body=b"\x1f\x8bnot really gzip",
            ContentType="application/json",
            ContentEncoding="gzip",
            ServerSideEncryption="AES256",
            Metadata={"schema": "1"},
        )
    assert await get_object(moto.url, BUCKET, "2026/01/01/a.json.gz") == b"\x1f\x8bnot really gzip"
    assert await list_keys(moto.url, BUCKET) == ["2026/01/01/a.json.gz"]
    assert await object_meta(moto.url, BUCKET, "2026/01/01/a.json.gz") == {
        "ServerSideEncryption": "AES256",
        "ContentType": "application/json",
        "ContentEncoding": "gzip",
        "Metadata": {"schema": "1"},
    }


async def test_list_keys_reads_every_page_under_the_prefix(moto: MotoS3) -> None:
    async with client_of(moto.url) as s3:
        keys = [f"p/{i:04d}" for i in range(7)]
        for key in keys:
            await s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
        await s3.put_object(Bucket=BUCKET, Key="q/other", Body=b"x")
    assert await list_keys(moto.url, BUCKET, prefix="p/", page_keys=2) == keys  # four pages
    assert await list_keys(moto.url, BUCKET, prefix="p/") == keys


async def test_the_proxy_forwards_a_put_and_get_round_trip(moto: MotoS3, faults: S3Faults) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, past aiohttp's default body limit
    packed = gzip.compress(b'{"decision": 1}\n' * 1000)
    async with client_of(faults.url) as s3:
        await s3.put_object(Bucket=BUCKET, Key="odd key/ü+%.bin", Body=body, ContentEncoding="gzip")
        await s3.put_object(Bucket=BUCKET, Key="empty", Body=b"")
        got = await s3.get_object(Bucket=BUCKET, Key="odd key/ü+%.bin")
        async with got["Body"] as stream:
            assert await stream.read() == body
        head = await s3.head_object(Bucket=BUCKET, Key="odd key/ü+%.bin")
        assert head["ContentLength"] == len(body)
        assert head["ContentEncoding"] == "gzip"
        await s3.put_object(Bucket=BUCKET, Key="real.gz", Body=packed, ContentEncoding="gzip")
        got = await s3.get_object(Bucket=BUCKET, Key="real.gz")
        async with got["Body"] as stream:
            assert await stream.read() == packed  # neither way decompressed
    assert await get_object(moto.url, BUCKET, "odd key/ü+%.bin") == body
    assert await get_object(moto.url, BUCKET, "empty") == b""
    assert await get_object(moto.url, BUCKET, "real.gz") == packed
    assert [s.status for s in faults.seen] == [200] * 6


async def test_failing_twice_fails_exactly_two_requests_then_passes(faults: S3Faults) -> None:
    faults.failing(500, times=2)
    async with client_of(faults.url) as s3:
        for _ in range(2):
            with pytest.raises(ClientError) as failed:
                await s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
            assert failed.value.response["Error"]["Code"] == "InternalError"
            assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        await s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
    assert [s.status for s in faults.seen] == [500, 500, 200]


async def test_failing_until_changed_fails_every_request_until_passing(
    faults: S3Faults,
) -> None:
    faults.failing(503)
    async with client_of(faults.url) as s3:
        for _ in range(3):
            with pytest.raises(ClientError) as failed:
                await s3.head_object(Bucket=BUCKET, Key="missing")
            assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        faults.passing()
        with pytest.raises(ClientError) as missing:
            await s3.head_object(Bucket=BUCKET, Key="missing")
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert [s.status for s in faults.seen] == [503, 503, 503, 404]


async def test_slow_delays_each_request_by_at_least_the_delay(faults: S3Faults) -> None:
    loop = asyncio.get_running_loop()
    async with client_of(faults.url) as s3:
        await s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")  # connect before timing
        faults.slow(0.3)
        started = loop.time()
        await s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
        assert loop.time() - started >= 0.3


async def test_down_refuses_connects_and_up_restores(faults: S3Faults) -> None:
    async with client_of(faults.url) as s3:
        await s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")  # a kept-alive connection
        await faults.down()
        with pytest.raises(EndpointConnectionError):
            await s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
        await faults.up()
        await s3.put_object(Bucket=BUCKET, Key="k", Body=b"w")
        got = await s3.get_object(Bucket=BUCKET, Key="k")
        async with got["Body"] as stream:
            assert await stream.read() == b"w"


async def test_down_aborts_a_request_in_flight(faults: S3Faults) -> None:
    faults.slow(5)
    async with client_of(faults.url) as s3:
        put = asyncio.create_task(s3.put_object(Bucket=BUCKET, Key="k", Body=b"v"))
        await asyncio.sleep(0.3)
        await faults.down()
        with pytest.raises(BotoConnectionError):
            await put
    assert faults.seen == [Seen("PUT", f"/{BUCKET}/k", "", "PutObject", NO_ANSWER)]


async def test_the_proxy_names_the_operations_of_put_get_head_and_list(
    faults: S3Faults,
) -> None:
    async with client_of(faults.url) as s3:
        await s3.put_object(Bucket=BUCKET, Key="a/b", Body=b"v")
        got = await s3.get_object(Bucket=BUCKET, Key="a/b")
        async with got["Body"] as stream:
            await stream.read()
        await s3.head_object(Bucket=BUCKET, Key="a/b")
        await s3.list_objects_v2(Bucket=BUCKET, Prefix="a/")
    assert faults.operations() == {"PutObject", "GetObject", "HeadObject", "ListObjectsV2"}
    assert [(s.method, s.path) for s in faults.seen][:3] == [
        ("PUT", "/archive/a/b"),
        ("GET", "/archive/a/b"),
        ("HEAD", "/archive/a/b"),
    ]


async def test_the_proxy_names_the_bucket_batch_and_multipart_operations(
    faults: S3Faults,
) -> None:
    part = b"x" * (5 * 1024 * 1024)
    async with client_of(faults.url) as s3:
        await s3.create_bucket(Bucket="second")
        await s3.head_bucket(Bucket="second")
        await s3.list_objects(Bucket="second")
        await s3.put_object(Bucket="second", Key="d", Body=b"")
        await s3.delete_objects(Bucket="second", Delete={"Objects": [{"Key": "d"}]})
        await s3.delete_object(Bucket="second", Key="gone")
        upload = await s3.create_multipart_upload(Bucket="second", Key="big")
        uid = upload["UploadId"]
        done = await s3.upload_part(
            Bucket="second", Key="big", UploadId=uid, PartNumber=1, Body=part
        )
        await s3.complete_multipart_upload(
            Bucket="second",
            Key="big",
            UploadId=uid,
            MultipartUpload={"Parts": [{"ETag": done["ETag"], "PartNumber": 1}]},
        )
        other = await s3.create_multipart_upload(Bucket="second", Key="dropped")
        await s3.abort_multipart_upload(Bucket="second", Key="dropped", UploadId=other["UploadId"])
    assert [s.operation for s in faults.seen] == [
        "CreateBucket",
        "HeadBucket",
        "ListObjects",
        "PutObject",
        "DeleteObjects",
        "DeleteObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "CreateMultipartUpload",
        "AbortMultipartUpload",
    ]
    assert all(200 <= s.status < 300 for s in faults.seen), faults.seen


async def test_the_proxy_answers_502_when_its_upstream_is_gone() -> None:
    async with MotoS3() as server, S3Faults(server.url) as proxy:
        await server.stop()
        async with client_of(proxy.url) as s3:
            with pytest.raises(ClientError) as failed:
                await s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert [(s.operation, s.status) for s in proxy.seen] == [("PutObject", 502)]


def test_an_unknown_request_is_named_by_its_method() -> None:
    assert operation("GET", "/b", "location") == "Other:GET"
    assert operation("PUT", "/b/k", "tagging") == "Other:PUT"
    assert operation("PATCH", "/b/k", "") == "Other:PATCH"
    assert operation("PUT", "/b/k", "", copy_source=True) == "CopyObject"


def test_env_gives_the_credentials_and_region_but_not_the_endpoint() -> None:
    assert env("http://127.0.0.1:1") == {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


async def test_moto_stops_and_its_port_is_refused_after() -> None:
    server = MotoS3()
    await server.start()
    url = server.url
    await server.stop()
    await server.stop()  # stopping twice is harmless
    with pytest.raises(EndpointConnectionError):
        async with client_of(url) as s3:
            await s3.list_buckets()
