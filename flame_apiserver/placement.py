"""Dataset placement: resolve a dataset's realm to the compute that will run its trainer."""

from __future__ import annotations

from dataclasses import dataclass

from flame_apiserver.ports import Resources
from schemas.compute import DEFAULT_COMPUTE
from schemas.errors import Invalid

REGION_ROOT = "default/"


@dataclass(frozen=True)
class Placement:
    realm: str
    compute_id: str


async def resolve_placement(resources: Resources, realm: str, is_public: bool) -> Placement:
    """Flame's realm -> computeId rules (control-plane reference §1.5).

    A realm under `default/` is a region path: the first compute registered for exactly that
    region serves the data (realm gains the compute id as last segment); without one, a public
    dataset stays on compute `default` and a private one is refused. Any other realm names a
    compute id, which must exist; the realm becomes `<its region>/<compute id>`.
    """
    if realm.startswith(REGION_ROOT):
        first = await resources.first_compute_in(realm)
        if first is not None:
            compute_id = first.compute_id
            return Placement(realm=f"{realm}/{compute_id}", compute_id=compute_id)
        if is_public:
            return Placement(realm=realm, compute_id=DEFAULT_COMPUTE)
        raise Invalid(
            f"no compute is registered for region '{realm}'; a private dataset must be "
            "placed on a compute (register one or make the dataset public)"
        )
    compute = await resources.compute(realm)
    if compute is None:
        raise Invalid(
            f"realm '{realm}' is neither a region path under '{REGION_ROOT}' nor a registered "
            "compute id"
        )
    return Placement(realm=f"{compute.region}/{realm}", compute_id=realm)
