"""The object store (S3 or an S3-compatible one: MinIO, Ceph): the only module that imports
aioboto3. The decision archive (``audit/archive.py``) and the evidence bundles
(``evidence``) are written through it.

Credentials come from the standard AWS chain (environment, shared files, web identity as
IRSA sets it up, the instance or task role): nothing here reads a secret. Retries are
botocore's own (``retry_mode``, ``max_attempts``); what still fails is one
``ObjectStoreError`` naming the operation, the key and S3's error code, so callers never
see a botocore type. Server-side encryption is passed through as S3 takes it.

aioboto3 and botocore are imported when an object store is opened, not with this module:
they take some 0.4 s to import, which every ``remediator`` command would otherwise pay.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from remediator.core.errors import ObjectStoreError

Encryption = Literal["", "AES256", "aws:kms"]
RetryMode = Literal["standard", "adaptive", "legacy"]
#: Seconds to connect and to wait for an answer: a slow S3 delays an archive round, never
#: a decision, but a round must end.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str
    region: str = ""
    """Empty: the chain's own (``AWS_REGION``, the shared config)."""
    endpoint_url: str = ""
    """Empty: AWS's own. Set for MinIO, Ceph or a test server (path-style addressing)."""
    encryption: Encryption = ""
    kms_key_id: str = ""
    retry_mode: RetryMode = "standard"
    max_attempts: int = 5


class ObjectStore:
    """Puts objects into one bucket (all the archive and the evidence need:
    ``s3:PutObject``) and signs links to them; open with ``ObjectStore.open``."""

    def __init__(self, settings: S3Settings, client: Any) -> None:
        self._settings = settings
        self._client = client

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: S3Settings) -> AsyncIterator[ObjectStore]:
        import aioboto3
        from botocore.config import Config

        config = Config(
            retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            s3={"addressing_style": "path"} if settings.endpoint_url else None,
            signature_version="s3v4",  # what every region takes; presigned links too
        )
        options: dict[str, Any] = {"config": config}
        if settings.region:
            options["region_name"] = settings.region
        if settings.endpoint_url:
            options["endpoint_url"] = settings.endpoint_url
        with _translated("open the client", ""):
            async with aioboto3.Session().client("s3", **options) as client:
                yield cls(settings, client)

    async def put(
        self,
        key: str,
        body: bytes,
        content_type: str,
        content_encoding: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Write ``key`` (a put overwrites: the same key twice is one object)."""
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": dict(metadata or {})}
        if content_encoding:
            extra["ContentEncoding"] = content_encoding
        if self._settings.encryption:
            extra["ServerSideEncryption"] = self._settings.encryption
        if self._settings.kms_key_id:
            extra["SSEKMSKeyId"] = self._settings.kms_key_id
        with _translated("put", key):
            await self._client.put_object(Bucket=self._settings.bucket, Key=key, Body=body, **extra)

    async def presign(self, key: str, expires_s: int) -> str:
        """A URL that reads ``key`` for ``expires_s`` seconds, signed with this client's
        credentials (so its reader needs what they grant: ``s3:GetObject``). Computed
        here; nothing is sent."""
        with _translated("presign", key):
            url = await self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._settings.bucket, "Key": key},
                ExpiresIn=expires_s,
            )
        return str(url)


@contextlib.contextmanager
def _translated(operation: str, key: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        raise ObjectStoreError(
            f"S3 {operation} {key or ''} failed: {code} {error.get('Message', '')}".strip(), code
        ) from exc
    except (BotoCoreError, OSError, TimeoutError) as exc:  # never answered, or no credentials
        raise ObjectStoreError(f"S3 {operation} {key} failed: {exc}".replace("  ", " ")) from exc
