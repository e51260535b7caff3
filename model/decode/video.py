"""MP4 and AVI clips decoded from memory with OpenCV's bundled FFmpeg.

OpenCV (already the project's image library) reads a video from a Python stream through its FFmpeg
backend, so an uploaded clip is decoded from the request's bytes and never written to a file. The frame
size and count are checked from the container header before frames are decoded; the count is checked
again while reading, since headers can lie.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from model.cine import check_frame_count
from model.decode.limits import check_size
from model.errors import UnreadableImageError


def video_frames(data: bytes, *, max_pixels: int, max_frames: int | None = None) -> list[np.ndarray]:
    """The frames of a clip as float32 grayscale in [0, 1]: all of them, or the first when `max_frames` is
    None. Raises TooManyFramesError over the frame or pixel limits (model/cine.py)."""
    # OpenCV does not keep the stream alive: it must outlive the capture, or reading it crashes the process.
    stream = io.BufferedReader(io.BytesIO(data))
    try:
        capture = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])
    except Exception as exc:  # OpenCV raises SystemError/cv2.error for streams it cannot open
        raise UnreadableImageError(f"video could not be opened: {exc}") from None
    try:
        if not capture.isOpened():
            raise UnreadableImageError("video could not be opened: not a readable MP4 or AVI clip")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_size(width, height, max_pixels)
        limit = 1 if max_frames is None else max_frames
        if max_frames is not None:
            check_frame_count(
                max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0), max_frames, width * height, max_pixels
            )
        frames: list[np.ndarray] = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if len(frames) == limit:
                if max_frames is None:
                    break
                check_frame_count(limit + 1, max_frames, width * height, max_pixels)  # raises
            check_size(frame.shape[1], frame.shape[0], max_pixels)
            gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # ITU-R 601 weights
            frames.append(gray.astype(np.float32) / 255.0)
    finally:
        capture.release()
        stream.close()
    if not frames:
        raise UnreadableImageError("video has no decodable frame")
    return frames
