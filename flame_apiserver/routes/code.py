"""Design code: zip uploads kept as numbered revisions, downloads, current revision."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from flame_apiserver.auth import for_path_user
from flame_apiserver.codezip import validate_code_zip
from flame_apiserver.context import ApiContext, Ctx
from flame_apiserver.lookups import design_of
from flame_apiserver.ports import CodeRecord, Contended
from schemas.design import CodeRevision
from schemas.errors import Conflict, NotFound, TooLarge

router = APIRouter(
    prefix="/users/{user}/designs/{design_id}/code",
    tags=["designCode"],
    dependencies=[for_path_user],
)

FileName = Annotated[str, Form(alias="fileName", description="name of the zip file")]
FileData = Annotated[UploadFile, File(alias="fileData", description="the code zip")]


def _revision(doc: CodeRecord) -> CodeRevision:
    return CodeRevision(
        revision=doc.revision, file_name=doc.file_name, size=doc.size, sha256=doc.sha256
    )


async def _store(
    ctx: ApiContext, user: str, design_id: str, name: str, upload: UploadFile
) -> CodeRevision:
    limit = ctx.settings.max_code_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"code zip is larger than {limit} bytes")
    roles = await asyncio.to_thread(validate_code_zip, data, ctx.zip_limits)
    sha256 = hashlib.sha256(data).hexdigest()
    file_name = name or upload.filename or "code.zip"
    try:
        doc = await ctx.resources.add_code(user, design_id, file_name, data, sha256)
    except Contended as exc:
        raise Conflict(
            f"code of design '{design_id}' is being uploaded concurrently; retry"
        ) from exc
    if doc is None:
        raise NotFound(f"design '{design_id}' of user '{user}' not found")
    await ctx.announce(
        "code.uploaded", user, design_id, revision=doc.revision,
        file_name=doc.file_name, size=doc.size, sha256=sha256, roles=list(roles),
    )  # fmt: skip
    return _revision(doc)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CodeRevision)
async def upload_code(
    user: str, design_id: str, ctx: Ctx, file_data: FileData, file_name: FileName = ""
) -> CodeRevision:
    """Store a zip (`<role>/...` files only) as the design's next code revision."""
    return await _store(ctx, user, design_id, file_name, file_data)


@router.put("", response_model=CodeRevision)
async def replace_code(
    user: str, design_id: str, ctx: Ctx, file_data: FileData, file_name: FileName = ""
) -> CodeRevision:
    """Same as POST (earlier revisions stay available to the jobs that pinned them)."""
    return await _store(ctx, user, design_id, file_name, file_data)


@router.get("", response_class=Response, responses={200: {"content": {"application/zip": {}}}})
async def download_code(user: str, design_id: str, ctx: Ctx, revision: int = 0) -> Response:
    """The zip of the current code revision, or of `revision` when given."""
    design = await design_of(ctx.resources, user, design_id)
    wanted = revision or design.code_revision
    doc = await ctx.resources.code(user, design_id, wanted)
    if wanted == 0 or doc is None:
        which = f"revision {revision} of the code" if revision else "code"
        raise NotFound(f"design '{design_id}' has no {which}")
    return Response(
        doc.data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{design_id}.zip"',
            "X-Code-Revision": str(doc.revision),
        },
    )


@router.get("/revision", response_model=CodeRevision)
async def code_revision(user: str, design_id: str, ctx: Ctx) -> CodeRevision:
    """The current code revision (`revision` 0 when the design has no code)."""
    design = await design_of(ctx.resources, user, design_id)
    if design.code_revision == 0:
        return CodeRevision()
    doc = await ctx.resources.code(user, design_id, design.code_revision)
    return _revision(doc) if doc else CodeRevision()


@router.delete("", response_model=str)
async def delete_code(user: str, design_id: str, ctx: Ctx, forceDelete: bool = False) -> str:
    """Delete every code revision; refused (409) while jobs use the design, unless forced."""
    design = await design_of(ctx.resources, user, design_id)
    if design.code_revision == 0:
        raise NotFound(f"design '{design_id}' has no code")
    jobs = await ctx.jobs.count_jobs_of_design(user, design_id)
    if jobs and not forceDelete:
        raise Conflict(
            f"the code of design '{design_id}' is pinned by {jobs} job(s); delete them first "
            "or pass forceDelete=true"
        )
    await ctx.resources.delete_code(user, design_id)
    await ctx.announce("code.deleted", user, design_id, revision=design.code_revision)
    return f"code of design '{design_id}' deleted"
