"""Image bytes -> the /predict result object, through model/'s own decoding, Segmenter and postprocessing.

Nothing here changes a mask: the served mask is the Segmenter's, encoded losslessly, so it equals the
mask training's evaluation scored. The API and the page both call `analyse`, so they cannot disagree.
A cine loop (`analyse_loop`) answers each frame with the very fields a single frame gets, plus its index.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from time import perf_counter

import numpy as np
from flask import current_app

from app.deadline import NO_DEADLINE, Deadline, request_deadline
from app.errors import ApiError, error_body
from app.imaging import mask_image, overlay_image, png_base64, to_uint8
from app.options import Options
from model.cine import LoopBudget
from model.decode.dicom import dicom_header
from model.decode.formats import is_dicom
from model.decode.frames import decode_all, decode_first
from model.decode.isolated import DecodeTimeout, decode_pool
from model.dicom_seg import encode_segmentation
from model.errors import ImageError
from model.postprocessing import Prediction, outer_contours
from model.rle import rle_encode
from model.segmenter import Segmenter


@dataclass(frozen=True)
class Limits:
    """What one request may cost: decoded pixels per image (and per batch group), frames per loop, the bytes
    of its answer (None: unbounded, for the CLI), its time budget, and the memory of its decode stage (None:
    decode in this thread)."""

    max_pixels: int
    max_frames: int
    max_response_bytes: int | None = None
    deadline: Deadline = NO_DEADLINE
    decode_memory_bytes: int | None = None

    @classmethod
    def from_config(cls, config: Mapping, deadline: Deadline = NO_DEADLINE) -> Limits:
        return cls(
            max_pixels=config["MAX_PIXELS"],
            max_frames=config["MAX_FRAMES"],
            max_response_bytes=config["MAX_RESPONSE_BYTES"],
            deadline=deadline,
            decode_memory_bytes=config["DECODE_MEMORY_BYTES"] if config["DECODE_ISOLATION"] else None,
        )


def decode_frames(data: bytes, limits: Limits, *, all_frames: bool) -> list[np.ndarray]:
    """The decode stage: the first frame, or every frame of a loop.

    In a helper process bounded by the request's remaining time and the decode memory cap
    (model/decode/isolated.py), so that no file can hold the thread or the worker's memory; in this thread
    only when isolation is off (tests that spy on the decoders in-process).
    """
    max_frames = limits.max_frames if all_frames else None
    if limits.decode_memory_bytes is None:
        if all_frames:
            return decode_all(data, max_pixels=limits.max_pixels, max_frames=limits.max_frames)
        return [decode_first(data, max_pixels=limits.max_pixels)]
    pool = decode_pool(limits.decode_memory_bytes)
    try:
        return pool.decode(
            data, max_pixels=limits.max_pixels, max_frames=max_frames, timeout=limits.deadline.remaining()
        )
    except DecodeTimeout:
        raise limits.deadline.exceeded("while decoding") from None


class ResponseBudget:
    """The bytes a request's answer may still take: the image fields are charged as they are encoded, so a
    request that would answer far more than it sent (every PNG field of a long loop, a batch of maximal
    images) stops with 413 response_too_large instead of building the whole answer."""

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    def charge(self, fields: dict) -> None:
        self.used += sum(len(value) for value in fields.values() if isinstance(value, str))
        if self.max_bytes is not None and self.used > self.max_bytes:
            raise ApiError(
                "response_too_large",
                f"the answer would be over {self.max_bytes} bytes; ask for fewer fields (include=) or send fewer "
                "or smaller frames",
            )


def request_limits() -> Limits:
    """The limits of the request being served: the app's configured ones and this request's deadline."""
    return Limits.from_config(current_app.config, request_deadline())


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def quality_fields(prediction: Prediction) -> dict:
    """`expected_dice` and `reliable` (model/quality.py); none for a model without a quality estimator."""
    if prediction.assessment is None:
        return {}
    return {"expected_dice": prediction.assessment.expected_dice, "reliable": prediction.assessment.reliable}


def describe(prediction: Prediction, gray: np.ndarray, include: frozenset[str]) -> dict:
    """The result fields for one prediction; optional fields only when asked for in `include`."""
    mask = prediction.mask
    result: dict = {
        "nerve_present": prediction.nerve_present,
        "nerve_probability": prediction.nerve_probability,
        **quality_fields(prediction),
        "mask_area_px": prediction.area,
        "bbox": list(prediction.bbox) if prediction.bbox else None,
        "width": prediction.width,
        "height": prediction.height,
    }
    contours = outer_contours(mask) if include & {"contours", "overlay_png"} else []
    if "mask_png" in include:
        result["mask_png"] = png_base64(mask_image(mask))
    if "rle" in include:
        result["rle"] = rle_encode(mask)
    if "contours" in include:
        result["contours"] = contours
    if "overlay_png" in include:
        result["overlay_png"] = png_base64(overlay_image(gray, mask, contours))
    if "probability_png" in include:
        result["probability_png"] = png_base64(to_uint8(prediction.probability))
    if "image_png" in include:
        result["image_png"] = png_base64(to_uint8(gray))
    return result


def _result(
    segmenter: Segmenter,
    prediction: Prediction,
    gray: np.ndarray,
    include: frozenset[str],
    decode_s: float,
    infer_s: float,
    limits: Limits,
    answer: ResponseBudget,
) -> dict:
    """describe() plus the model's identity and timings; `total` is decode + infer + encoding the outputs."""
    limits.deadline.check("encoding the result")
    encode_start = perf_counter()
    result = describe(prediction, gray, include)
    answer.charge(result)
    result["model"] = segmenter.info
    total = decode_s + infer_s + perf_counter() - encode_start
    result["timing_ms"] = {"decode": _ms(decode_s), "infer": _ms(infer_s), "total": _ms(total)}
    return result


def dicom_source(data: bytes, limits: Limits):
    """The upload's DICOM header, for include=dicom_seg; refused for any other kind of file."""
    if not is_dicom(data):
        raise ApiError("invalid_parameter", "include=dicom_seg needs a DICOM upload (it references its source)")
    if limits.decode_memory_bytes is None:
        return dicom_header(data)
    try:
        return decode_pool(limits.decode_memory_bytes).dicom_header(data, timeout=limits.deadline.remaining())
    except DecodeTimeout:
        raise limits.deadline.exceeded("while reading the DICOM header") from None


def add_dicom_seg(answer: dict, segmenter: Segmenter, source, masks: list[np.ndarray], budget: ResponseBudget):
    """Add the DICOM SEG of `masks` (one per source frame) to an answer, charged to its size budget."""
    info = segmenter.info
    encoded = base64.b64encode(encode_segmentation(source, masks, info["name"], info["version"])).decode("ascii")
    budget.charge({"dicom_seg": encoded})
    answer["dicom_seg"] = encoded


def analyse(segmenter: Segmenter, data: bytes, options: Options, limits: Limits) -> dict:
    """One image; ImageError, and ApiError when the deadline passes between stages, propagate."""
    source = dicom_source(data, limits) if "dicom_seg" in options.include else None
    limits.deadline.check("decoding")
    start = perf_counter()
    [gray] = decode_frames(data, limits, all_frames=False)
    decoded = perf_counter()
    limits.deadline.check("inference")
    prediction = segmenter.predict(gray, options.threshold)
    inferred = perf_counter()
    answer = ResponseBudget(limits.max_response_bytes)
    result = _result(segmenter, prediction, gray, options.include, decoded - start, inferred - decoded, limits, answer)
    if source is not None:
        add_dicom_seg(result, segmenter, source, [prediction.mask], answer)
    return result


def _decoded(blobs: list[bytes], limits: Limits, results: list) -> Iterator[tuple[int, np.ndarray, float]]:
    """(index, image, decode seconds) for each decodable blob; an undecodable one gets its error in place, and
    so does every image past the batch's pixel budget (a loop's: LOOP_PIXEL_FACTOR x the pixel limit)."""
    pixels = LoopBudget(len(blobs), limits.max_pixels)
    for index, data in enumerate(blobs):
        limits.deadline.check(f"decoding image {index + 1} of {len(blobs)}")
        start = perf_counter()
        try:
            [gray] = decode_frames(data, limits, all_frames=False)
            pixels.admit(gray.shape[1], gray.shape[0])
        except ImageError as exc:
            results[index] = error_body(exc.code, exc.message)
            continue
        yield index, gray, perf_counter() - start


def analyse_batch(segmenter: Segmenter, blobs: list[bytes], options: Options, limits: Limits) -> list[dict]:
    """Several images, each answered by a result or its own error, in order; over the deadline, none (the
    whole request fails: a partial batch would look like a complete one to a careless client).

    Images go to the network in groups of at most `limits.max_pixels` decoded pixels in all (a single image may
    reach that limit alone), so a batch never holds much more memory than one maximal image. A frame's
    prediction is bitwise the same alone or in a group (model/segmenter.py), and in a group `infer` is the
    group's model time shared evenly among its images.
    """
    if "dicom_seg" in options.include:
        raise ApiError(
            "invalid_parameter", "include=dicom_seg is answered by /predict (one DICOM, or a loop with frames=all)"
        )
    max_pixels, answer = limits.max_pixels, ResponseBudget(limits.max_response_bytes)
    results: list = [None] * len(blobs)
    group: list[tuple[int, np.ndarray, float]] = []

    def flush() -> None:
        limits.deadline.check(f"inference on {len(group)} image(s)")
        start = perf_counter()
        predictions = segmenter.predict_many([gray for _, gray, _ in group], options.threshold)
        infer = (perf_counter() - start) / len(group)
        for (index, gray, decode), prediction in zip(group, predictions, strict=True):
            results[index] = _result(segmenter, prediction, gray, options.include, decode, infer, limits, answer)
        group.clear()

    for item in _decoded(blobs, limits, results):
        if group and sum(gray.size for _, gray, _ in group) + item[1].size > max_pixels:
            flush()
        group.append(item)
    if group:
        flush()
    return results


def analyse_loop(segmenter: Segmenter, data: bytes, options: Options, limits: Limits, window: int) -> dict:
    """Every frame of a multi-frame file (TIFF pages, DICOM frames, clip frames) in file order, segmented in
    batches with the probability maps smoothed over `window` frames (model/cine.py).

    Each entry of `frames` has the single-frame fields plus `frame` (0-based index); its `timing_ms` holds
    the loop's decode and model time shared evenly. ImageError (including too_many_frames, over
    `limits.max_frames`) propagates.
    """
    source = dicom_source(data, limits) if "dicom_seg" in options.include else None
    start = perf_counter()
    limits.deadline.check("decoding")
    grays = decode_frames(data, limits, all_frames=True)
    decoded = perf_counter()
    limits.deadline.check(f"inference on {len(grays)} frame(s)")
    predictions = segmenter.iter_sequence(grays, options.threshold, window)
    inferred = perf_counter()
    decode_each, infer_each = (decoded - start) / len(grays), (inferred - decoded) / len(grays)
    answer = ResponseBudget(limits.max_response_bytes)
    # Each frame is answered before the next is post-processed, so a long loop's full-size maps are never
    # all held at once. A frame's `infer` is the network's time shared evenly; post-processing shows in the
    # loop's own `total`.
    masks = []  # kept only for the loop's DICOM SEG (a byte a pixel, far less than the maps)
    frames = []
    for index, (prediction, gray) in enumerate(zip(predictions, grays, strict=True)):
        result = _result(segmenter, prediction, gray, options.include, decode_each, infer_each, limits, answer)
        frames.append({"frame": index, **result})
        if source is not None:
            masks.append(prediction.mask)
    loop = {
        "frame_count": len(frames),
        "smoothing_window": window,
        "frames": frames,
        "timing_ms": {
            "decode": _ms(decoded - start),
            "infer": _ms(inferred - decoded),
            "total": _ms(perf_counter() - start),
        },
    }
    if source is not None:
        add_dicom_seg(loop, segmenter, source, masks, answer)
    return loop
