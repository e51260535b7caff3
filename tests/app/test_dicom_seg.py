"""include=dicom_seg: a DICOM Segmentation object that belongs to the uploaded DICOM's study, read back with
pydicom and highdicom and checked against the answer's own masks, pixel for pixel, and against the source's
UIDs; for a loop one SEG frame per source frame, empty ones included; refused where it cannot apply."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.app.conftest import decode_png, tiff_bytes
from tests.media import dicom_bytes, loop

THRESHOLD = "0.515"  # the untrained test model's maps lie in 0.50..0.52: partial masks
LOOP = loop(4)


def post(client, data: bytes, **fields):
    return client.post("/predict", data={"image": (io.BytesIO(data), "study.dcm"), **fields})


def seg_of(answer: dict) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(base64.b64decode(answer["dicom_seg"])))


def seg_frames(seg: pydicom.Dataset) -> np.ndarray:
    pixels = seg.pixel_array
    return (pixels if pixels.ndim == 3 else pixels[None]).astype(bool)


def assert_references(seg: pydicom.Dataset, source: pydicom.Dataset) -> None:
    assert seg.Modality == "SEG" and seg.SOPClassUID == pydicom.uid.SegmentationStorage
    assert (seg.StudyInstanceUID, seg.PatientID) == (source.StudyInstanceUID, source.PatientID)
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID  # a new series in the source's study
    [series] = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    [instance] = series.ReferencedInstanceSequence
    assert (instance.ReferencedSOPInstanceUID, instance.ReferencedSOPClassUID) == (
        source.SOPInstanceUID,
        source.SOPClassUID,
    )
    [segment] = seg.SegmentSequence
    assert segment.SegmentLabel == "brachial plexus" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "36582005"  # SNOMED CT: brachial plexus


def test_a_single_frame_seg_equals_the_mask_and_references_its_source(client, app):
    data = dicom_bytes(LOOP[1])
    answer = post(client, data, threshold=THRESHOLD, include="mask_png,dicom_seg").get_json()
    seg, source = seg_of(answer), pydicom.dcmread(io.BytesIO(data))
    assert_references(seg, source)
    mask = decode_png(answer["mask_png"]) > 0
    assert 0 < mask.sum() < mask.size, "the test needs a partial mask"
    np.testing.assert_array_equal(seg_frames(seg)[0], mask)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (
        answer["model"]["name"],
        answer["model"]["version"],
    )
    read = hd.seg.segread(io.BytesIO(base64.b64decode(answer["dicom_seg"])))
    pixels = read.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    np.testing.assert_array_equal(pixels[0, ..., 0].astype(bool), mask)


@pytest.mark.parametrize("threshold", [THRESHOLD, "0.999"], ids=["partial", "all_empty"])
def test_a_loop_gives_one_seg_frame_per_source_frame(client, threshold):
    data = dicom_bytes(LOOP)
    answer = post(client, data, frames="all", threshold=threshold, include="mask_png,dicom_seg").get_json()
    seg, source = seg_of(answer), pydicom.dcmread(io.BytesIO(data))
    assert "dicom_seg" not in answer["frames"][0], "one SEG per request, not per frame"
    assert_references(seg, source)
    assert int(seg.NumberOfFrames) == answer["frame_count"] == len(LOOP)
    masks = [decode_png(frame["mask_png"]) > 0 for frame in answer["frames"]]
    np.testing.assert_array_equal(seg_frames(seg), np.stack(masks))
    for number, group in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        [source_image] = group.DerivationImageSequence[0].SourceImageSequence
        assert int(source_image.ReferencedFrameNumber) == number
        assert source_image.ReferencedSOPInstanceUID == source.SOPInstanceUID
    read = hd.seg.segread(io.BytesIO(base64.b64decode(answer["dicom_seg"])))
    pixels = read.get_pixels_by_source_frame(
        source_sop_instance_uid=source.SOPInstanceUID,
        source_frame_numbers=list(range(1, len(LOOP) + 1)),
        segment_numbers=[1],
    )
    np.testing.assert_array_equal(pixels[..., 0].astype(bool), np.stack(masks))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
@pytest.mark.parametrize("frames", ["first", "all"])
def test_the_seg_validates_with_dciodvfy(client, tmp_path, frames):
    answer = post(client, dicom_bytes(LOOP), frames=frames, threshold=THRESHOLD, include="dicom_seg").get_json()
    path = tmp_path / "seg.dcm"
    path.write_bytes(base64.b64decode(answer["dicom_seg"]))
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


@pytest.mark.parametrize(
    ("data", "path", "fields", "status", "code"),
    [
        (tiff_bytes(LOOP[0]), "/predict", {}, 400, "invalid_parameter"),
        (dicom_bytes(LOOP[0]), "/predict/batch", {}, 400, "invalid_parameter"),
    ],
    ids=["not_dicom", "batch"],
)
def test_dicom_seg_is_refused_where_it_cannot_apply(client, data, path, fields, status, code):
    field = "images" if path.endswith("batch") else "image"
    response = client.post(path, data={field: (io.BytesIO(data), "f"), "include": "dicom_seg", **fields})
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert "dicom_seg" in response.get_json()["error"]["message"]


def test_a_dicom_without_study_identity_is_refused_by_name(client):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(LOOP[0])))
    del ds.StudyInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    response = post(client, buffer.getvalue(), include="dicom_seg")
    assert response.status_code == 400 and "StudyInstanceUID" in response.get_json()["error"]["message"]
    assert post(client, buffer.getvalue()).status_code == 200, "without dicom_seg the frame is still answered"
