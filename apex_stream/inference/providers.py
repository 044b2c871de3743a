"""onnxruntime sessions on the best execution provider that really works, and proof of where
the nodes ran.

onnxruntime-gpu lists TensorRT and CUDA in ``get_available_providers()`` even where their
libraries or the device are missing; asking for CUDA then prints an error on the native stderr
and quietly runs on the CPU. So every session here is checked against ``get_providers()`` and
each provider that dropped out is logged (logger ``apex_stream.inference``) with its reason.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from ..errors import ApexStreamError

log = logging.getLogger("apex_stream.inference")

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_ORDER = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = frozenset({TENSORRT, CUDA})
Device = Literal["auto", "cpu", "cuda"]
DEVICE_ORDER: dict[str, tuple[str, ...]] = {
    "auto": DEFAULT_ORDER,
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SOURCE = re.compile(r"^\S+\.(?:cc|cpp|h):\d+ [^(]*\([^)]*\)\s*")  # "/src/x.cc:729 void f(...) "
_KEYWORD = {TENSORRT: "tensorrt", CUDA: "cuda"}


class InferenceSetupError(ApexStreamError):
    """onnxruntime cannot run the model even on the CPU (a corrupt or unsupported model)."""


@dataclass(frozen=True)
class ProviderChoice:
    """Providers asked for, providers the session really uses, and why each other one dropped."""

    requested: tuple[str, ...]
    active: tuple[str, ...]
    fallbacks: dict[str, str] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        """The provider that runs the nodes (onnxruntime lists it first)."""
        return self.active[0]


def select_providers(preferred: Sequence[str] = DEFAULT_ORDER) -> list[str]:
    """The preferred providers compiled into this onnxruntime build, in the preferred order.

    Compiled in does not mean working: see :func:`create_session`."""
    available = set(ort.get_available_providers())
    return [p for p in dict.fromkeys(preferred) if p in available]


def create_session(
    model: bytes | str | Path,
    *,
    device: Device = "auto",
    intra_op_num_threads: int = 1,
    profile_prefix: str | None = None,
) -> tuple[ort.InferenceSession, ProviderChoice]:
    """A session on the first provider of ``device``'s order that initialises, CPU at worst.

    ``intra_op_num_threads`` defaults to 1: the host has 2 cores shared with the rest of the
    pipeline. ``profile_prefix`` turns on onnxruntime's profiler (used by :func:`node_placement`).
    """
    if device not in DEVICE_ORDER:
        raise ValueError(f"device must be one of {sorted(DEVICE_ORDER)}, not {device!r}")
    requested = DEVICE_ORDER[device]
    candidates = select_providers(requested)
    built = ", ".join(ort.get_available_providers())
    fallbacks = {
        p: f"not compiled into this onnxruntime build (it has {built}); the `gpu` extra has it"
        for p in requested
        if p not in candidates
    }
    if CPU not in candidates:
        candidates.append(CPU)
    options = _session_options(intra_op_num_threads, profile_prefix)
    source = os.fspath(model) if isinstance(model, str | Path) else model
    session = _open(source, options, candidates, fallbacks)
    choice = ProviderChoice(requested, tuple(session.get_providers()), fallbacks)
    log.info("onnxruntime session on %s (requested %s)", choice.provider, ", ".join(requested))
    for provider, reason in fallbacks.items():
        log.warning("onnxruntime: %s dropped: %s", provider, reason)
    return session, choice


def _open(
    source: bytes | str,
    options: ort.SessionOptions,
    candidates: list[str],
    fallbacks: dict[str, str],
) -> ort.InferenceSession:
    """Create the session, dropping each GPU provider that fails (recorded in ``fallbacks``)."""
    while True:
        with _native_stderr() as native:
            try:
                # enable_fallback=0: a provider that fails raises here instead of onnxruntime
                # printing to stdout and retrying on the CPU alone, so CUDA is tried after TensorRT.
                session = ort.InferenceSession(
                    source, options, providers=candidates, enable_fallback=0
                )
                error = ""
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises plain Exceptions
                error = str(exc).strip()
        if native:
            log.debug("onnxruntime stderr while creating the session:\n%s", "\n".join(native))
        if not error:
            break
        failed = [p for p in candidates if p != CPU]
        if not failed:
            raise InferenceSetupError(f"onnxruntime cannot load the model on the CPU: {error}")
        culprit = next((p for p in failed if _KEYWORD[p] in error.lower()), failed[0])
        fallbacks[culprit] = "failed to initialise: " + _reason(culprit, [error, *native])
        candidates.remove(culprit)
    active = session.get_providers()
    for p in candidates:
        if p not in active:
            fallbacks[p] = "failed to initialise, onnxruntime fell back silently: " + _reason(
                p, native
            )
    return session


def _session_options(threads: int, profile_prefix: str | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the fallback record is our own log line
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


@contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Collect what onnxruntime's C++ logger writes to file descriptor 2 meanwhile.

    A provider library that fails to load is reported only there, never to Python; the lines
    are logged at DEBUG and their gist goes into the fallback reason."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = _ANSI.sub("", sink.read().decode(errors="replace"))
            lines.extend(line.strip() for line in text.splitlines() if line.strip())


def _reason(provider: str, messages: Sequence[str]) -> str:
    """The lines that name ``provider``, trimmed to onnxruntime's message ("Failed to ...")."""
    keyword = _KEYWORD[provider]
    found: list[str] = []
    for message in messages:
        for line in message.splitlines():
            if keyword in line.lower() or provider in line:
                start = line.find("Failed to")
                text = line[start:] if start >= 0 else _SOURCE.sub("", line)
                if text not in found:
                    found.append(text)
    if found:
        return " | ".join(found)[:600]
    return "no message from onnxruntime (CUDA/cuDNN libraries missing or no GPU visible?)"


@dataclass(frozen=True)
class NodePlacement:
    """Which provider ran each node of one profiled run (nodes after graph optimisation)."""

    choice: ProviderChoice
    nodes: dict[str, tuple[str, str]]  # node name -> (op type, provider)

    @property
    def all_on_gpu(self) -> bool:
        return bool(self.nodes) and all(p in GPU_PROVIDERS for _, p in self.nodes.values())

    def summary(self) -> dict[str, int]:
        """Number of nodes per provider."""
        counts: dict[str, int] = {}
        for _, provider in self.nodes.values():
            counts[provider] = counts.get(provider, 0) + 1
        return counts


def node_placement(
    model: bytes | str | Path, *, device: Device = "auto", rows: int = 64
) -> NodePlacement:
    """Run ``rows`` zero rows once with onnxruntime's profiler and read where each node ran.

    The profile names the provider of the kernel that actually executed every node after
    partitioning and fusion, which static op lists or log scraping cannot guarantee."""
    with tempfile.TemporaryDirectory() as folder:
        session, choice = create_session(
            model, device=device, profile_prefix=os.path.join(folder, "placement")
        )
        feeds = {
            i.name: np.zeros([d if isinstance(d, int) else rows for d in i.shape], np.float32)
            for i in session.get_inputs()
        }
        session.run(None, feeds)
        with open(session.end_profiling()) as profile:
            events = json.load(profile)
    nodes = {
        e["name"].removesuffix("_kernel_time"): (e["args"]["op_name"], e["args"]["provider"])
        for e in events
        if e.get("cat") == "Node" and "provider" in e.get("args", {})
    }
    return NodePlacement(choice, nodes)
