"""MP4 and AVI clips decoded from memory with OpenCV's bundled FFmpeg.

OpenCV (already the project's image library) reads a video from a Python stream through its FFmpeg
backend, so an uploaded clip is decoded from the request's bytes and never written to a file. The frame
size and count are checked from the container header before frames are decoded, and every frame read is
charged to the loop's budget before it is kept, since headers can lie. FFmpeg allocates a frame before its
real size is known; the decode stage's memory bound (model/decode/isolated.py) covers that.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from model.cine import LoopBudget
from model.decode.limits import check_size
from model.errors import UnreadableImageError


def video_frames(data: bytes, *, max_pixels: int, max_frames: int | None = None) -> list[np.ndarray]:
    """The frames of a clip as float32 grayscale in [0, 1]: all of them, or the first when `max_frames` is
    None. Raises TooManyFramesError over the frame or pixel limits (model/cine.py)."""
    # OpenCV does not keep the stream alive: it must outlive the capture, or reading it crashes the process.
    stream = io.BufferedReader(io.BytesIO(data))
    try:
        capture = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])
    except Exception:  # OpenCV raises SystemError/cv2.error for streams it cannot open
        raise UnreadableImageError("video could not be opened: not a readable MP4 or AVI clip") from None
    try:
        if not capture.isOpened():
            raise UnreadableImageError("video could not be opened: not a readable MP4 or AVI clip")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_size(width, height, max_pixels)
        budget = LoopBudget(max_frames or 1, max_pixels)
        if max_frames is not None:
            budget.check_declared(max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0), width * height)
        frames: list[np.ndarray] = []
        while max_frames is not None or not frames:
            ok, frame = capture.read()
            if not ok:
                break
            budget.admit(frame.shape[1], frame.shape[0])
            gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # ITU-R 601 weights
            frames.append(gray.astype(np.float32) / 255.0)
    finally:
        capture.release()
        stream.close()
    if not frames:
        raise UnreadableImageError("video has no decodable frame")
    return frames
