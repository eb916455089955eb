"""The shared medical record (DMP) methods of the API (registered in edged/api/methods.py)."""

from __future__ import annotations

from edged.api.method import Method

__all__ = ["METHODS"]

METHODS: list[Method] = []
