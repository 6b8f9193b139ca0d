"""Hugging Face Hub access: fail fast when it cannot be reached, and force offline mode."""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import datasets
import huggingface_hub.constants as hub_constants

from dcft.data.errors import FIX_HINT, DataUnavailableError
from dcft.data.tasks import TaskSpec

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = frozenset({"1", "true", "yes", "on"})
REACHABILITY_TIMEOUT_S = 3.0


def offline_requested() -> bool:
    """True when the user asked the Hugging Face libraries not to use the network."""
    from_env = any(os.environ.get(var, "").strip().lower() in _TRUE for var in _OFFLINE_VARS)
    return from_env or bool(hub_constants.HF_HUB_OFFLINE)


def _endpoint() -> tuple[str, int]:
    """Host and port a Hub request would open first: the HTTPS proxy if set, else the endpoint."""
    proxy = urllib.request.getproxies().get("https")
    url = urlsplit(proxy or hub_constants.ENDPOINT)
    default_port = 443 if url.scheme == "https" else 80
    return url.hostname or "huggingface.co", url.port or default_port


def hub_reachable(timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Open (and close) one TCP connection to the Hub; no retries."""
    try:
        with socket.create_connection(_endpoint(), timeout=timeout):
            return True
    except OSError:
        return False


def load_hub_splits(spec: TaskSpec, splits: Sequence[str]) -> dict[str, datasets.Dataset]:
    """``splits`` of ``spec`` with ``datasets.load_dataset``: from the Hub when it is reachable
    and offline mode is off, else from the local Hugging Face cache (a copy an earlier online
    load left in ``HF_HOME``); neither -> ``DataUnavailableError`` at once, no retries."""
    if offline_requested():
        reason = f"offline mode is on ({' / '.join(_OFFLINE_VARS)})"
    elif not hub_reachable():
        host, port = _endpoint()
        reason = f"{host}:{port} is not reachable"
    else:
        loaded = datasets.load_dataset(spec.hub_id, spec.hub_config)
        return {split: loaded[split] for split in splits}
    try:
        with hub_offline():
            loaded = datasets.load_dataset(spec.hub_id, spec.hub_config)
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        raise DataUnavailableError(
            f"cannot load task {spec.name!r} ({_name(spec)}) from the Hugging Face Hub: "
            f"{reason}, and the local Hugging Face cache ({datasets.config.HF_DATASETS_CACHE}) "
            f"has no copy ({type(err).__name__}). {FIX_HINT}"
        ) from None
    return {split: loaded[split] for split in splits}


def hub_provenance(spec: TaskSpec, loaded: dict[str, datasets.Dataset]) -> dict[str, Any]:
    """Hub id, config and the revision the cached copy was prepared from (the commit folder of
    the ``datasets`` cache), with the cache files read per split."""
    files = {split: [f["filename"] for f in ds.cache_files] for split, ds in loaded.items()}
    first = next((paths[0] for paths in files.values() if paths), None)
    return {
        "source": "hub",
        "hub_id": spec.hub_id,
        "config": spec.hub_config,
        "revision": Path(first).parent.name if first else None,
        "files": files,
        "fingerprints": {split: ds._fingerprint for split, ds in loaded.items()},
        "warnings": [],
    }


def _name(spec: TaskSpec) -> str:
    return spec.hub_id + (f"/{spec.hub_config}" if spec.hub_config else "")


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Turn ``datasets`` and ``huggingface_hub`` offline for the duration of the block."""
    flags = [
        (hub_constants, "HF_HUB_OFFLINE"),
        (datasets.config, "HF_HUB_OFFLINE"),
        (datasets.config, "HF_DATASETS_OFFLINE"),
    ]
    saved_flags = [getattr(owner, name) for owner, name in flags]
    saved_env = {var: os.environ.get(var) for var in _OFFLINE_VARS}
    os.environ.update(dict.fromkeys(_OFFLINE_VARS, "1"))
    for owner, name in flags:
        setattr(owner, name, True)
    try:
        yield
    finally:
        for (owner, name), value in zip(flags, saved_flags, strict=True):
            setattr(owner, name, value)
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
