import hashlib
import json
import os
import shutil
from collections import Counter

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from maskopt.core.errors import MaskoptError
from maskopt.data.panoptic import PanopticDataset, id_to_rgb, rgb_to_id, split_paths
from maskopt.data.synthesize import (
    PairSynthesizer,
    SynthesisConfig,
    _segments_info,
    bucket_name,
    find_person_segments,
    segment_labels,
    synthesize_split,
    truncation,
)

CONFIG = SynthesisConfig(image_size=64, min_person_area=0.002, max_truncation=0.3,
                         blur_sigma=0.8, min_mask_ratio=0.02, max_mask_ratio=0.4)


def make_pair(dataset, k=0, seed=0, test=False):
    persons, _ = find_person_segments(dataset, CONFIG.min_person_area)
    synth = PairSynthesizer(dataset, persons, CONFIG, seed, split_code=int(test),
                            test_buckets=test, one_per_background=True)
    return synth.make(k)["pair"]


def test_image_equals_background_away_from_paste_and_differs_inside(train_dataset):
    for k in range(4):
        pair = make_pair(train_dataset, k)
        untouched = pair["alpha"] == 0
        assert np.array_equal(pair["I"][untouched], pair["I_G"][untouched])
        inside = pair["M_G"]
        diff = np.abs(pair["I"].astype(int) - pair["I_G"].astype(int)).sum(-1)
        assert (diff[inside] > 0).mean() > 0.9


def test_mask_is_the_pasted_alpha_above_half(train_dataset):
    pair = make_pair(train_dataset, 1)
    assert np.array_equal(pair["M_G"], pair["alpha"] > 0.5)
    soft_edge = (pair["alpha"] > 0.01) & (pair["alpha"] < 0.99)
    assert soft_edge.any()  # the paste is blended, not a hard cut
    assert pair["mask_ratio"] == pytest.approx(pair["M_G"].mean())


def test_labels_of_image_put_the_pasted_person_on_top(train_dataset):
    pair = make_pair(train_dataset, 2)
    pasted = pair["person"]["id"]
    assert np.array_equal(pair["ids"] == pasted, pair["M_G"])
    person_index = pair["semantic"][pair["M_G"]]
    assert np.all(person_index == person_index[0])
    away = ~pair["M_G"]
    assert np.array_equal(pair["semantic"][away], pair["target_semantic"][away])
    assert pair["person"]["area"] == int(pair["M_G"].sum())


def test_bucket_edges():
    assert bucket_name(0.0) == "0-10" and bucket_name(0.0999) == "0-10"
    assert bucket_name(0.1) == "10-20" and bucket_name(0.3) == "30-40"
    assert bucket_name(0.4) == "30-40"
    with pytest.raises(ValueError):
        bucket_name(0.41)


def _tree_digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_split_is_deterministic_parallel_and_fills_all_buckets(tmp_path, sample_root):
    dataset = PanopticDataset.from_root(sample_root, "val")
    one = synthesize_split(dataset, tmp_path / "one", split="test", n_pairs=16,
                           config=CONFIG, seed=5, workers=1)
    two = synthesize_split(dataset, tmp_path / "two", split="test", n_pairs=16,
                           config=CONFIG, seed=5, workers=2)
    synthesize_split(dataset, tmp_path / "other", split="test", n_pairs=16,
                             config=CONFIG, seed=6, workers=2)
    assert one == two
    assert _tree_digest(tmp_path / "one") == _tree_digest(tmp_path / "two")
    assert _tree_digest(tmp_path / "one") != _tree_digest(tmp_path / "other")
    assert set(one["buckets"]) == {"0-10", "10-20", "20-30", "30-40"}
    ann = json.loads((tmp_path / "one" / "annotations.json").read_text())
    ratios = [a["mask_ratio"] for a in ann["annotations"]]
    assert max(ratios) <= 0.4 and min(ratios) > 0
    for a in ann["annotations"]:
        mask = np.array(Image.open(tmp_path / "one" / "masks" / a["file_name"])) > 0
        assert a["mask_ratio"] == pytest.approx(mask.mean())
        assert a["bucket"] == bucket_name(a["mask_ratio"])
    # the pairs are themselves COCO panoptic: the same reader takes them
    pairs = PanopticDataset(tmp_path / "one" / "images", tmp_path / "one" / "annotations.json",
                            tmp_path / "one" / "panoptic")
    assert len(pairs) == one["pairs"] and pairs.load(0).rgb.shape == (64, 64, 3)


# --- bad input -------------------------------------------------------------------------

@pytest.fixture
def damaged_root(tmp_path, sample_root):
    root = tmp_path / "raw"
    shutil.copytree(sample_root, root)
    image_dir, json_path, _ = split_paths(root, "train")
    files = sorted(image_dir.iterdir())
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])  # truncated JPEG
    files[1].unlink()  # annotation points at a missing file
    rgb = np.array(Image.open(files[2]))
    Image.fromarray(rgb).convert("L").save(files[2], format="JPEG")  # grayscale
    Image.fromarray(rgb).convert("CMYK").save(files[3], format="JPEG")  # CMYK
    rgba = Image.fromarray(rgb).convert("RGBA")
    rgba.save(files[4].with_suffix(".png"))  # RGBA, named as the JSON says
    ann = json.loads(json_path.read_text())
    for image in ann["images"]:
        if image["file_name"] == files[4].name:
            image["file_name"] = files[4].with_suffix(".png").name
    person_ids = ann["categories"][0]["id"]
    first = next(a for a in ann["annotations"] if a["image_id"] == 6)
    for seg in first["segments_info"]:
        if seg["category_id"] == person_ids:
            seg["area"] = 0  # a zero-area segment
    json_path.write_text(json.dumps(ann))
    return root


def test_bad_images_are_counted_skips_or_conversions_and_the_rest_goes_on(tmp_path, damaged_root):
    dataset = PanopticDataset.from_root(damaged_root, "train")
    stats = synthesize_split(dataset, tmp_path / "pairs", split="train", n_pairs=None,
                             config=CONFIG, seed=0, workers=1)
    events = stats["events"]
    assert events["skipped_unreadable_image"] >= 1
    assert events["skipped_missing_file"] >= 1
    assert events["person_zero_area"] >= 1
    assert events.get("converted_L_to_RGB", 0) + events.get("converted_CMYK_to_RGB", 0) >= 2
    assert events.get("converted_RGBA_to_RGB", 0) >= 1
    assert stats["pairs"] == 24 - events["skipped_unreadable_image"] - events[
        "skipped_missing_file"] - events.get("skipped_no_fitting_person", 0)
    assert stats["pairs"] >= 18


def test_dataset_without_persons_is_a_clear_error_and_keeps_old_output(tmp_path, sample_root):
    root = tmp_path / "raw"
    shutil.copytree(sample_root, root)
    _, json_path, _ = split_paths(root, "val")
    ann = json.loads(json_path.read_text())
    for a in ann["annotations"]:
        a["segments_info"] = [s for s in a["segments_info"] if s["category_id"] != 1]
    json_path.write_text(json.dumps(ann))
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "earlier.txt").write_text("kept")
    with pytest.raises(MaskoptError, match="no usable 'person' segment"):
        synthesize_split(PanopticDataset.from_root(root, "val"), out, split="test",
                         n_pairs=4, config=CONFIG, seed=0)
    assert (out / "earlier.txt").read_text() == "kept"


def test_broken_annotation_json_names_the_file(tmp_path, sample_root):
    root = tmp_path / "raw"
    shutil.copytree(sample_root, root)
    _, json_path, _ = split_paths(root, "val")
    json_path.write_text(json_path.read_text()[:200])
    with pytest.raises(MaskoptError, match=r"panoptic_val2017\.json: broken JSON"):
        PanopticDataset.from_root(root, "val")


def test_soft_edge_colours_do_not_leak_black(train_dataset):
    pair = make_pair(train_dataset, 3)
    edge = (pair["alpha"] > 0.05) & (pair["alpha"] < 0.5)
    gray = cv2.cvtColor(pair["I"], cv2.COLOR_RGB2GRAY).astype(float)
    bg = cv2.cvtColor(pair["I_G"], cv2.COLOR_RGB2GRAY).astype(float)
    assert np.mean(gray[edge]) > 0.5 * np.mean(bg[edge])


def test_crowd_regions_keep_their_flag_and_are_no_instance_targets(train_dataset, tmp_path,
                                                                   pairs_dir):
    from maskopt.data.pairs import PairDataset

    record = train_dataset.records[0]
    for seg in record.segments:
        seg["iscrowd"] = 1  # mark every background segment of this image as a crowd
    try:
        pair = make_pair(train_dataset, 0)
    finally:
        for seg in record.segments:
            seg["iscrowd"] = 0
    flags = {s["id"]: s["iscrowd"] for s in pair["segments_info"]}
    assert flags[pair["person"]["id"]] == 0
    assert sum(flags.values()) == len(flags) - 1 >= 1

    split = tmp_path / "test"
    shutil.copytree(pairs_dir / "test", split)
    annotations = json.loads((split / "annotations.json").read_text())
    first = annotations["annotations"][0]
    pasted = first["person"]["id"]
    for seg in first["segments_info"]:
        seg["iscrowd"] = int(seg["id"] != pasted)
    (split / "annotations.json").write_text(json.dumps(annotations))
    before = PairDataset(pairs_dir / "test")[0]
    item = PairDataset(split)[0]
    assert len(before["instances"]["labels"]) > 1  # there were background persons
    assert len(item["instances"]["labels"]) == 1  # only the pasted person
    assert torch.equal(item["semantic"], before["semantic"])  # crowd pixels keep their class


def test_pair_records_are_flat_arrays_and_slices_give_the_same_items(pairs_dir):
    """What a data-loader worker holds of annotations.json: numpy arrays, no per-pair
    dicts, and a slice of them (used to cut a split short) gives the same pairs."""
    from maskopt.data.pairs import PairDataset

    full = PairDataset(pairs_dir / "test")
    cut = PairDataset(pairs_dir / "test")
    cut.pairs = cut.pairs[2:5]
    assert len(cut) == 3
    for field in vars(full.pairs).values():
        assert isinstance(field, np.ndarray) and field.dtype != object
    for i in range(3):
        a, b = full[2 + i], cut[i]
        assert a["name"] == b["name"] and a["bucket"] == b["bucket"]
        for key in ("boxes", "labels", "masks"):
            assert torch.equal(a["instances"][key], b["instances"][key])
    assert any(len(full[i]["instances"]["labels"]) for i in range(2, 5))


def test_segments_info_matches_a_scan_per_segment_also_for_coco_sized_ids():
    rng = np.random.default_rng(0)
    ids = rng.choice([0, 7, 3_000_001, 16_777_215, 42], size=(40, 50)).astype(np.int64)
    ids[:5, :7] = 99  # a segment without a category: left out
    categories = {7: 1, 3_000_001: 2, 16_777_215: 3, 42: 4, 5: 1}  # 5 is absent from the map
    known = np.array(sorted(categories), np.int64)
    info = _segments_info(segment_labels(ids, known), known, categories, crowd={42})
    expected = []
    for segment_id in (7, 42, 3_000_001, 16_777_215):
        ys, xs = np.nonzero(ids == segment_id)
        expected.append({"id": segment_id, "category_id": categories[segment_id],
                         "iscrowd": int(segment_id == 42), "area": len(xs),
                         "bbox": [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]})
    assert info == expected
    none = np.array([], np.int64)
    assert _segments_info(segment_labels(np.zeros((4, 4), np.int64), none), none, {}) == []


def test_segment_id_colours_round_trip_and_reject_ids_out_of_range():
    rgb = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    ids = rgb_to_id(rgb)
    r, g, b = (int(c) for c in rgb[3, 4])
    assert ids[3, 4] == r + 256 * g + 65536 * b
    assert np.array_equal(id_to_rgb(ids), rgb)
    assert np.array_equal(id_to_rgb(ids.T), rgb.transpose(1, 0, 2))  # not contiguous
    assert id_to_rgb(np.array([[1 + 2 * 256 + 3 * 65536, 256 ** 3 - 1]])).tolist() == [
        [[1, 2, 3], [255, 255, 255]]]
    with pytest.raises(MaskoptError, match="256³"):
        id_to_rgb(np.array([[256 ** 3]]))


def test_a_rejected_person_is_judged_from_its_map_once_and_its_rgb_never_read(train_dataset,
                                                                               monkeypatch):
    config = SynthesisConfig(**{**CONFIG.__dict__, "max_truncation": 0.02})  # rejects many
    persons, _ = find_person_segments(train_dataset, config.min_person_area)
    synth = PairSynthesizer(train_dataset, persons, config, 0, split_code=0,
                            test_buckets=False, one_per_background=True)
    maps_read = images_read = 0
    load_ids, load = train_dataset.load_ids, train_dataset.load

    def counted_load_ids(index):
        nonlocal maps_read
        maps_read += 1
        return load_ids(index)

    def counted_load(index, ids=None):
        nonlocal images_read
        images_read += 1
        return load(index, ids)

    monkeypatch.setattr(train_dataset, "load_ids", counted_load_ids)
    monkeypatch.setattr(train_dataset, "load", counted_load)
    results = [synth.make(k) for k in range(len(train_dataset))]
    notes = sum((Counter(r["notes"]) for r in results), Counter())
    pairs = sum("pair" in r for r in results)
    pasted_or_tried = pairs + notes["ratio_missed"]  # sources whose RGB was needed
    assert notes["person_truncated"] > len(synth.unusable) > 0  # some drawn again
    assert maps_read == pasted_or_tried + len(synth.unusable)  # each rejected one read once
    assert images_read == len(results) + pasted_or_tried  # backgrounds and pasted sources only


def outline_on_frame_of_the_whole_image(mask):
    """Reference for ``truncation``: the outline found on the whole (padded) image."""
    padded = np.pad(mask.astype(np.uint8), 1)
    outline = padded & ~cv2.erode(padded, np.ones((3, 3), np.uint8)).astype(bool)
    frame = outline.copy()
    frame[2:-2, 2:-2] = False
    return frame.sum() / max(1, outline.sum())


def test_truncation_from_the_bounding_box_equals_the_whole_image_outline():
    rng = np.random.default_rng(4)
    for top, left, bottom, right in [(0, 0, 30, 40), (5, 7, 30, 40), (12, 3, 30, 17),
                                     (0, 10, 9, 40), (3, 0, 30, 1), (0, 0, 1, 1)]:
        mask = np.zeros((30, 40), bool)
        mask[top:bottom, left:right] = rng.random((bottom - top, right - left)) > 0.3
        mask[top, left] = mask[bottom - 1, right - 1] = True  # the box is the one asked for
        assert truncation(mask) == outline_on_frame_of_the_whole_image(mask)
    assert truncation(np.zeros((30, 40), bool)) == 0.0
    assert truncation(np.ones((30, 40), bool)) == 1.0


def test_native_scale_pastes_a_person_at_the_size_it_has_in_its_own_image(train_dataset):
    """person_scale native (the paper): the pasted area is the person's own area scaled as
    its image is to the pair's side (less what the border cuts off), never a drawn ratio."""
    config = SynthesisConfig(**{**CONFIG.__dict__, "person_scale": "native",
                                "min_mask_ratio": 0.001})
    persons, _ = find_person_segments(train_dataset, config.min_person_area)
    synth = PairSynthesizer(train_dataset, persons, config, 0, split_code=0,
                            test_buckets=False, one_per_background=True)
    by_id = {r.image_id: i for i, r in enumerate(train_dataset.records)}
    shares = []
    for k in range(8):
        made = synth.make(k)
        if "pair" not in made:
            continue
        pair = made["pair"]
        source = by_id[pair["source_image_id"]]
        ids = train_dataset.load_ids(source)
        scale = config.image_size / min(ids.shape)
        expected = (ids == pair["source_segment_id"]).sum() * scale ** 2
        shares.append(pair["M_G"].sum() / expected)
    assert len(shares) >= 4
    assert max(shares) < 1.2  # never scaled up to a ratio
    assert max(shares) > 0.8  # an uncut one keeps its own size


def test_a_killed_synthesize_leaves_nothing_a_rerun_keeps(tmp_path, sample_root):
    """kill -9 inside the write of data/pairs/train leaves its staging folder inside the
    DVC output; the next write of that split removes it (a live writer's stays)."""
    import signal
    import subprocess
    import sys

    from tiny import tiny_params

    from maskopt.data.prepare import synthesize_pairs

    pairs = tmp_path / "pairs"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from maskopt.core.io import atomic_path\n"
         f"with atomic_path({str(pairs / 'train')!r}) as staging:\n"
         "    staging.mkdir(); (staging / 'half.png').write_bytes(b'x')\n"
         "    print('writing', flush=True); time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(30)
    left = list(pairs.glob(".train.*.tmp"))
    assert len(left) == 1
    live = pairs / f".train.{os.getpid()}.abcd1234.tmp"  # a writer still at work
    live.mkdir()
    synthesize_pairs(tiny_params(), sample_root, pairs)
    assert sorted(p.name for p in pairs.iterdir()) == sorted(
        ["test", "train", "validation", live.name])
