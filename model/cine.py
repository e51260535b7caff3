"""Cine loops: how many frames one may hold, and temporal smoothing of its probability maps.

A nerve does not jump between neighbouring frames of a scan, while the network's per-frame map flickers
with speckle. A centred moving average over `window` frames (odd; 1 = off) of the model-resolution maps
damps that flicker before thresholding. At the ends of a loop the window is cut to the frames that exist,
so the first frame averages itself and its successors only. Whether it helps on real data is measured in
docs/cine.md (benchmarks/study_smoothing.py); the service's default follows that measurement.
"""

from __future__ import annotations

import numpy as np

from model.decode.limits import check_size
from model.errors import TooManyFramesError

#: A loop's decoded frames may hold this many times the per-image pixel limit in all: decoded float32 frames
#: are kept together (smoothing needs neighbours), so this bounds a loop's memory like one image's limit does.
LOOP_PIXEL_FACTOR = 4
#: 300 frames: 10 s of cine at 30 frames/s (the service's NERVE_MAX_FRAMES and the folder CLI's --max-frames).
DEFAULT_MAX_FRAMES = 300


def check_frame_count(count: int, max_frames: int, frame_pixels: int, max_pixels: int) -> None:
    """Refuse a loop, from its header, before decoding: over `max_frames`, or over LOOP_PIXEL_FACTOR x
    `max_pixels` decoded pixels in all."""
    if count > max_frames:
        raise TooManyFramesError(f"the file has {count} frames; the limit is {max_frames} per request")
    if count * frame_pixels > LOOP_PIXEL_FACTOR * max_pixels:
        raise TooManyFramesError(
            f"{count} frames of {frame_pixels} pixels are {count * frame_pixels} pixels in all; "
            f"the limit is {LOOP_PIXEL_FACTOR * max_pixels}"
        )


class LoopBudget:
    """The frames and decoded pixels a loop may still take, charged for every frame before it is decoded.

    Headers can lie (a clip that declares one frame and holds hundreds, a TIFF whose first page is 1 x 1 and
    whose later pages are huge), so the header check alone bounds nothing: each decoder calls `admit` with
    the size of the frame it is about to decode.
    """

    def __init__(self, max_frames: int, max_pixels: int) -> None:
        self.max_frames = max_frames
        self.max_pixels = max_pixels
        self.frames = 0
        self.pixels = 0

    def check_declared(self, count: int, frame_pixels: int) -> None:
        """Refuse from the header what cannot fit (the frames decoded later are charged one by one)."""
        check_frame_count(count, self.max_frames, frame_pixels, self.max_pixels)

    def admit(self, width: int, height: int) -> None:
        """Charge one frame of width x height, or raise before it is decoded."""
        check_size(width, height, self.max_pixels)
        if self.frames + 1 > self.max_frames:
            raise TooManyFramesError(
                f"the file has more than {self.max_frames} frames; the limit is {self.max_frames} per request"
            )
        if self.pixels + width * height > LOOP_PIXEL_FACTOR * self.max_pixels:
            raise TooManyFramesError(
                f"the frames decoded so far and the next one are over {LOOP_PIXEL_FACTOR * self.max_pixels} "
                "pixels in all, the limit per request"
            )
        self.frames += 1
        self.pixels += width * height


#: Largest accepted window: 15 frames is half a second at 30 frames/s, beyond which a moving probe blurs.
MAX_WINDOW = 15


def check_window(window: int) -> int:
    """A smoothing window must be a positive odd number of frames up to MAX_WINDOW (centred needs odd)."""
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= MAX_WINDOW or window % 2 == 0:
        raise ValueError(
            f"smoothing window must be an odd whole number of frames from 1 to {MAX_WINDOW}, got {window!r}"
        )
    return window


def smooth_maps(maps: np.ndarray, window: int) -> np.ndarray:
    """(N, h, w) probability maps -> their centred moving average over `window` frames (edges truncated).

    Done with one cumulative sum, so the cost is independent of the window: O(N h w).
    """
    check_window(window)
    if window == 1 or len(maps) < 2:
        return maps.astype(np.float32, copy=True)
    radius = window // 2
    count = len(maps)
    totals = np.concatenate([np.zeros((1, *maps.shape[1:]), np.float64), np.cumsum(maps, axis=0, dtype=np.float64)])
    index = np.arange(count)
    low = np.maximum(index - radius, 0)
    high = np.minimum(index + radius + 1, count)
    sums = totals[high] - totals[low]
    return (sums / (high - low)[:, None, None]).astype(np.float32)
