"""Designs and their revisioned TAG schema (`/users/{user}/designs...`)."""

from __future__ import annotations

from fastapi import APIRouter, status

from flame_apiserver.auth import for_path_user
from flame_apiserver.context import Ctx
from flame_apiserver.lookups import design_of
from flame_apiserver.ports import AlreadyExists, Contended, DesignRecord
from schemas.design import Design, DesignInfo, DesignSchema, DesignUpdate
from schemas.errors import Conflict, Invalid, NotFound

router = APIRouter(prefix="/users/{user}/designs", tags=["designs"], dependencies=[for_path_user])


def _info(doc: DesignRecord) -> DesignInfo:
    return DesignInfo(
        id=doc.design_id, name=doc.name, description=doc.description, user_id=doc.user_id
    )


@router.get("", response_model=list[DesignInfo])
async def list_designs(user: str, ctx: Ctx, limit: int = 0) -> list[DesignInfo]:
    """All designs of `user` (`limit` > 0 caps the count)."""
    return [_info(d) for d in await ctx.resources.designs(user, limit)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DesignInfo)
async def create_design(user: str, body: DesignInfo, ctx: Ctx) -> DesignInfo:
    """Create an empty design; the path user owns it whatever `userId` says."""
    doc = DesignRecord(
        user_id=user, design_id=body.id, name=body.name, description=body.description
    )
    try:
        await ctx.resources.add_design(doc)
    except AlreadyExists as exc:
        raise Conflict(f"design '{body.id}' already exists for user '{user}'") from exc
    await ctx.announce("design.created", user, body.id)
    return _info(doc)


@router.get("/{design_id}", response_model=Design)
async def get_design(user: str, design_id: str, ctx: Ctx) -> Design:
    doc = await design_of(ctx.resources, user, design_id)
    schema = DesignSchema.model_validate(doc.schema) if doc.schema else None
    return Design(**_info(doc).model_dump(), schema_=schema)


@router.put("/{design_id}", response_model=DesignInfo)
async def update_design(user: str, design_id: str, body: DesignUpdate, ctx: Ctx) -> DesignInfo:
    """Partial update of name/description; `id`/`userId` may be repeated but never changed."""
    if body.id not in (None, "", design_id):
        raise Invalid(f"a design id cannot be changed (path '{design_id}', body '{body.id}')")
    if body.user_id not in (None, "", user):
        raise Invalid(f"a design cannot change owner (path '{user}', body '{body.user_id}')")
    changes = body.model_dump(include={"name", "description"}, exclude_none=True)
    doc = await ctx.resources.update_design(user, design_id, changes)
    if doc is None:
        raise NotFound(f"design '{design_id}' of user '{user}' not found")
    await ctx.announce("design.updated", user, design_id, **changes)
    return _info(doc)


@router.delete("/{design_id}", response_model=str)
async def delete_design(user: str, design_id: str, ctx: Ctx, forceDelete: bool = False) -> str:
    """Delete a design with its schema and every code revision; refused (409) while jobs use it."""
    await design_of(ctx.resources, user, design_id)
    jobs = await ctx.jobs.count_jobs_of_design(user, design_id)
    if jobs and not forceDelete:
        raise Conflict(
            f"design '{design_id}' is used by {jobs} job(s); delete them first or pass "
            "forceDelete=true"
        )
    await ctx.resources.delete_design(user, design_id)
    await ctx.announce("design.deleted", user, design_id, jobs=jobs)
    return f"design '{design_id}' deleted"


# --- schema ---------------------------------------------------------------------------------


def _check_schema(schema: DesignSchema) -> None:
    problems = schema.semantic_errors()
    if problems:
        raise Invalid("invalid schema: " + "; ".join(problems))


@router.post(
    "/{design_id}/schema",
    status_code=status.HTTP_201_CREATED,
    response_model=DesignSchema,
    tags=["designSchema"],
)
async def create_schema(user: str, design_id: str, body: DesignSchema, ctx: Ctx) -> DesignSchema:
    """Store a new schema revision (the body's `revision` is ignored)."""
    _check_schema(body)
    try:
        stored = await ctx.resources.store_schema(user, design_id, body)
    except Contended as exc:
        raise Conflict(
            f"schema of design '{design_id}' is being changed concurrently; retry"
        ) from exc
    if stored is None:
        raise NotFound(f"design '{design_id}' of user '{user}' not found")
    await ctx.announce("schema.updated", user, design_id, revision=stored.revision)
    return stored


@router.put("/{design_id}/schema", response_model=DesignSchema, tags=["designSchema"])
async def update_schema(user: str, design_id: str, body: DesignSchema, ctx: Ctx) -> DesignSchema:
    """Same as POST: the schema is replaced by a new revision."""
    return await create_schema(user, design_id, body, ctx)


@router.get("/{design_id}/schema", response_model=DesignSchema, tags=["designSchema"])
async def get_schema(user: str, design_id: str, ctx: Ctx) -> DesignSchema:
    doc = await design_of(ctx.resources, user, design_id)
    if not doc.schema:
        raise NotFound(f"design '{design_id}' has no schema")
    return DesignSchema.model_validate(doc.schema)


@router.delete("/{design_id}/schema", response_model=str, tags=["designSchema"])
async def delete_schema(user: str, design_id: str, ctx: Ctx) -> str:
    """Remove the schema; revisions keep counting so a later schema never reuses a number."""
    doc = await design_of(ctx.resources, user, design_id)
    if not doc.schema:
        raise NotFound(f"design '{design_id}' has no schema")
    revision = doc.schema_revision
    await ctx.resources.clear_schema(user, design_id)
    await ctx.announce("schema.deleted", user, design_id, revision=revision)
    return f"schema of design '{design_id}' deleted"
