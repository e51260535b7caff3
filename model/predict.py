"""Predict every image in a folder: mask PNGs plus a CSV of presence, probability, expected Dice, area and bbox.

    python -m model.predict --input DIR --out DIR [--model model] [--threshold T] [--frames all] [--max-pixels N]
                            [--files LIST] [--shard I/N]
    python -m model.predict --merge DIR [DIR ...] --out DIR

For users with thousands of frames: frames are read and sent to the network BATCH at a time, with a progress
bar. Besides TIFF, PNG, JPEG and BMP it reads DICOM (.dcm) and MP4/AVI clips. Of a multi-frame file (TIFF
pages, DICOM frames, clip) it predicts the first frame, as POST /predict does without frames=all; with
`--frames all` every frame, one CSV row and mask each (`frame` numbers them from 0; masks of multi-frame
files are named `<stem>_f<frame>_mask.png`), within the same frame and pixel limits as the API's loops. An
image over `--max-pixels` (default 4096 x 4096, the service's NERVE_MAX_PIXELS) is refused from its header.
Unreadable files are reported by name in the CSV's `error` column and on stderr, and the run goes on; the
exit status is 1 when any file failed.

The input is every image under `--input`, subfolders included (Kaggle `*_mask.*` files left out), or the
files `--files LIST` names, one path relative to `--input` a line. The CSV's `file` column holds that relative
path and masks keep its folders (`sub/a.tif` -> `masks/sub/a_mask.png`), so equal names in different folders
never collide; rows are in path order, whatever the order of the list.

Past one machine: `--shard I/N` predicts only the files of shard I (0 to N-1) and writes
`predictions-I-of-N.csv` instead of `predictions.csv`; `--merge` joins the N shards' folders into one that is
byte for byte what an unsharded run writes. A file's shard is a hash of its relative path, so it depends on
nothing else (docs/deploy.md, "Batch runs across machines").
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from model.artifact import MODEL_DIR, ModelArtifactError
from model.cine import DEFAULT_MAX_FRAMES, LOOP_PIXEL_FACTOR
from model.decode.formats import ACCEPTED, EXTENSIONS
from model.decode.frames import read_frames
from model.decode.limits import DEFAULT_MAX_PIXELS
from model.errors import ImageError
from model.postprocessing import Prediction
from model.quality import csv_fields
from model.rle import rle_encode

BATCH = 32
FIELDS = [
    "file",
    "frame",
    "width",
    "height",
    "nerve_present",
    "nerve_probability",
    "expected_dice",
    "reliable",
    "mask_area_px",
    "bbox",
    "rle",
    "mask_png",
    "error",
]
UNSHARDED_CSV = "predictions.csv"
SHARD_CSV = re.compile(r"predictions-(\d+)-of-(\d+)\.csv")


class UsageError(Exception):
    """A bad argument, list or shard folder: printed as `error: ...` with exit status 2, never a traceback."""


class Shard(NamedTuple):
    index: int
    count: int

    def csv_name(self) -> str:
        return f"predictions-{self.index}-of-{self.count}.csv"

    def holds(self, rel: str) -> bool:
        """Whether the file at this relative path belongs to this shard.

        A hash of the path alone, not the file's position in the sorted listing: a file then stays in its shard
        when files are added to or left out of the input, so a shard rerun later (after a failure, or once the
        archive has grown) redoes exactly its own files and never one that another shard has done. sha256
        spreads paths evenly (M files over N shards: M/N each, give or take sqrt(M/N)), and unlike Python's
        hash() it is the same in every process and on every machine."""
        digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def parse_shard(value: str) -> Shard:
    """`I/N` from the command line; argparse turns the ArgumentTypeError into a usage error (status 2)."""
    found = re.fullmatch(r"(\d+)/(\d+)", value)
    if found is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not I/N: two whole numbers with 0 <= I < N, e.g. 0/4")
    shard = Shard(int(found[1]), int(found[2]))
    if shard.count < 1:
        raise argparse.ArgumentTypeError(f"{value}: N, the number of shards, must be at least 1")
    if shard.index >= shard.count:
        raise argparse.ArgumentTypeError(f"{value}: I must be below N (shards are numbered 0 to N-1)")
    return shard


def image_files(folder: Path) -> list[str]:
    """Images under `folder`, subfolders included, Kaggle masks (`*_mask.*`) excluded: their paths relative to
    it, in path order."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in EXTENSIONS and not p.stem.endswith("_mask") and p.is_file()
    )


def listed_files(listing: Path, folder: Path) -> list[str]:
    """The files `listing` names (one path relative to `folder` a line; blank lines and `#` comments skipped),
    normalised, in path order: the order of the list does not change the output."""
    try:
        text = listing.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{listing}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{listing}: not UTF-8 text") from None
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        where = f"{listing}, line {number}: {entry}"
        rel = PurePosixPath(entry)
        if rel.is_absolute():
            raise UsageError(f"{where}: an absolute path; list paths relative to --input ({folder})")
        if ".." in rel.parts:
            raise UsageError(f"{where}: '..' leads outside --input ({folder})")
        path = folder / rel
        if not path.is_file():
            raise UsageError(f"{where}: {'a folder, not a file' if path.is_dir() else 'no such file'} in {folder}")
        name = rel.as_posix()
        if name in first_line:
            raise UsageError(f"{where}: listed twice (first on line {first_line[name]})")
        first_line[name] = number
    if not first_line:
        raise UsageError(f"{listing}: lists no files")
    return sorted(first_line)


def mask_name(rel: str, frame: int, several: bool) -> str:
    """Where a frame's mask goes, relative to --out: under masks/, in the input file's own subfolder."""
    stem = PurePosixPath(rel).with_suffix("")
    return f"masks/{stem}_f{frame:04d}_mask.png" if several else f"masks/{stem}_mask.png"


def check_mask_names(rels: list[str]) -> None:
    """Refuse two inputs that would write the same mask (`a.tif` and `a.png` in one folder).

    Checked on the whole input before sharding, so every shard refuses the same run: the two files may hash to
    different shards, where neither would see the other."""
    owner: dict[str, str] = {}
    for rel in rels:
        mask = mask_name(rel, 0, False)
        if mask in owner:
            raise UsageError(
                f"{owner[mask]} and {rel} would both write {mask}; rename one, or leave one out with --files"
            )
        owner[mask] = rel


def predict_files(
    segmenter,
    files: list[Path],
    threshold: float | None = None,
    *,
    max_frames: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[Path, int, bool, Prediction | ImageError]]:
    """(file, frame, whether the file has several frames, its Prediction or the ImageError that names the file),
    in file and frame order.

    Only first frames unless `max_frames` is given: then every frame of each file, a file over `max_frames`
    frames (or the loop pixel limit) being an error. Frames go to the network in batches of BATCH, so thousands
    of files never sit in memory together (one file's frames do, within those limits). A frame's output does
    not depend on the other frames of its batch (Segmenter), which is what lets shards batch differently from
    an unsharded run and still write the same bytes.
    """
    pending: list[tuple[Path, int, bool, np.ndarray | ImageError]] = []

    def flush() -> Iterator[tuple[Path, int, bool, Prediction | ImageError]]:
        grays = [item for *_, item in pending if not isinstance(item, ImageError)]
        predictions = iter(segmenter.predict_many(grays, threshold) if grays else [])
        for path, frame, several, item in pending:
            yield path, frame, several, item if isinstance(item, ImageError) else next(predictions)
        pending.clear()

    for path in files:
        try:
            frames = read_frames(path, max_pixels=max_pixels, max_frames=max_frames)
        except ImageError as exc:
            pending.append((path, 0, False, exc))
            continue
        for frame, gray in enumerate(frames):
            pending.append((path, frame, len(frames) > 1, gray))
            if len(pending) >= BATCH:
                yield from flush()
    yield from flush()


def write_csv(path: Path, rows: list[dict]) -> None:
    """The CSV, written whole or not at all: a shard killed while writing leaves no CSV that --merge would take
    for a finished shard."""
    partial = path.with_name(path.name + ".partial")
    # UTF-8 whatever the machine's locale, so pods with different locales write the same bytes; a file name that
    # is not UTF-8 is written as its own bytes (surrogateescape), not refused after the whole shard has run.
    with open(partial, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def predict_folder(
    segmenter,
    folder: Path,
    rels: list[str],
    out: Path,
    csv_name: str = UNSHARDED_CSV,
    threshold: float | None = None,
    *,
    max_frames: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict]:
    """Predict the files at `rels` (relative to `folder`) into `out`: their masks and the CSV `csv_name`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    rel_of = {folder / rel: rel for rel in rels}
    # tqdm, not Keras' Progbar: the serving image (onnxruntime) runs this CLI too and has no Keras.
    bar = tqdm(total=len(rels), unit="file", file=sys.stderr, disable=None)
    rows: list[dict] = []
    done: set[Path] = set()
    for path, frame, several, pred in predict_files(
        segmenter, list(rel_of), threshold, max_frames=max_frames, max_pixels=max_pixels
    ):
        rel = rel_of[path]
        if isinstance(pred, ImageError):
            bar.write(f"skipped: {pred.message}", file=sys.stderr)
            rows.append({"file": rel, "frame": frame, "error": pred.message})
        else:
            mask = mask_name(rel, frame, several)
            (out / mask).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pred.mask * np.uint8(255)).save(out / mask)
            rows.append(
                {
                    "file": rel,
                    "frame": frame,
                    "width": pred.width,
                    "height": pred.height,
                    "nerve_present": pred.nerve_present,
                    "nerve_probability": round(pred.nerve_probability, 6),
                    **csv_fields(pred.assessment),
                    "mask_area_px": pred.area,
                    "bbox": " ".join(map(str, pred.bbox or ())),
                    "rle": rle_encode(pred.mask),
                    "mask_png": mask,
                    "error": "",
                }
            )
        if path not in done:
            done.add(path)
            bar.update(1)
    bar.close()
    write_csv(out / csv_name, rows)
    return rows


def shard_csvs(folders: list[Path]) -> list[Path]:
    """Every shard's CSV (`predictions-I-of-N.csv`) in `folders`, in shard order; refused unless they are
    shards 0 to N-1 of one N, each once, so a merge never quietly leaves a shard out."""
    found: dict[int, Path] = {}
    counts: set[int] = set()
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such folder")
        csvs = sorted(p for p in folder.iterdir() if SHARD_CSV.fullmatch(p.name))
        if not csvs:
            raise UsageError(f"{folder}: no predictions-I-of-N.csv in it (a shard writes it when it has finished)")
        for path in csvs:
            index, count = (int(n) for n in SHARD_CSV.fullmatch(path.name).groups())
            if index in found:
                raise UsageError(f"{found[index]} and {path} are both shard {index}")
            found[index] = path
            counts.add(count)
    if len(counts) > 1:
        raise UsageError(f"the folders hold shards of runs with different N ({', '.join(map(str, sorted(counts)))})")
    (count,) = counts
    missing = [str(i) for i in range(count) if i not in found]
    if missing:
        raise UsageError(f"shard {', '.join(missing)} of {count} missing (no predictions-I-of-{count}.csv found)")
    if len(found) > count:
        raise UsageError(f"{found[max(found)]}: shard number {max(found)} is not below N = {count}")
    return [found[i] for i in range(count)]


def merge_shards(folders: list[Path], out: Path) -> list[dict]:
    """Join the shards' CSVs and masks into `out`: the same predictions.csv and masks/ as an unsharded run.

    Rows are put back in path order, the unsharded run's order; the sort is stable, so a file's frames keep
    their order. Masks are copied (a shard's folder may live on another volume), except where a shard wrote
    into `out` itself."""
    rows: list[tuple[dict, Path]] = []
    shard_of_file: dict[str, Path] = {}
    for path in shard_csvs(folders):
        try:
            with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames != FIELDS:
                    raise UsageError(f"{path}: not a predictions CSV (its header is not {','.join(FIELDS)})")
                for row in reader:
                    if None in row or None in row.values():
                        raise UsageError(f"{path}, line {reader.line_num}: not {len(FIELDS)} fields")
                    other = shard_of_file.setdefault(row["file"], path)
                    if other != path:
                        raise UsageError(f"{row['file']} is in both {other} and {path}")
                    rows.append((row, path.parent))
        except OSError as exc:
            raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
        except csv.Error as exc:
            raise UsageError(f"{path}: not a predictions CSV ({exc})") from None
    rows.sort(key=lambda item: item[0]["file"])
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for row, folder in rows:
        if not row["mask_png"]:
            continue
        mask = PurePosixPath(row["mask_png"])
        if mask.is_absolute() or ".." in mask.parts or mask.parts[:1] != ("masks",):
            raise UsageError(f"{folder}: mask_png {row['mask_png']!r} of {row['file']} is not under masks/")
        source, target = folder / mask, out / mask
        if not source.is_file():
            raise UsageError(f"{source}: no such file (the mask of {row['file']})")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
        except OSError as exc:
            raise UsageError(f"{target}: cannot be written ({exc.strerror})") from None
    merged = [row for row, _ in rows]
    write_csv(out / UNSHARDED_CSV, merged)
    return merged


def load_for_cli(model_dir: Path):
    """The Segmenter a command-line tool runs, or None after printing what is wrong with the artifact.

    The model is loaded (on the Keras path, TensorFlow imported) only here, so argument and folder errors answer
    before its start-up."""
    try:
        from model.segmenter import Segmenter

        return Segmenter.load(model_dir)
    except ModelArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def report(rows: list[dict], csv_path: Path) -> int:
    failed = sum(bool(r.get("error")) for r in rows)
    print(f"{len(rows) - failed} frames predicted, {failed} files failed -> {csv_path}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help=f"folder of images ({ACCEPTED}), subfolders included")
    source.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="instead of predicting: join the --out folders of all --shard runs into --out, as one unsharded run",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for predictions.csv and masks/")
    parser.add_argument(
        "--files",
        type=Path,
        metavar="LIST",
        help="predict only these files: a text file, one path relative to --input a line (# comments)",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        metavar="I/N",
        help="predict only shard I of N (0 <= I < N), into predictions-I-of-N.csv; join the shards with --merge",
    )
    parser.add_argument("--model", type=Path, default=MODEL_DIR, help="model folder (default: the shipped one)")
    parser.add_argument("--threshold", type=float, default=None, help="pixel probability cut, in (0, 1)")
    parser.add_argument(
        "--frames",
        choices=("first", "all"),
        default="first",
        help="of a multi-frame file (TIFF pages, DICOM, clip): its first frame (default) or all",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        help=f"with --frames all: most frames per file (default {DEFAULT_MAX_FRAMES}; a loop is "
        f"also capped at {LOOP_PIXEL_FACTOR} x --max-pixels in all)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest image, in pixels (default {DEFAULT_MAX_PIXELS} = 4096 x 4096, as the service's "
        "NERVE_MAX_PIXELS); a larger one is refused from its header",
    )
    args = parser.parse_args(argv)
    if args.max_frames < 1:
        parser.error("--max-frames must be at least 1")
    if args.max_pixels < 1:
        parser.error("--max-pixels must be at least 1")
    if args.threshold is not None and not 0 < args.threshold < 1:
        parser.error("--threshold must lie strictly between 0 and 1")
    if args.merge and (args.files is not None or args.shard is not None):
        parser.error("--files and --shard go with --input, not with --merge")
    try:
        if args.merge:
            return report(merge_shards(args.merge, args.out), args.out / UNSHARDED_CSV)
        if not args.input.is_dir():
            raise UsageError(f"{args.input}: no such folder")
        rels = listed_files(args.files, args.input) if args.files else image_files(args.input)
        if not rels:
            raise UsageError(f"{args.input}: no images ({ACCEPTED}) in it or its subfolders")
        check_mask_names(rels)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    csv_name = UNSHARDED_CSV
    if args.shard is not None:
        # An empty shard (few files, many shards) still writes its CSV: --merge then knows it has finished.
        rels = [rel for rel in rels if args.shard.holds(rel)]
        csv_name = args.shard.csv_name()
    segmenter = load_for_cli(args.model)
    if segmenter is None:
        return 2
    rows = predict_folder(
        segmenter,
        args.input,
        rels,
        args.out,
        csv_name,
        args.threshold,
        max_frames=args.max_frames if args.frames == "all" else None,
        max_pixels=args.max_pixels,
    )
    return report(rows, args.out / csv_name)


if __name__ == "__main__":
    sys.exit(main())
