"""Crypto-shredding: personal fields of stored events are encrypted per subject.

Each aggregate that holds personal data is a subject with its own AES-256-GCM key, kept
in a table of the service's own database. Personal fields are encrypted when an event
is stored and stay encrypted on the event stream; the service decrypts them when it
loads an aggregate. Erasing a subject deletes its key (SQLite with secure_delete, and
the write-ahead log checkpointed) and leaves a tombstone, so the events stay where they
are, the log keeps its integrity, and the person can no longer be read anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from uuid import UUID

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, StoredEvent
from sqlalchemy.pool import StaticPool

from closedloop.eventstore.unit_of_work import ServiceStore

#: Prefix of an encrypted field value; what is left after erasure is ERASED.
TOKEN_PREFIX = "pii:v1:"  # noqa: S105 - a marker, not a secret
ERASED = ""

metadata = sa.MetaData()

subject_keys = sa.Table(
    "closedloop_subject_keys",
    metadata,
    sa.Column("subject_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

erased_subjects = sa.Table(
    "closedloop_erased_subjects",
    metadata,
    sa.Column("subject_id", sa.String(64), primary_key=True),
    sa.Column("erased_at", sa.Float, nullable=False),
)


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


class SubjectKeys:
    """The per-subject keys of one service, beside its events."""

    def __init__(self, url: str, *, schema: str = "") -> None:
        self._sqlite = url.startswith("sqlite")
        connect_args: dict[str, object] = {}
        kwargs: dict[str, Any] = {}
        if self._sqlite:
            connect_args = {"timeout": 30, "check_same_thread": False}
            if url in {"sqlite://", "sqlite:///:memory:"}:
                kwargs["poolclass"] = StaticPool
        elif schema:
            connect_args = {"options": f"-csearch_path={schema}"}
        self._engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        if self._sqlite:
            sa.event.listen(self._engine, "connect", _secure_delete)
        metadata.create_all(self._engine, checkfirst=True)
        self._cache: dict[str, bytes] = {}
        self._erased: set[str] = set()
        self._lock = threading.Lock()

    def key(self, subject_id: str, *, create: bool) -> bytes | None:
        """The subject's key; None once erased (or unknown, when not creating)."""
        cached = self._cache.get(subject_id)
        if cached is not None:
            return cached
        if subject_id in self._erased:
            return None
        with self._lock, self._engine.begin() as conn:
            row = conn.execute(
                sa.select(subject_keys.c.key).where(
                    subject_keys.c.subject_id == subject_id
                )
            ).first()
            if row is not None:
                self._cache[subject_id] = bytes(row.key)
                return self._cache[subject_id]
            gone = conn.execute(
                sa.select(erased_subjects.c.subject_id).where(
                    erased_subjects.c.subject_id == subject_id
                )
            ).first()
            if gone is not None:
                self._erased.add(subject_id)
                return None
            if not create:
                return None
            key = AESGCM.generate_key(bit_length=256)
            conn.execute(
                subject_keys.insert().values(
                    subject_id=subject_id, key=key, created_at=time.time()
                )
            )
        self._cache[subject_id] = key
        return key

    def erase(self, subject_ids: Iterable[str]) -> list[str]:
        """Deletes the keys and leaves tombstones; returns the subjects newly erased."""
        ids = sorted(set(subject_ids))
        if not ids:
            return []
        with self._lock, self._engine.begin() as conn:
            already = {
                r.subject_id
                for r in conn.execute(
                    sa.select(erased_subjects.c.subject_id).where(
                        erased_subjects.c.subject_id.in_(ids)
                    )
                )
            }
            conn.execute(
                subject_keys.delete().where(subject_keys.c.subject_id.in_(ids))
            )
            new = [i for i in ids if i not in already]
            if new:
                now = time.time()
                conn.execute(
                    erased_subjects.insert(),
                    [{"subject_id": i, "erased_at": now} for i in new],
                )
            for i in ids:
                self._cache.pop(i, None)
                self._erased.add(i)
        if self._sqlite:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return new

    def is_erased(self, subject_id: str) -> bool:
        return self.key(subject_id, create=False) is None and subject_id in self._erased

    def close(self) -> None:
        self._engine.dispose()


def _secure_delete(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class PersonalDataCipher:
    """Encrypts one field value for one subject; decrypts to "" once erased."""

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys

    def encrypt(self, subject_id: str, field: str, value: str) -> str:
        if not value or is_token(value):
            return value
        key = self.keys.key(subject_id, create=True)
        if key is None:
            return ERASED  # the subject was erased: nothing personal is stored again
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, value.encode(), _aad(subject_id, field))
        return TOKEN_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, subject_id: str, field: str, value: str) -> str:
        if not is_token(value):
            return value
        key = self.keys.key(subject_id, create=False)
        if key is None:
            return ERASED
        raw = base64.urlsafe_b64decode(value[len(TOKEN_PREFIX) :])
        try:
            return (
                AESGCM(key)
                .decrypt(raw[:12], raw[12:], _aad(subject_id, field))
                .decode()
            )
        except InvalidTag:
            return ERASED


def _aad(subject_id: str, field: str) -> bytes:
    return f"{subject_id}:{field}".encode()


class PersonalDataMapper(Mapper[UUID]):
    """Encrypts declared fields on the way into the store, decrypts on the way out.

    With `decrypt=False` it leaves them encrypted: the relay publishes through such a
    mapper, so the event stream never carries personal data in the clear.
    """

    def __init__(
        self,
        *args: Any,
        personal: Mapping[type[Any], tuple[str, ...]],
        personal_cipher: PersonalDataCipher,
        decrypt: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.personal = dict(personal)
        self.personal_cipher = personal_cipher
        self.decrypts = decrypt
        self._fields_of: dict[type[Any], tuple[str, ...]] = {}

    def _fields(self, event_class: type[Any]) -> tuple[str, ...]:
        """The personal fields of an event class (looked up once per class)."""
        found = self._fields_of.get(event_class)
        if found is None:
            found = next(
                (
                    self.personal[cls]
                    for cls in event_class.__mro__
                    if cls in self.personal
                ),
                (),
            )
            self._fields_of[event_class] = found
        return found

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        fields = self._fields(type(domain_event))
        if not fields:
            return super().to_stored_event(domain_event)
        subject = str(domain_event.originator_id)
        clone = object.__new__(type(domain_event))
        state = dict(vars(domain_event))
        for name in fields:
            if isinstance(state.get(name), str):
                state[name] = self.personal_cipher.encrypt(subject, name, state[name])
        object.__setattr__(clone, "__dict__", state)
        return super().to_stored_event(clone)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        domain_event = super().to_domain_event(stored_event)
        if self.decrypts:
            fields = self._fields(type(domain_event))
            subject = str(domain_event.originator_id)
            state = vars(domain_event)
            for name in fields:
                value = state.get(name)
                if isinstance(value, str):
                    state[name] = self.personal_cipher.decrypt(subject, name, value)
        return domain_event

    def for_wire(self) -> PersonalDataMapper:
        """The same mapper, leaving personal fields encrypted."""
        return PersonalDataMapper(
            self.transcoder,
            compressor=self.compressor,
            cipher=self.cipher,
            personal=self.personal,
            personal_cipher=self.personal_cipher,
            decrypt=False,
        )


class PersonalDataApplication(ServiceStore):
    """An eventsourcing application whose declared personal fields are crypto-shredded.

    Subclasses set `personal_data` to {event class: (field, ...)}. The keys live in the
    database named by the env setting SUBJECT_KEYS_URL (SQLAlchemy URL); without it,
    in memory (unit tests).
    """

    personal_data: ClassVar[Mapping[type[Any], tuple[str, ...]]] = {}

    def construct_mapper(self) -> Mapper[UUID]:
        url = self.env.get("SUBJECT_KEYS_URL") or "sqlite://"
        schema = self.env.get("SUBJECT_KEYS_SCHEMA") or ""
        self.subject_keys = SubjectKeys(url, schema=schema)
        return self.factory.mapper(
            transcoder=self.construct_transcoder(),
            mapper_class=_mapper_class(self.personal_data, self.subject_keys),
        )

    def erase_subjects(self, aggregate_ids: Iterable[UUID]) -> list[str]:
        """Shreds the aggregates' personal data and drops them from the cache."""
        aggregate_ids = list(aggregate_ids)
        ids = [str(i) for i in aggregate_ids]
        erased = self.subject_keys.erase(ids)
        cache = self.repository.cache
        if cache is not None:
            for aggregate_id in aggregate_ids:
                with contextlib.suppress(KeyError):
                    cache.get(aggregate_id, evict=True)
        return erased

    def close(self) -> None:
        super().close()
        self.subject_keys.close()


def _mapper_class(
    personal: Mapping[type[Any], tuple[str, ...]], keys: SubjectKeys
) -> type[PersonalDataMapper]:
    cipher = PersonalDataCipher(keys)

    class BoundPersonalDataMapper(PersonalDataMapper):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, personal=personal, personal_cipher=cipher, **kwargs)

    return BoundPersonalDataMapper
