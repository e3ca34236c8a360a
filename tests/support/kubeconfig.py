"""Write kubeconfig files that point kubernetes-asyncio at a test API server.

Typical use::

    path = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token)
    api = await config.new_client_from_config(config_file=str(path), context="test")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def write_kubeconfig(
    path: str | os.PathLike[str],
    server_url: str,
    token: str,
    context: str = "test",
    *,
    namespace: str | None = None,
) -> Path:
    """Write a single-context kubeconfig (cluster ``server_url``, user with a bearer
    ``token``, ``current-context: context``) to ``path``, mode 0600, and return the path.

    A plain ``http://`` URL is fine: kubernetes-asyncio then talks HTTP without TLS.
    ``namespace`` sets the context's default namespace.
    """
    user = f"{context}-user"
    context_entry: dict[str, Any] = {"cluster": context, "user": user}
    if namespace is not None:
        context_entry["namespace"] = namespace
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": context_entry}],
        "current-context": context,
        "preferences": {},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    target.chmod(0o600)
    return target
