"""cloudinary: signed uploads and deletes through Cloudinary's Upload API.

Kinds:

- ``cloudinary.upload`` ``{"file": "/srv/media/a.png", "public_id": "shop/a", "folder": ...,
  "tags": [...], "overwrite": true, "resource_type": "image"}`` → Cloudinary's answer
  (``public_id``, ``secure_url``, ``bytes``...);
- ``cloudinary.destroy`` ``{"public_id": "shop/a", "invalidate": true}`` →
  ``{"result": "ok"}`` or ``{"result": "not found"}`` (a repeated delete is not an error).

``[plugins.cloudinary]``: ``cloud_name``, ``api_key``, ``api_secret`` (``api_secret_env`` /
``api_secret_file``), optionally ``base_url`` and ``signature_algorithm`` (sha1 | sha256).

The seed app uploaded with a blocking client and leaked the file handle on errors. Here the
file is streamed from an async handle, opened in an ``async with`` — closed on success,
error and cancellation alike — and rewound when the transport retries the request, so a
retry sends the whole file again instead of failing on a spent stream.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import anyio
import httpx
from anyio import AsyncFile
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from gladd import FailTask, TaskContext
from gladd.plugins import Plugin, TaskKind, raise_for_status

SERVICE = "cloudinary"
AUTH_HINT = "check [plugins.cloudinary] api_key and api_secret"
CHUNK = 64 * 1024

ResourceType = Literal["image", "video", "raw"]


class Settings(BaseModel):
    """``[plugins.cloudinary]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cloud_name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    api_key: str
    api_secret: SecretStr
    base_url: str = "https://api.cloudinary.com"
    signature_algorithm: Literal["sha1", "sha256"] = "sha1"

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def endpoint(self, resource_type: str, action: str) -> str:
        return f"{self.base_url}/v1_1/{self.cloud_name}/{resource_type}/{action}"


class Upload(BaseModel):
    """The payload of ``cloudinary.upload``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    public_id: str | None = None
    folder: str | None = None
    tags: tuple[str, ...] = ()
    overwrite: bool | None = None
    resource_type: ResourceType = "image"

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path on the gladd host")
        return value


class Destroy(BaseModel):
    """The payload of ``cloudinary.destroy``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_id: str = Field(min_length=1)
    invalidate: bool = False
    resource_type: ResourceType = "image"


def sign(params: Mapping[str, str], secret: str, algorithm: str = "sha1") -> str:
    """Cloudinary's signature: the sorted ``k=v`` pairs joined by ``&``, then the secret."""
    to_sign = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")
    return hashlib.new(algorithm, (to_sign + secret).encode()).hexdigest()


def signed(settings: Settings, params: dict[str, str]) -> dict[str, str]:
    params = {**params, "timestamp": str(int(time.time()))}
    secret = settings.api_secret.get_secret_value()
    signature = sign(params, secret, settings.signature_algorithm)
    return {**params, "api_key": settings.api_key, "signature": signature}


class FilePart(httpx.AsyncByteStream):
    """A ``multipart/form-data`` body streamed from an open async file, replayable."""

    def __init__(self, fields: Mapping[str, str], file: AsyncFile[bytes], name: str, size: int):
        self.boundary = secrets.token_hex(16)
        disposition = '--{}\r\nContent-Disposition: form-data; name="{}"\r\n\r\n{}\r\n'
        head = b"".join(disposition.format(self.boundary, k, v).encode() for k, v in fields.items())
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        self.head = head
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.file = file
        self.length = len(head) + size + len(self.tail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        await self.file.seek(0)  # a retry sends the file again from the start
        while chunk := await self.file.read(CHUNK):
            yield chunk
        yield self.tail


async def upload(ctx: TaskContext, payload: Upload) -> dict[str, Any]:
    settings: Settings = ctx.settings
    path = anyio.Path(payload.file)
    try:
        size = (await path.stat()).st_size
    except OSError as exc:
        raise FailTask(f"cloudinary: cannot read {payload.file}: {exc.strerror}") from None
    params = {
        "public_id": payload.public_id or "",
        "folder": payload.folder or "",
        "tags": ",".join(payload.tags),
        "overwrite": "" if payload.overwrite is None else str(payload.overwrite).lower(),
    }
    fields = signed(settings, {k: v for k, v in params.items() if v})
    async with await anyio.open_file(payload.file, "rb") as file:
        body = FilePart(fields, file, path.name, size)
        client = ctx.http[SERVICE]
        request = client.build_request(
            "POST",
            settings.endpoint(payload.resource_type, "upload"),
            headers={
                "Content-Type": f"multipart/form-data; boundary={body.boundary}",
                "Content-Length": str(body.length),
            },
        )
        request.stream = body
        response = await client.send(request)
        await response.aread()
    raise_for_status(response, auth_hint=AUTH_HINT)
    answer: dict[str, Any] = response.json()
    ctx.logger.info("cloudinary: uploaded {} as {}", payload.file, answer.get("public_id"))
    return answer


async def destroy(ctx: TaskContext, payload: Destroy) -> dict[str, Any]:
    settings: Settings = ctx.settings
    params = {"public_id": payload.public_id}
    if payload.invalidate:
        params["invalidate"] = "true"
    response = await ctx.http[SERVICE].post(
        settings.endpoint(payload.resource_type, "destroy"), data=signed(settings, params)
    )
    raise_for_status(response, auth_hint=AUTH_HINT)
    answer: dict[str, Any] = response.json()
    return answer


plugin = Plugin(
    name="cloudinary",
    description="signed uploads (streamed from disk) and deletes on Cloudinary",
    services=(SERVICE,),
    settings=Settings,
    kinds=[
        TaskKind(name="cloudinary.upload", handler=upload, payload=Upload),
        TaskKind(name="cloudinary.destroy", handler=destroy, payload=Destroy),
    ],
)
