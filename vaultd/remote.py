"""The one way vaultd talks to a provider the user configured (an embedding or chat
endpoint): a JSON POST with an optional bearer key from the environment. Stdlib only."""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any

from vaultd.errors import ModelError


def post_json(url: str, body: dict[str, Any], *, api_key_env: str, what: str,
              timeout: float) -> Any:
    """POST `body` as JSON and return the decoded answer. `what` names the provider in
    errors ("the embedding provider", "the chat model"); every failure is a ModelError."""
    headers = {"Content-Type": "application/json"}
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise ModelError(f"{what}: environment variable {api_key_env} (api_key_env) is "
                             "not set")
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace")
        raise ModelError(f"{url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise ModelError(f"cannot reach {what} at {url}: {exc}") from exc
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ModelError(f"{url}: answer is not JSON ({exc})") from exc
