from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JoinPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOIN_POLICY_OPEN: _ClassVar[JoinPolicy]
    JOIN_POLICY_INVITE: _ClassVar[JoinPolicy]

class Codec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODEC_FP32: _ClassVar[Codec]
    CODEC_FP16: _ClassVar[Codec]
    CODEC_INT8: _ClassVar[Codec]
JOIN_POLICY_OPEN: JoinPolicy
JOIN_POLICY_INVITE: JoinPolicy
CODEC_FP32: Codec
CODEC_FP16: Codec
CODEC_INT8: Codec

class Envelope(_message.Message):
    __slots__ = ("schema_version", "kind", "payload", "author", "public_key", "signature")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Envelope.Kind]
        GROUP_RECORD: _ClassVar[Envelope.Kind]
        GROUP_INDEX: _ClassVar[Envelope.Kind]
        MEMBER_HEARTBEAT: _ClassVar[Envelope.Kind]
        UPDATE_ANNOUNCE: _ClassVar[Envelope.Kind]
        MEMBER_LEFT: _ClassVar[Envelope.Kind]
        JOIN_REQUEST: _ClassVar[Envelope.Kind]
        JOIN_RESPONSE: _ClassVar[Envelope.Kind]
        INVITE: _ClassVar[Envelope.Kind]
        GROUP_SPLIT: _ClassVar[Envelope.Kind]
        MERGE_OFFER: _ClassVar[Envelope.Kind]
    KIND_UNSPECIFIED: Envelope.Kind
    GROUP_RECORD: Envelope.Kind
    GROUP_INDEX: Envelope.Kind
    MEMBER_HEARTBEAT: Envelope.Kind
    UPDATE_ANNOUNCE: Envelope.Kind
    MEMBER_LEFT: Envelope.Kind
    JOIN_REQUEST: Envelope.Kind
    JOIN_RESPONSE: Envelope.Kind
    INVITE: Envelope.Kind
    GROUP_SPLIT: Envelope.Kind
    MERGE_OFFER: Envelope.Kind
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    kind: Envelope.Kind
    payload: bytes
    author: bytes
    public_key: bytes
    signature: bytes
    def __init__(self, schema_version: _Optional[int] = ..., kind: _Optional[_Union[Envelope.Kind, str]] = ..., payload: _Optional[bytes] = ..., author: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("accuracy", "loss", "samples", "rounds_per_minute")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    loss: float
    samples: int
    rounds_per_minute: float
    def __init__(self, accuracy: _Optional[float] = ..., loss: _Optional[float] = ..., samples: _Optional[int] = ..., rounds_per_minute: _Optional[float] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("peer_id", "joined_at", "last_seen", "addrs")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    JOINED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    peer_id: bytes
    joined_at: float
    last_seen: float
    addrs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, peer_id: _Optional[bytes] = ..., joined_at: _Optional[float] = ..., last_seen: _Optional[float] = ..., addrs: _Optional[_Iterable[str]] = ...) -> None: ...

class GroupRecord(_message.Message):
    __slots__ = ("group_id", "task", "name", "model_fingerprint", "policy", "capacity", "round", "members", "metrics", "version", "updated_at", "expires_at", "creator", "nonce", "model_hash", "previous", "leader")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    task: str
    name: str
    model_fingerprint: str
    policy: JoinPolicy
    capacity: int
    round: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    metrics: Metrics
    version: int
    updated_at: float
    expires_at: float
    creator: bytes
    nonce: bytes
    model_hash: bytes
    previous: bytes
    leader: bytes
    def __init__(self, group_id: _Optional[str] = ..., task: _Optional[str] = ..., name: _Optional[str] = ..., model_fingerprint: _Optional[str] = ..., policy: _Optional[_Union[JoinPolicy, str]] = ..., capacity: _Optional[int] = ..., round: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., version: _Optional[int] = ..., updated_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., creator: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., model_hash: _Optional[bytes] = ..., previous: _Optional[bytes] = ..., leader: _Optional[bytes] = ...) -> None: ...

class IndexEntry(_message.Message):
    __slots__ = ("group_id", "expires_at")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    expires_at: float
    def __init__(self, group_id: _Optional[str] = ..., expires_at: _Optional[float] = ...) -> None: ...

class GroupIndex(_message.Message):
    __slots__ = ("task", "entries", "updated_at", "expires_at")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    task: str
    entries: _containers.RepeatedCompositeFieldContainer[IndexEntry]
    updated_at: float
    expires_at: float
    def __init__(self, task: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[IndexEntry, _Mapping]]] = ..., updated_at: _Optional[float] = ..., expires_at: _Optional[float] = ...) -> None: ...

class MemberHeartbeat(_message.Message):
    __slots__ = ("group_id", "round", "sent_at", "metrics", "model_hash", "addrs", "seq", "record_version", "record_digest", "bytes_in", "bytes_out", "heard")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORD_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    HEARD_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    round: int
    sent_at: float
    metrics: Metrics
    model_hash: bytes
    addrs: _containers.RepeatedScalarFieldContainer[str]
    seq: int
    record_version: int
    record_digest: bytes
    bytes_in: int
    bytes_out: int
    heard: HeardDirectly
    def __init__(self, group_id: _Optional[str] = ..., round: _Optional[int] = ..., sent_at: _Optional[float] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., model_hash: _Optional[bytes] = ..., addrs: _Optional[_Iterable[str]] = ..., seq: _Optional[int] = ..., record_version: _Optional[int] = ..., record_digest: _Optional[bytes] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., heard: _Optional[_Union[HeardDirectly, _Mapping]] = ...) -> None: ...

class HeardDirectly(_message.Message):
    __slots__ = ("authors",)
    AUTHORS_FIELD_NUMBER: _ClassVar[int]
    authors: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, authors: _Optional[_Iterable[bytes]] = ...) -> None: ...

class UpdateAnnounce(_message.Message):
    __slots__ = ("group_id", "round", "samples", "metrics", "content_hash", "size", "codec", "inline_blob", "model_fingerprint", "base_hash", "sent_at", "label_counts", "seq", "manifest_hash")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    INLINE_BLOB_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    BASE_HASH_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_HASH_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    round: int
    samples: int
    metrics: Metrics
    content_hash: bytes
    size: int
    codec: Codec
    inline_blob: bytes
    model_fingerprint: str
    base_hash: bytes
    sent_at: float
    label_counts: _containers.RepeatedScalarFieldContainer[int]
    seq: int
    manifest_hash: bytes
    def __init__(self, group_id: _Optional[str] = ..., round: _Optional[int] = ..., samples: _Optional[int] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., content_hash: _Optional[bytes] = ..., size: _Optional[int] = ..., codec: _Optional[_Union[Codec, str]] = ..., inline_blob: _Optional[bytes] = ..., model_fingerprint: _Optional[str] = ..., base_hash: _Optional[bytes] = ..., sent_at: _Optional[float] = ..., label_counts: _Optional[_Iterable[int]] = ..., seq: _Optional[int] = ..., manifest_hash: _Optional[bytes] = ...) -> None: ...

class GroupSplit(_message.Message):
    __slots__ = ("group_id", "round", "stay", "leave", "new_group_id", "new_creator", "nonce", "separation", "sent_at", "seq")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STAY_FIELD_NUMBER: _ClassVar[int]
    LEAVE_FIELD_NUMBER: _ClassVar[int]
    NEW_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_CREATOR_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SEPARATION_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    round: int
    stay: _containers.RepeatedScalarFieldContainer[bytes]
    leave: _containers.RepeatedScalarFieldContainer[bytes]
    new_group_id: str
    new_creator: bytes
    nonce: bytes
    separation: float
    sent_at: float
    seq: int
    def __init__(self, group_id: _Optional[str] = ..., round: _Optional[int] = ..., stay: _Optional[_Iterable[bytes]] = ..., leave: _Optional[_Iterable[bytes]] = ..., new_group_id: _Optional[str] = ..., new_creator: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., separation: _Optional[float] = ..., sent_at: _Optional[float] = ..., seq: _Optional[int] = ...) -> None: ...

class MemberLeft(_message.Message):
    __slots__ = ("group_id", "sent_at", "reason", "seq")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    sent_at: float
    reason: str
    seq: int
    def __init__(self, group_id: _Optional[str] = ..., sent_at: _Optional[float] = ..., reason: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class MergeOffer(_message.Message):
    __slots__ = ("group_id", "seq", "sent_at", "part_record", "other_digest", "own_score", "other_score", "live_members")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    PART_RECORD_FIELD_NUMBER: _ClassVar[int]
    OTHER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    OWN_SCORE_FIELD_NUMBER: _ClassVar[int]
    OTHER_SCORE_FIELD_NUMBER: _ClassVar[int]
    LIVE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    seq: int
    sent_at: float
    part_record: bytes
    other_digest: bytes
    own_score: float
    other_score: float
    live_members: int
    def __init__(self, group_id: _Optional[str] = ..., seq: _Optional[int] = ..., sent_at: _Optional[float] = ..., part_record: _Optional[bytes] = ..., other_digest: _Optional[bytes] = ..., own_score: _Optional[float] = ..., other_score: _Optional[float] = ..., live_members: _Optional[int] = ...) -> None: ...

class GroupsQuery(_message.Message):
    __slots__ = ("task", "limit")
    TASK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    task: str
    limit: int
    def __init__(self, task: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GroupsAnswer(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, records: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TensorBlob(_message.Message):
    __slots__ = ("name", "shape", "codec", "scale", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    codec: Codec
    scale: float
    data: bytes
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., codec: _Optional[_Union[Codec, str]] = ..., scale: _Optional[float] = ..., data: _Optional[bytes] = ...) -> None: ...

class ModelBlob(_message.Message):
    __slots__ = ("model_fingerprint", "tensors")
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    model_fingerprint: str
    tensors: _containers.RepeatedCompositeFieldContainer[TensorBlob]
    def __init__(self, model_fingerprint: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[TensorBlob, _Mapping]]] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("content_hash", "offset")
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    content_hash: bytes
    offset: int
    def __init__(self, content_hash: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class TransferResponse(_message.Message):
    __slots__ = ("status", "total_size", "error")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[TransferResponse.Status]
        NOT_FOUND: _ClassVar[TransferResponse.Status]
        BAD_REQUEST: _ClassVar[TransferResponse.Status]
        BUSY: _ClassVar[TransferResponse.Status]
    OK: TransferResponse.Status
    NOT_FOUND: TransferResponse.Status
    BAD_REQUEST: TransferResponse.Status
    BUSY: TransferResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status: TransferResponse.Status
    total_size: int
    error: str
    def __init__(self, status: _Optional[_Union[TransferResponse.Status, str]] = ..., total_size: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SwarmRequest(_message.Message):
    __slots__ = ("content_hash", "want_manifest", "chunks")
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    WANT_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    content_hash: bytes
    want_manifest: bool
    chunks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, content_hash: _Optional[bytes] = ..., want_manifest: _Optional[bool] = ..., chunks: _Optional[_Iterable[int]] = ...) -> None: ...

class SwarmResponse(_message.Message):
    __slots__ = ("status", "total_size", "chunk_size", "chunk_hashes", "have", "error")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[SwarmResponse.Status]
        NOT_FOUND: _ClassVar[SwarmResponse.Status]
        BAD_REQUEST: _ClassVar[SwarmResponse.Status]
        BUSY: _ClassVar[SwarmResponse.Status]
    OK: SwarmResponse.Status
    NOT_FOUND: SwarmResponse.Status
    BAD_REQUEST: SwarmResponse.Status
    BUSY: SwarmResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_HASHES_FIELD_NUMBER: _ClassVar[int]
    HAVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status: SwarmResponse.Status
    total_size: int
    chunk_size: int
    chunk_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    have: bytes
    error: str
    def __init__(self, status: _Optional[_Union[SwarmResponse.Status, str]] = ..., total_size: _Optional[int] = ..., chunk_size: _Optional[int] = ..., chunk_hashes: _Optional[_Iterable[bytes]] = ..., have: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("group_id", "model_fingerprint", "invite", "addrs", "sent_at")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    INVITE_FIELD_NUMBER: _ClassVar[int]
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    model_fingerprint: str
    invite: bytes
    addrs: _containers.RepeatedScalarFieldContainer[str]
    sent_at: float
    def __init__(self, group_id: _Optional[str] = ..., model_fingerprint: _Optional[str] = ..., invite: _Optional[bytes] = ..., addrs: _Optional[_Iterable[str]] = ..., sent_at: _Optional[float] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("status", "reason", "leader", "record", "leader_addrs")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ADMITTED: _ClassVar[JoinResponse.Status]
        REFUSED: _ClassVar[JoinResponse.Status]
        REDIRECT: _ClassVar[JoinResponse.Status]
        FULL: _ClassVar[JoinResponse.Status]
        NOT_MEMBER: _ClassVar[JoinResponse.Status]
    ADMITTED: JoinResponse.Status
    REFUSED: JoinResponse.Status
    REDIRECT: JoinResponse.Status
    FULL: JoinResponse.Status
    NOT_MEMBER: JoinResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRS_FIELD_NUMBER: _ClassVar[int]
    status: JoinResponse.Status
    reason: str
    leader: bytes
    record: bytes
    leader_addrs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[_Union[JoinResponse.Status, str]] = ..., reason: _Optional[str] = ..., leader: _Optional[bytes] = ..., record: _Optional[bytes] = ..., leader_addrs: _Optional[_Iterable[str]] = ...) -> None: ...

class Invite(_message.Message):
    __slots__ = ("group_id", "invitee", "expires_at", "nonce")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    INVITEE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    invitee: bytes
    expires_at: float
    nonce: bytes
    def __init__(self, group_id: _Optional[str] = ..., invitee: _Optional[bytes] = ..., expires_at: _Optional[float] = ..., nonce: _Optional[bytes] = ...) -> None: ...
