"""bench.large's client in a process of its own, so that the bench's process holds the
daemon (and the simulated hosts), not the client too: upload a file, then one call naming it.

    python -m bench.large_client CREDENTIALS_DIR FILE METHOD PARAMS_JSON

Every "@upload" string in PARAMS_JSON becomes the upload's id. Prints one JSON line: the
call's result and the seconds from the first chunk to the answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

PLACEHOLDER = "@upload"


def _named(params: Any, upload_id: str) -> Any:
    """`params` with the placeholder replaced by the upload's id, at any depth."""
    if params == PLACEHOLDER:
        return upload_id
    if isinstance(params, dict):
        return {k: _named(v, upload_id) for k, v in params.items()}
    if isinstance(params, list):
        return [_named(v, upload_id) for v in params]
    return params


async def _run(credentials: Path, payload: Path, method: str, params: Any) -> dict[str, Any]:
    from bifente.client.credentials import Credentials

    (creds,) = Credentials.load_all(credentials)
    async with await creds.connect() as client:
        start = time.perf_counter()
        upload_id = await client.upload(payload)  # read from the file a chunk at a time
        result = await client.call(method, _named(params, upload_id), timeout=600)
        return {"result": result, "seconds": time.perf_counter() - start}


def main() -> int:
    """Run the upload and the call; exit 1 with the error on stderr if either fails."""
    credentials, payload, method, params = sys.argv[1:5]
    out = asyncio.run(_run(Path(credentials), Path(payload), method, json.loads(params)))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
