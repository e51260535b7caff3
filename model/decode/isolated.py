"""The decode stage in helper processes, with a hard bound on its wall-clock time and its memory.

Decoders are C code (libjpeg, libpng, libtiff, FFmpeg, pydicom's plug-ins) that Python cannot interrupt: a
file built to keep one busy holds the calling thread until the decoder gives up, and no check between stages
can take the thread back. Ending the process that decodes can. So the service decodes in helpers: each
request thread borrows one, sends it the bytes and waits at most the request's remaining time budget; past
it, the helper is killed and replaced, and the thread is free at once. Each helper also caps its own address
space, so a file whose decoding allocates far more than its declared size (a tile larger than its image, a
clip whose frames are larger than its header says) fails with MemoryError inside the helper instead of
taking the worker's memory.

Helpers are forked from a forkserver that has imported the decoders once, so starting one is cheap and no
helper inherits the worker's threads or its network runtime. The decoded frames come back over a pipe as raw
float32 buffers, bit for bit what decoding in the worker would give.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import resource
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
import pydicom
from PIL import Image

from model.errors import ImageError, ImageTooLargeError, UnreadableImageError
from model.memory import return_large_buffers_to_the_system

#: Address space a helper may take beyond what it holds after start-up: room for a loop of frames at the
#: default limits plus the decoders' own buffers (docs/reliability.md, "Decoding").
DEFAULT_DECODE_MEMORY_BYTES = 1024 * 1024 * 1024

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["model.decode.frames"])


class DecodeTimeout(Exception):
    """The decode stage ran past its time; the helper doing it has been stopped."""


@dataclass(frozen=True)
class _Job:
    data: bytes
    max_pixels: int
    #: None: the first frame only (decode_first); else every frame, at most this many (decode_all).
    max_frames: int | None
    #: The DICOM header instead of frames (model/decode/dicom.py dicom_header).
    header: bool = False


def _cap_address_space(extra_bytes: int) -> None:
    """Limit this process to what it maps now plus `extra_bytes`, so allocations past it raise MemoryError."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra_bytes, mapped + extra_bytes))


def _decode(job: _Job) -> list[np.ndarray]:
    from model.decode.frames import decode_all, decode_first

    if job.max_frames is None:
        return [decode_first(job.data, max_pixels=job.max_pixels)]
    return decode_all(job.data, max_pixels=job.max_pixels, max_frames=job.max_frames)


def _serve(conn: Connection, memory_bytes: int) -> None:
    """A helper's loop: one job in, its frames (or its error) out, until the pipe closes."""
    return_large_buffers_to_the_system()
    if os.path.exists("/proc/self/statm"):
        _cap_address_space(memory_bytes)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        try:
            if job.header:
                from model.decode.dicom import dicom_header

                conn.send(dicom_header(job.data))
                continue
            frames = [np.ascontiguousarray(frame, dtype=np.float32) for frame in _decode(job)]
        except ImageError as exc:
            conn.send(exc)
            continue
        except MemoryError:
            conn.send(ImageTooLargeError("decoding the file needs more memory than the service allows"))
            continue
        except Exception:  # a decoder's own failure: its text is for logs, the caller gets a plain refusal
            conn.send(UnreadableImageError("the file could not be decoded: it is damaged"))
            continue
        conn.send([frame.shape for frame in frames])
        for frame in frames:
            conn.send_bytes(memoryview(frame).cast("B"))
        del job, frames  # an idle helper holds nothing of the last file


class _Helper:
    """One helper process and the worker's end of its pipe."""

    def __init__(self, memory_bytes: int) -> None:
        self.conn, child = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(target=_serve, args=(child, memory_bytes), daemon=True)
        self.process.start()
        child.close()

    def _receive(self, timeout: float | None) -> object:
        if not self.conn.poll(timeout):
            raise DecodeTimeout()
        return self.conn.recv()

    def run(self, job: _Job, timeout: float | None) -> object:
        """The job's answer: a DICOM header, or the frames (their shapes first, then each one's buffer)."""
        self.conn.send(job)
        answer = self._receive(timeout)
        if isinstance(answer, ImageError):
            raise answer
        if job.header:
            return answer
        frames = []
        for shape in answer:
            frame = np.empty(shape, np.float32)
            if not self.conn.poll(timeout):
                raise DecodeTimeout()
            self.conn.recv_bytes_into(memoryview(frame).cast("B"))
            frames.append(frame)
        return frames

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class DecodePool:
    """Helpers shared by a worker's request threads: one per concurrent decode, started on demand, reused."""

    def __init__(self, memory_bytes: int = DEFAULT_DECODE_MEMORY_BYTES) -> None:
        self.memory_bytes = memory_bytes
        self._idle: list[_Helper] = []
        self._lock = threading.Lock()

    def _borrow(self) -> _Helper:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Helper(self.memory_bytes)

    def warm_up(self) -> None:
        """Start the forkserver and one helper, and decode a tiny frame in it (the decoders' plug-ins load
        on first use), so that the first request does not pay for any of it."""
        with self._lock:
            if self._idle:
                return
        tiny = io.BytesIO()
        Image.new("L", (1, 1)).save(tiny, format="PNG")
        self.decode(tiny.getvalue(), max_pixels=1, max_frames=None, timeout=None)

    def _give_back(self, helper: _Helper) -> None:
        with self._lock:
            self._idle.append(helper)

    def decode(
        self, data: bytes, *, max_pixels: int, max_frames: int | None, timeout: float | None
    ) -> list[np.ndarray]:
        """decode_first (`max_frames` None) or decode_all in a helper, in at most `timeout` seconds (None: no
        bound). Raises the decoder's ImageError, DecodeTimeout past the time, or UnreadableImageError when the
        helper died on the file (a crash in a decoder stops only the helper)."""
        return self._run(_Job(data, max_pixels, max_frames), timeout)

    def dicom_header(self, data: bytes, *, timeout: float | None) -> pydicom.Dataset:
        """model/decode/dicom.py's dicom_header in a helper, bounded and contained as `decode` is."""
        return self._run(_Job(data, 0, None, header=True), timeout)

    def _run(self, job: _Job, timeout: float | None):
        helper = self._borrow()
        try:
            answer = helper.run(job, timeout)
        except ImageError:
            self._give_back(helper)  # a refusal leaves the helper as good as new
            raise
        except DecodeTimeout:
            helper.stop()
            raise
        except (EOFError, OSError):
            helper.stop()
            raise UnreadableImageError("the file could not be decoded: the decoder stopped on it") from None
        except BaseException:
            helper.stop()
            raise
        self._give_back(helper)
        return answer


_pools: dict[tuple[int, int], DecodePool] = {}
_pools_lock = threading.Lock()


def decode_pool(memory_bytes: int = DEFAULT_DECODE_MEMORY_BYTES) -> DecodePool:
    """This process's pool for a memory cap (a forked child gets its own: helpers belong to one parent)."""
    key = (os.getpid(), memory_bytes)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = DecodePool(memory_bytes)
        return _pools[key]
