"""`flame.mode.message.MessageType`: Flame's message keys, each named by its wire key."""

from __future__ import annotations

import enum


class MessageType(enum.Enum):
    """The keys of a Flame message dict; a member's value is the key our wire format carries
    (`flame_sdk.wire.Key` for the ones our roles use, an extension key otherwise)."""

    WEIGHTS = "weights"
    EOT = "eot"
    DATASET_SIZE = "dataset_size"
    ROUND = "round"
    MEMBER_DIGEST = "member_digest"
    RING_WEIGHTS = "ring_weights"
    NEW_TRAINER = "new_trainer"
    IS_COMMITTER = "is_committer"
    MODEL_VERSION = "model_version"
    STAT_UTILITY = "stat_utility"
    COORDINATED_ENDS = "coordinated_ends"
    DATASAMPLER_METADATA = "datasampler_metadata"
    META_INFO_REQ = "meta_info_req"
    META_INFO_RES = "meta_info_res"
    ALPHA_ADPT = "alpha_adpt"
    REQ_COORDINATED_ENDS = "req_coordinated_ends"
    RES_COORDINATED_ENDS = "res_coordinated_ends"
    HYBRID_METADATA = "hybrid_metadata"
    BIAS = "bias"
    CONTROL_WEIGHTS = "control_weights"
    CLIENT_WEIGHT = "client_weight"
