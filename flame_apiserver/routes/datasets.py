"""Datasets: metadata registered by users, placed on a compute by realm; public ones shared."""

from __future__ import annotations

from bson import ObjectId
from fastapi import APIRouter, status

from flame_apiserver.auth import AnyCaller, for_path_user
from flame_apiserver.context import Ctx
from flame_apiserver.placement import resolve_placement
from flame_apiserver.ports import AlreadyExists, DatasetRecord
from schemas.dataset import DatasetInfo, DatasetUpdate
from schemas.errors import Conflict, Invalid, NotFound

router = APIRouter(tags=["datasets"])
user_router = APIRouter(
    prefix="/users/{user}/datasets", tags=["datasets"], dependencies=[for_path_user]
)


def _info(doc: DatasetRecord) -> DatasetInfo:
    return DatasetInfo(
        id=doc.dataset_id,
        user_id=doc.user_id,
        name=doc.name,
        description=doc.description,
        url=doc.url,
        data_format=doc.data_format,
        realm=doc.realm,
        compute_id=doc.compute_id,
        is_public=doc.is_public,
    )


async def _owned(ctx: Ctx, user: str, dataset_id: str) -> DatasetRecord:
    doc = await ctx.resources.dataset(dataset_id)
    if doc is None or doc.user_id != user:
        raise NotFound(f"dataset '{dataset_id}' of user '{user}' not found")
    return doc


@router.get("/datasets", response_model=list[DatasetInfo])
async def list_public_datasets(_: AnyCaller, ctx: Ctx, limit: int = 0) -> list[DatasetInfo]:
    """Public datasets of every user (any valid token)."""
    return [_info(d) for d in await ctx.resources.datasets(public=True, limit=limit)]


@user_router.get("", response_model=list[DatasetInfo])
async def list_datasets(user: str, ctx: Ctx, limit: int = 0) -> list[DatasetInfo]:
    """Datasets owned by `user` (public or not)."""
    return [_info(d) for d in await ctx.resources.datasets(user_id=user, limit=limit)]


@user_router.post("", status_code=status.HTTP_201_CREATED, response_model=str)
async def create_dataset(user: str, body: DatasetInfo, ctx: Ctx) -> str:
    """Register a dataset; returns its new id as a JSON string. `id`/`userId`/`computeId` are
    server-assigned (the compute comes from the realm)."""
    placement = await resolve_placement(ctx.resources, body.realm, body.is_public)
    doc = DatasetRecord(
        dataset_id=str(ObjectId()),
        user_id=user,
        name=body.name,
        description=body.description,
        url=body.url,
        data_format=body.data_format,
        realm=placement.realm,
        compute_id=placement.compute_id,
        is_public=body.is_public,
    )
    try:
        await ctx.resources.add_dataset(doc)
    except AlreadyExists as exc:
        raise Conflict(f"user '{user}' already registered a dataset with url '{body.url}'") from exc
    await ctx.announce(
        "dataset.created", user, doc.dataset_id, compute_id=doc.compute_id, realm=doc.realm
    )
    return doc.dataset_id


@user_router.get("/{dataset_id}", response_model=DatasetInfo)
async def get_dataset(user: str, dataset_id: str, ctx: Ctx) -> DatasetInfo:
    """A dataset owned by `user`, or any public one."""
    doc = await ctx.resources.dataset(dataset_id)
    if doc is None or (doc.user_id != user and not doc.is_public):
        raise NotFound(f"dataset '{dataset_id}' not found")
    return _info(doc)


@user_router.put("/{dataset_id}", response_model=DatasetInfo)
async def update_dataset(user: str, dataset_id: str, body: DatasetUpdate, ctx: Ctx) -> DatasetInfo:
    """Partial update; ids are never changed and a new realm is placed again (§1.5 rules)."""
    if body.id not in (None, "", dataset_id):
        raise Invalid(f"a dataset id cannot be changed (path '{dataset_id}', body '{body.id}')")
    if body.user_id not in (None, "", user):
        raise Invalid(f"a dataset cannot change owner (path '{user}', body '{body.user_id}')")
    doc = await _owned(ctx, user, dataset_id)
    changes = body.model_dump(
        include={"name", "description", "url", "data_format", "realm", "is_public"},
        exclude_none=True,
    )
    if "url" in changes and changes["url"] == "":
        raise Invalid("'url' cannot be empty")
    if "data_format" in changes and changes["data_format"] == "":
        raise Invalid("'dataFormat' cannot be empty")
    if "realm" in changes:
        if changes["realm"] == "":
            raise Invalid("'realm' cannot be empty")
        placement = await resolve_placement(
            ctx.resources, changes["realm"], changes.get("is_public", doc.is_public)
        )
        changes.update(realm=placement.realm, compute_id=placement.compute_id)
    try:
        updated = await ctx.resources.update_dataset(dataset_id, changes)
    except AlreadyExists as exc:
        raise Conflict(f"user '{user}' already has a dataset with url '{body.url}'") from exc
    if updated is None:
        raise NotFound(f"dataset '{dataset_id}' of user '{user}' not found")
    await ctx.announce("dataset.updated", user, dataset_id, **changes)
    return _info(updated)


@user_router.delete("/{dataset_id}", response_model=str)
async def delete_dataset(user: str, dataset_id: str, ctx: Ctx) -> str:
    await _owned(ctx, user, dataset_id)
    await ctx.resources.delete_dataset(dataset_id)
    await ctx.announce("dataset.deleted", user, dataset_id)
    return f"dataset '{dataset_id}' deleted"
