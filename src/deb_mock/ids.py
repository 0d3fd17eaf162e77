"""Content IDs: the sha256 of a canonical JSON, shared by base layers and stage IDs."""

from __future__ import annotations

import hashlib
import json


def canonical_id(data: object) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces): the content ID of what `data` describes."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
