"""What ``app generate`` remembers about the app it made, next to the credential.

``secrets/<source>.app.json`` (no secret in it): object id, display name, credential type,
file, key id, thumbprint and expiry.  ``app show`` and ``app check`` read the expiry of a
client secret from here (an app cannot read its own registration without
Application.Read.All); ``app remove`` deletes only the files listed here.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from attrs import asdict, define, fields

from gateway.provision.files import remove_file, write_private

__all__ = ["AppRecord", "record_path", "read_record", "write_record", "remove_record", "iso",
           "from_iso", "SECRETS_DIR"]

SECRETS_DIR = "secrets"


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> float:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


@define
class AppRecord:
    source: str
    tenant: str
    tenant_guid: str | None
    client_id: str
    object_id: str
    display_name: str
    credential: str
    """``certificate`` or ``secret``."""
    credential_file: str
    """Relative to the configuration file, as written into it."""
    key_id: str | None
    thumbprint: str | None
    expires: str
    """``endDateTime`` of the credential (ISO 8601, UTC)."""
    created: str

    def expires_at(self) -> float:
        return from_iso(self.expires)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def record_path(config_dir: Path, source: str) -> Path:
    return Path(config_dir) / SECRETS_DIR / f"{source}.app.json"


def read_record(config_dir: Path, source: str) -> AppRecord | None:
    try:
        data = json.loads(record_path(config_dir, source).read_text(encoding="utf-8"))
        return AppRecord(**{a.name: data.get(a.name) for a in fields(AppRecord)})
    except (OSError, ValueError, TypeError):
        return None


def write_record(config_dir: Path, record: AppRecord) -> Path:
    path = record_path(config_dir, record.source)
    write_private(path, (json.dumps(record.to_json(), indent=2) + "\n").encode("utf-8"))
    return path


def remove_record(config_dir: Path, source: str) -> bool:
    return remove_file(record_path(config_dir, source))
