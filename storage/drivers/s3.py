"""The S3 driver (any S3-compatible service: AWS S3, MinIO, Ceph RGW), on aiobotocore.

Parameters use Distribution's names: ``bucket``, ``region``, ``regionendpoint``,
``accesskey``, ``secretkey``, ``rootdirectory`` (a key prefix), ``chunksize``, ``redirect``
(serve blob GETs as presigned-URL redirects so bytes flow from object storage, not Python).

S3 has no append. An append writer builds the new object with a multipart upload whose first
part is a server-side copy of the existing object (or, when that is under the 5 MiB part
minimum, its bytes re-sent), followed by the new bytes; the old object stays readable until the
upload completes, and cancelling aborts it. So a resumed upload never re-sends earlier chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from storage.drivers.base import FileInfo, FileWriter, StorageDriver, check_dir, check_path
from storage.errors import DriverError, InvalidOffset, PathNotFound

MIN_PART = 5 << 20
MAX_COPY_PART = 5 << 30
_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _errors(path: str):
    """Translate backend exceptions; nothing from botocore leaves this driver."""
    try:
        yield
    except ClientError as e:
        if _code(e) in _NOT_FOUND:
            raise PathNotFound(path) from None
        raise DriverError(f"s3 error on {path}: {_code(e)}") from None
    except (BotoCoreError, OSError) as e:
        raise DriverError(f"s3 unavailable on {path}: {e}") from None


class _S3Writer(FileWriter):
    def __init__(self, driver: S3Driver, path: str, existing: int) -> None:
        self._d, self._path, self._key = driver, path, driver._key(path)
        self._existing = existing
        self._buf = bytearray()
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def size(self) -> int:
        return self._existing + self._written

    async def _start(self) -> None:
        client = await self._d._client()
        with _errors(self._path):
            resp = await client.create_multipart_upload(Bucket=self._d.bucket, Key=self._key)
        self._upload_id = resp["UploadId"]
        if self._existing >= MIN_PART:
            await self._copy_existing()

    async def _copy_existing(self) -> None:
        client = await self._d._client()
        for start in range(0, self._existing, MAX_COPY_PART):
            end = min(self._existing, start + MAX_COPY_PART) - 1
            with _errors(self._path):
                resp = await client.upload_part_copy(
                    Bucket=self._d.bucket, Key=self._key, UploadId=self._upload_id,
                    PartNumber=len(self._parts) + 1, CopySourceRange=f"bytes={start}-{end}",
                    CopySource={"Bucket": self._d.bucket, "Key": self._key})
            self._parts.append({"PartNumber": len(self._parts) + 1, "ETag": resp["CopyPartResult"]["ETag"]})

    async def _upload_part(self, data: bytes) -> None:
        client = await self._d._client()
        with _errors(self._path):
            resp = await client.upload_part(Bucket=self._d.bucket, Key=self._key, UploadId=self._upload_id,
                                            PartNumber=len(self._parts) + 1, Body=data)
        self._parts.append({"PartNumber": len(self._parts) + 1, "ETag": resp["ETag"]})

    async def write(self, chunk: bytes) -> None:
        if not self._written and 0 < self._existing < MIN_PART:
            # Too small to copy as a part: carry the old bytes along with the new ones.
            self._buf += await self._d.get_content(self._path)
        self._buf += chunk
        self._written += len(chunk)
        if len(self._buf) >= self._d.chunksize:
            if self._upload_id is None:
                await self._start()
            await self._upload_part(bytes(self._buf))
            self._buf.clear()

    async def commit(self) -> None:
        if self._upload_id is None:
            if self._written == 0 and self._existing:
                return  # nothing appended
            await self._d.put_content(self._path, bytes(self._buf))
            return
        if self._buf or not self._parts:
            await self._upload_part(bytes(self._buf))
            self._buf.clear()
        client = await self._d._client()
        with _errors(self._path):
            await client.complete_multipart_upload(Bucket=self._d.bucket, Key=self._key, UploadId=self._upload_id,
                                                   MultipartUpload={"Parts": self._parts})
        self._upload_id = None

    async def cancel(self) -> None:
        self._buf.clear()
        if self._upload_id is not None:
            client = await self._d._client()
            with contextlib.suppress(ClientError, BotoCoreError):
                await client.abort_multipart_upload(Bucket=self._d.bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None


class S3Driver(StorageDriver):
    name = "s3"

    def __init__(self, bucket: str, region: str = "us-east-1", regionendpoint: str | None = None,
                 accesskey: str | None = None, secretkey: str | None = None, rootdirectory: str = "",
                 chunksize: int = 10 << 20, redirect: bool = False, **ignored: Any) -> None:
        if not bucket:
            raise ValueError("storage.s3.bucket is required")
        if chunksize < MIN_PART:
            raise ValueError(f"storage.s3.chunksize must be at least {MIN_PART}")
        self.bucket, self.region, self.endpoint = bucket, region, regionendpoint
        self.accesskey, self.secretkey = accesskey, secretkey
        self.prefix = rootdirectory.strip("/")
        self.chunksize, self.redirect = chunksize, redirect
        self._stack: contextlib.AsyncExitStack | None = None
        self._s3: Any = None

    async def _client(self) -> Any:
        if self._s3 is None:
            self._stack = contextlib.AsyncExitStack()
            self._s3 = await self._stack.enter_async_context(get_session().create_client(
                "s3", region_name=self.region, endpoint_url=self.endpoint,
                aws_access_key_id=self.accesskey, aws_secret_access_key=self.secretkey,
                config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                                  max_pool_connections=64)))
        return self._s3

    def _key(self, path: str) -> str:
        check_dir(path)
        key = path.lstrip("/")
        if not key:
            return self.prefix
        return f"{self.prefix}/{key}" if self.prefix else key

    def _path(self, key: str) -> str:
        return "/" + (key[len(self.prefix) + 1:] if self.prefix else key)

    async def get_content(self, path: str) -> bytes:
        client = await self._client()
        with _errors(path):
            resp = await client.get_object(Bucket=self.bucket, Key=self._key(check_path(path)))
            async with resp["Body"] as body:
                return await body.read()

    async def put_content(self, path: str, data: bytes) -> None:
        client = await self._client()
        with _errors(path):
            await client.put_object(Bucket=self.bucket, Key=self._key(check_path(path)), Body=bytes(data))

    async def reader(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        info = await self.stat(check_path(path))
        if info.is_dir:
            raise PathNotFound(path)
        if offset < 0 or offset > info.size:
            raise InvalidOffset(path, offset)
        end = info.size if length is None else min(info.size, offset + length)
        if end <= offset:
            return
        client = await self._client()
        with _errors(path):
            resp = await client.get_object(Bucket=self.bucket, Key=self._key(path), Range=f"bytes={offset}-{end - 1}")
            async with resp["Body"] as body:
                while chunk := await body.read(1 << 20):
                    yield chunk

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        check_path(path)
        existing = 0
        if append:
            info = await self.stat(path)
            if info.is_dir:
                raise PathNotFound(path)
            existing = info.size
        return _S3Writer(self, path, existing)

    async def stat(self, path: str) -> FileInfo:
        client = await self._client()
        key = self._key(path)
        if path != "/":
            try:
                with _errors(path):
                    head = await client.head_object(Bucket=self.bucket, Key=key)
                return FileInfo(path, int(head["ContentLength"]), head["LastModified"].timestamp(), False)
            except PathNotFound:
                pass
        prefix = f"{key}/" if key else ""
        with _errors(path):
            resp = await client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        if resp.get("KeyCount", 0) == 0:
            raise PathNotFound(path)
        return FileInfo(path, 0, 0.0, True)

    async def list(self, path: str) -> list[str]:
        client = await self._client()
        key = self._key(path)
        prefix = f"{key}/" if key else ""
        out: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        with _errors(path):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                out += [self._path(p["Prefix"].rstrip("/")) for p in page.get("CommonPrefixes", [])]
                out += [self._path(o["Key"]) for o in page.get("Contents", [])]
        if not out and path != "/":
            raise PathNotFound(path)
        return sorted(out)

    async def move(self, src: str, dst: str) -> None:
        client = await self._client()
        info = await self.stat(check_path(src))
        check_path(dst)
        with _errors(src):
            if info.size <= MAX_COPY_PART:
                await client.copy_object(Bucket=self.bucket, Key=self._key(dst),
                                         CopySource={"Bucket": self.bucket, "Key": self._key(src)})
            else:
                await self._multipart_copy(src, dst, info.size)
            await client.delete_object(Bucket=self.bucket, Key=self._key(src))

    async def _multipart_copy(self, src: str, dst: str, size: int) -> None:
        client = await self._client()
        up = await client.create_multipart_upload(Bucket=self.bucket, Key=self._key(dst))
        parts = []
        for n, start in enumerate(range(0, size, MAX_COPY_PART), 1):
            end = min(size, start + MAX_COPY_PART) - 1
            resp = await client.upload_part_copy(Bucket=self.bucket, Key=self._key(dst), UploadId=up["UploadId"],
                                                 PartNumber=n, CopySourceRange=f"bytes={start}-{end}",
                                                 CopySource={"Bucket": self.bucket, "Key": self._key(src)})
            parts.append({"PartNumber": n, "ETag": resp["CopyPartResult"]["ETag"]})
        await client.complete_multipart_upload(Bucket=self.bucket, Key=self._key(dst), UploadId=up["UploadId"],
                                               MultipartUpload={"Parts": parts})

    async def delete(self, path: str) -> None:
        client = await self._client()
        key = self._key(check_path(path))
        keys: list[str] = []
        with _errors(path):
            try:
                await client.head_object(Bucket=self.bucket, Key=key)
                keys.append(key)
            except ClientError as e:
                if _code(e) not in _NOT_FOUND:
                    raise
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=key + "/"):
                keys += [o["Key"] for o in page.get("Contents", [])]
            if not keys:
                raise PathNotFound(path)
            for i in range(0, len(keys), 1000):
                await client.delete_objects(Bucket=self.bucket,
                                            Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if not self.redirect or method != "GET":
            return None
        client = await self._client()
        with _errors(path):
            return await client.generate_presigned_url("get_object", Params={"Bucket": self.bucket,
                                                                             "Key": self._key(path)}, ExpiresIn=1200)

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack, self._s3 = None, None
