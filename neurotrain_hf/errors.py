"""Errors that reach users as one line: the file, the key or sample, the bad value and what is allowed."""

from __future__ import annotations

import re


class NeuroTrainError(Exception):
    """Base error; the CLI and recipes print its message alone and exit with code 2."""

    exit_code = 2


class ConfigError(NeuroTrainError, ValueError):
    """A configuration file or override is invalid."""


class RegistryError(NeuroTrainError, KeyError):
    """An unknown or duplicate registered name."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain line.
        return str(self.args[0]) if self.args else ""


class DataError(NeuroTrainError, ValueError):
    """A dataset folder or sample is missing or malformed."""


class TrainingHaltedError(NeuroTrainError, RuntimeError):
    """Training stopped on purpose (non-finite loss, broken launch); the last good checkpoint is kept."""


class PeerLostError(NeuroTrainError, RuntimeError):
    """Another process of a distributed run died or vanished (its node's log says why)."""


# what torch's gloo/NCCL backends say when a peer's connection drops (they raise plain RuntimeErrors)
_PEER_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "communicator was aborted",
    "Timed out waiting",  # gloo, after [training] ddp_timeout seconds without the peer
)


_SOURCE = re.compile(r"^\[[^\]]*\.(cc|cpp):\d+\] ")  # gloo's "[.../pair.cc:561] " prefix


def peer_lost(exc: BaseException) -> PeerLostError | None:
    """A one-line error for a collective that failed because another process is gone, else None."""
    import torch.distributed as dist

    text = str(exc)
    if isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError) and any(s in text for s in _PEER_LOST)
    ):
        return PeerLostError(
            f"lost contact with another process of this distributed run ({_SOURCE.sub('', first_line(exc))[:160]}); this "
            "process stops too: the first error is in the log of the node that stopped"
        )
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
