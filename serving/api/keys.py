"""Admin routes of the channels' API keys: make one, list them, revoke one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from engine.commerce.keys import KeyInfo
from serving.api.deps import Admin, Box
from serving.api.schemas import In

router = APIRouter(prefix="/v1/channels/{channel_id}/keys", dependencies=[Admin], tags=["admin"])
ChannelId = Annotated[str, Path(min_length=1, max_length=64)]
KeyId = Annotated[str, Path(min_length=1, max_length=64)]


class KeyIn(In):
    kind: Literal["publishable", "secret"]


class KeyOut(BaseModel):
    id: str
    channel_id: str
    kind: Literal["publishable", "secret"]
    display: str = Field(description="The key's first characters, to recognise it by.")
    key: str | None = Field(
        description="The whole key: always for a publishable key; a secret key only in the "
        "answer that made it (it is not kept)."
    )
    created_at: datetime
    revoked_at: datetime | None


def _out(info: KeyInfo, key: str | None = None) -> dict[str, Any]:
    return {
        "id": info.id,
        "channel_id": info.channel_id,
        "kind": info.kind,
        "display": info.display,
        "key": key or info.key,
        "created_at": info.created_at,
        "revoked_at": info.revoked_at,
    }


@router.post("", status_code=201, response_model=KeyOut)
def create_key(channel_id: ChannelId, body: KeyIn, box: Box, response: Response) -> dict[str, Any]:
    """Make a key for the channel. A secret key is in this answer and nowhere else: keep it
    on the shop's servers."""
    made = box.keys.create(channel_id, body.kind)
    response.headers["Cache-Control"] = "no-store"
    return _out(made.info, made.key)


@router.get("", response_model=list[KeyOut])
def list_keys(channel_id: ChannelId, box: Box) -> list[dict[str, Any]]:
    """The channel's keys, newest first, revoked ones too (secret keys by their first
    characters only)."""
    return [_out(info) for info in box.keys.for_channel(channel_id)]


@router.post("/{key_id}/revoke", response_model=KeyOut)
def revoke_key(channel_id: ChannelId, key_id: KeyId, box: Box) -> dict[str, Any]:
    """Revoke a key: refused at once by the replica that revokes it, by every other replica
    within a second (``engine.commerce.keys.REFRESH_S``). Revoking it again changes nothing."""
    return _out(box.keys.revoke(channel_id, key_id))
