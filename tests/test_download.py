import hashlib
import io
import json
import zipfile

import pytest
from http_server import FileServer

from maskopt.core.errors import MaskoptError
from maskopt.data.coco import download_coco
from maskopt.data.download import download_file, safe_extract
from maskopt.data.panoptic import PanopticDataset, split_paths

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_clean_download_is_verified_and_then_skipped(tmp_path):
    with FileServer({"/f.bin": PAYLOAD}) as server:
        dest = download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5=md5(PAYLOAD),
                             show_progress=False)
        assert dest.read_bytes() == PAYLOAD
        download_file(f"{server.url}/f.bin", dest, md5=md5(PAYLOAD), show_progress=False)
        assert len(server.requests) == 1  # complete and verified: not fetched again


def test_interrupted_download_resumes_with_range(tmp_path):
    with FileServer({"/f.bin": PAYLOAD}) as server:
        server.cut_after["/f.bin"] = 300_000
        dest = tmp_path / "f.bin"
        with pytest.raises(MaskoptError, match="run again to resume"):
            download_file(f"{server.url}/f.bin", dest, md5=md5(PAYLOAD), show_progress=False)
        assert not dest.exists()
        assert (tmp_path / "f.bin.part").stat().st_size == 300_000
        download_file(f"{server.url}/f.bin", dest, md5=md5(PAYLOAD), show_progress=False)
        assert dest.read_bytes() == PAYLOAD
        assert server.requests[-1] == ("/f.bin", "bytes=300000-")


def test_corrupted_download_is_set_aside_until_a_good_copy_replaces_it(tmp_path):
    damaged = bytearray(PAYLOAD)
    damaged[1234] ^= 0xFF
    with FileServer({"/f.bin": bytes(damaged)}) as server:
        with pytest.raises(MaskoptError, match="checksum mismatch.*kept at .*f.bin.corrupt"):
            download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5=md5(PAYLOAD),
                          show_progress=False)
        assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
        assert (tmp_path / "f.bin.corrupt").read_bytes() == bytes(damaged)
        with pytest.raises(MaskoptError, match="same md5: either the expected MD5 is wrong or "
                                               ".*f.bin serves a damaged file"):
            download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5=md5(PAYLOAD),
                          show_progress=False)
        server.files["/f.bin"] = PAYLOAD
        download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5=md5(PAYLOAD),
                      show_progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.corrupt").exists()


def test_missing_url_is_a_clear_error(tmp_path):
    with FileServer({}) as server, pytest.raises(MaskoptError, match="HTTP 404"):
        download_file(f"{server.url}/nope.zip", tmp_path / "nope.zip", show_progress=False)


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt"])
def test_archive_member_outside_target_is_refused_before_writing(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"fine.txt": b"ok", evil: b"owned"}))
    target = tmp_path / "out"
    with pytest.raises(MaskoptError, match="evil.zip: member .* outside"):
        safe_extract(archive, target, show_progress=False)
    assert not (tmp_path / "escape.txt").exists()
    assert not (target / "fine.txt").exists()  # nothing written at all


def test_symlink_member_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    archive = tmp_path / "link.zip"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(MaskoptError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out", show_progress=False)


def test_damaged_archive_is_reported(tmp_path):
    data = bytearray(zip_bytes({"a.txt": b"x" * 1000}))
    data[40] ^= 0xFF  # inside the compressed member
    archive = tmp_path / "bad.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(MaskoptError, match="member 'a.txt' is corrupt"):
        safe_extract(archive, tmp_path / "out", show_progress=False)


def coco(root, server, **kwargs):
    """``download_coco`` into ``root``, with its downloads folder beside it."""
    return download_coco(root, root.with_name(root.name + "-downloads"), server.url, **kwargs)


def coco_mirror(sample_root):
    """The sample laid out as COCO's server does: archives, nested PNG zips, per-image URLs."""
    files, nested = {}, {}
    for split in ("train", "val"):
        image_dir, json_path, png_dir = split_paths(sample_root, split)
        nested[f"annotations/panoptic_{split}2017.json"] = json_path.read_bytes()
        nested[f"annotations/panoptic_{split}2017.zip"] = zip_bytes(
            {f"panoptic_{split}2017/{p.name}": p.read_bytes() for p in png_dir.iterdir()})
        images = {f"{split}2017/{p.name}": p.read_bytes() for p in image_dir.iterdir()}
        files[f"/zips/{split}2017.zip"] = zip_bytes(images)
        files.update({f"/{name}": data for name, data in images.items()})
    nested["__MACOSX/annotations/._panoptic_val2017.json"] = b"resource fork"  # as COCO's has
    files["/annotations/panoptic_annotations_trainval2017.zip"] = zip_bytes(nested)
    sums = {path.rsplit("/", 1)[1]: md5(data) for path, data in files.items()
            if path.endswith(".zip")}
    return files, sums


def test_coco_download_full_and_subset_read_back(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        counts = coco(tmp_path / "full", server, checksums=sums)
        assert counts == {"train": 24, "val": 16}
        full = PanopticDataset.from_root(tmp_path / "full", "train")
        assert full.load(0).rgb.shape == (72, 96, 3)
        fetched = len(server.requests)
        coco(tmp_path / "full", server, checksums=sums)
        assert len(server.requests) == fetched  # everything complete: nothing fetched again

        counts = coco(tmp_path / "subset", server, max_images=5, checksums=sums)
        assert counts == {"train": 5, "val": 5}
        subset = PanopticDataset.from_root(tmp_path / "subset", "val")
        assert len(subset) == 5 and subset.load(4).ids.shape == (72, 96)
        assert not any(p.endswith("2017.zip") and "zips" in p for p, _ in
                       server.requests[fetched:])  # no image archive for a subset
        data = json.loads(split_paths(tmp_path / "subset", "train")[1].read_text())
        assert len(data["annotations"]) == 5


def test_coco_download_rejects_a_corrupted_archive(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    sums["val2017.zip"] = "0" * 32
    with FileServer(files) as server, pytest.raises(MaskoptError, match="val2017.zip: checksum"):
        coco(tmp_path / "coco", server, checksums=sums)


def test_subset_then_full_then_subset_gives_exactly_each_dataset(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    root = tmp_path / "coco"
    with FileServer(files) as server:
        assert coco(root, server, max_images=5, checksums=sums) == \
            {"train": 5, "val": 5}
        assert coco(root, server, checksums=sums) == {"train": 24, "val": 16}
        full = json.loads(split_paths(root, "train")[1].read_text())
        assert len(full["images"]) == 24 and len(full["annotations"]) == 24
        assert coco(root, server, max_images=3, checksums=sums) == \
            {"train": 3, "val": 3}
        assert coco(root, server, max_images=7, checksums=sums) == \
            {"train": 7, "val": 7}
        assert coco(root, server, checksums=sums) == {"train": 24, "val": 16}
        assert len(PanopticDataset.from_root(root, "val")) == 16


def warnings(capsys) -> list[str]:
    """The warning lines on stderr (progress bars share it)."""
    import re

    return re.findall(r"warning: [^\r\n]*", capsys.readouterr().err)


def test_a_mirror_sets_its_own_checksums_or_turns_them_off(tmp_path, sample_root, capsys):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        with pytest.raises(MaskoptError, match="the published MD5 of panoptic"):
            coco(tmp_path / "published", server, max_images=2)  # official MD5s
        counts = coco(tmp_path / "off", server, max_images=2,
                               checksums={"panoptic_annotations_trainval2017.zip": None})
        assert counts == {"train": 2, "val": 2}
        assert warnings(capsys) == ["warning: panoptic_annotations_trainval2017.zip: checksum "
                                    "verification is off (data.coco_checksums)"]
        assert coco(tmp_path / "none", server, max_images=2,
                             checksums=None) == {"train": 2, "val": 2}  # null: none verified
        assert sum("verification is off" in line for line in warnings(capsys)) == 3
        with pytest.raises(MaskoptError, match="unknown archive"):
            coco(tmp_path / "x", server, checksums={"train2014.zip": None})


def test_checksum_params_are_validated():
    from tiny import tiny_params

    with pytest.raises(Exception, match="not an MD5"):
        tiny_params(**{"data.coco_checksums": {"val2017.zip": "abc"}})
    params = tiny_params(**{"data.coco_checksums": {"val2017.zip": "0" * 32}})
    assert params.data.coco_checksums == {"val2017.zip": "0" * 32}
    assert tiny_params(**{"data.coco_checksums": None}).data.coco_checksums is None


def test_a_verified_archive_is_not_hashed_again(tmp_path, monkeypatch):
    from maskopt.data import download

    payload = b"x" * 5000
    calls = []
    real_md5 = download._md5
    monkeypatch.setattr(download, "_md5",
                        lambda path, *args: calls.append(path) or real_md5(path, *args))
    with FileServer({"/a.zip": payload}) as server:
        download_file(f"{server.url}/a.zip", tmp_path / "a.zip", md5=md5(payload),
                      show_progress=False)
        assert len(calls) == 1
        download_file(f"{server.url}/a.zip", tmp_path / "a.zip", md5=md5(payload),
                      show_progress=False)
        assert len(calls) == 1  # unchanged file: the record is trusted
        (tmp_path / "a.zip").write_bytes(b"y" * 5000)  # changed behind our back
        download_file(f"{server.url}/a.zip", tmp_path / "a.zip", md5=md5(payload),
                      show_progress=False)
        assert (tmp_path / "a.zip").read_bytes() == payload and len(calls) == 3


def test_a_corrupt_compressed_member_is_one_error_and_leaves_nothing(tmp_path):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good.txt", "fine")
        zf.writestr("big.bin", bytes(range(256)) * 4000)
    data = bytearray(buffer.getvalue())
    start = data.find(b"big.bin") + len(b"big.bin") + 40  # inside its deflate stream
    data[start:start + 64] = b"\xff" * 64
    archive = tmp_path / "broken.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(MaskoptError, match="big.bin' is corrupt") as error:
        safe_extract(archive, tmp_path / "out", show_progress=False)
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "out").rglob("*.part"))
    assert not (tmp_path / "out" / "big.bin").exists()


def test_subset_images_are_retried_on_server_errors_but_not_on_missing_files(tmp_path,
                                                                            sample_root):
    files, sums = coco_mirror(sample_root)
    val = sorted(p for p in files if p.startswith("/val2017/"))
    with FileServer(files) as server:
        server.fail_next[val[0]] = [503, 502]  # two transient failures, then served
        counts = coco(tmp_path / "a", server, max_images=4, checksums=sums,
                               retry_backoff=0.01)
        assert counts == {"train": 4, "val": 4}
        assert sum(path == val[0] for path, _ in server.requests) == 3
        del files[val[1]]
        before = len(server.requests)
        with pytest.raises(MaskoptError, match="HTTP 404"):
            coco(tmp_path / "b", server, max_images=4, checksums=sums,
                          retry_backoff=0.01)
        later = server.requests[before:]
        assert sum(path == val[1] for path, _ in later) == 1  # not retried


# --- a COCO download is never lost (each test is one fault a user met) ---------------


def file_digests(root):
    return {str(p.relative_to(root)): md5(p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_wrong_checksum_setting_keeps_the_verified_archive(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        coco(tmp_path / "raw", server, checksums=sums)
        archive = (tmp_path / "raw-downloads" / "val2017.zip").read_bytes()
        fetched = len(server.requests)
        typo = dict(sums, **{"val2017.zip": "1" * 32})
        with pytest.raises(MaskoptError, match=r"verified earlier .* data\.coco_checksums"
                                               r"\['val2017\.zip'\] expects 1{32}; the file "
                                               "is kept"):
            coco(tmp_path / "raw", server, checksums=typo)
        assert (tmp_path / "raw-downloads" / "val2017.zip").read_bytes() == archive
        assert len(server.requests) == fetched  # nothing fetched again


def test_archives_and_junk_stay_out_of_the_stage_output(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        coco(tmp_path / "raw", server, checksums=sums)
    output = [p.relative_to(tmp_path / "raw") for p in (tmp_path / "raw").rglob("*")
              if p.is_file()]
    assert not [p for p in output if p.suffix == ".zip" or "__MACOSX" in p.parts]
    assert {p.parts[0] for p in output} == {"train2017", "val2017", "annotations"}
    assert (tmp_path / "raw-downloads" / "train2017.zip").exists()
    assert not list((tmp_path / "raw-downloads").rglob("__MACOSX"))


def test_a_folder_removed_by_hand_is_extracted_again(tmp_path, sample_root):
    import shutil

    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        coco(tmp_path / "raw", server, checksums=sums)
        before = file_digests(tmp_path / "raw")
        shutil.rmtree(tmp_path / "raw" / "val2017")
        shutil.rmtree(tmp_path / "raw" / "annotations" / "panoptic_train2017")
        fetched = len(server.requests)
        coco(tmp_path / "raw", server, checksums=sums)
        assert len(server.requests) == fetched  # from the kept archives
    assert file_digests(tmp_path / "raw") == before


def test_a_split_without_its_images_fails_synthesize_naming_the_cause(tmp_path, sample_root):
    import shutil

    from tiny import tiny_params

    from maskopt.data.prepare import synthesize_pairs

    raw = tmp_path / "raw"
    shutil.copytree(sample_root, raw)
    params = tiny_params(**{"synthesize.test_pairs": 8, "synthesize.min_pairs": 4})
    synthesize_pairs(params, raw, tmp_path / "pairs")
    before = file_digests(tmp_path / "pairs")
    shutil.rmtree(raw / "val2017")
    with pytest.raises(MaskoptError, match=r"test: 0 of 8 pairs made, fewer than synthesize"
                                           r"\.min_pairs \(4\); skipped_missing_file: 8; "
                                           r"files listed in .* are missing"):
        synthesize_pairs(params, raw, tmp_path / "pairs")
    assert file_digests(tmp_path / "pairs") == before  # the earlier pairs are kept


def test_a_dropped_archive_transfer_is_retried_within_one_run(tmp_path, sample_root, capsys):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        server.cut_after["/zips/val2017.zip"] = 5000
        counts = coco(tmp_path / "raw", server, checksums=sums,
                               retry_backoff=0.01)
    assert counts == {"train": 24, "val": 16}
    val = [rng for path, rng in server.requests if path == "/zips/val2017.zip"]
    assert val == [None, "bytes=5000-"]  # resumed, not restarted
    assert [line for line in warnings(capsys) if "val2017.zip" in line] == [
        f"warning: {server.url}/zips/val2017.zip: transfer incomplete (5000 of "
        f"{len(files['/zips/val2017.zip'])} bytes); run again to resume (retrying, 1 of 3)"]


def test_switching_to_the_sample_and_back_leaves_coco_byte_identical(tmp_path, sample_root,
                                                                      monkeypatch):
    from tiny import tiny_params

    from maskopt.data.prepare import prepare_raw_data

    files, sums = coco_mirror(sample_root)
    raw, downloads = tmp_path / "data/raw", tmp_path / "data/downloads"
    with FileServer(files) as server:
        coco = tiny_params(**{"data.source": "coco", "data.coco_base_url": server.url,
                              "data.coco_checksums": sums})
        prepare_raw_data(coco, raw, downloads)
        before = file_digests(raw) | {f"dl/{k}": v for k, v in file_digests(downloads).items()}
        fetched = len(server.requests)
        assert prepare_raw_data(tiny_params(), raw, downloads) == {"train": 16, "val": 8}
        assert len(PanopticDataset.from_root(raw, "val")) == 8  # the sample, in data.root
        prepare_raw_data(coco, raw, downloads)
        assert len(server.requests) == fetched  # nothing fetched, nothing extracted again
    after = file_digests(raw) | {f"dl/{k}": v for k, v in file_digests(downloads).items()}
    assert after == before


def test_no_space_for_a_transfer_or_an_extraction_is_refused_before_writing(
        tmp_path, sample_root, monkeypatch):
    from maskopt.data import download

    files, sums = coco_mirror(sample_root)
    free = download.SPACE_HEADROOM + 60_000  # room for the annotations, not for the images
    monkeypatch.setattr(download, "free_bytes", lambda folder: free)
    with FileServer(files) as server:
        with pytest.raises(MaskoptError, match=r"downloading train2017.zip needs [\d.]+ MB free "
                                               r"in .*raw-downloads, but only [\d.]+ MB is free"):
            coco(tmp_path / "raw", server, checksums=sums)
    assert not (tmp_path / "raw-downloads" / "train2017.zip.part").exists()
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"a.bin": PAYLOAD}))
    with pytest.raises(MaskoptError, match="extracting a.zip needs"):
        safe_extract(archive, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out" / "a.bin").exists()


def _file_size_limit(limit):
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk (ulimit -f)."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_a_full_disk_during_the_transfer_is_one_line_and_resumes(tmp_path, sample_root):
    import subprocess
    import sys

    import yaml

    from maskopt.data.panoptic import split_paths as paths

    files, sums = coco_mirror(sample_root)
    annotations = len(files["/annotations/panoptic_annotations_trainval2017.zip"])
    limit = (annotations + len(files["/zips/train2017.zip"])) // 2
    assert annotations < limit
    assert max(p.stat().st_size for p in paths(sample_root, "train")[0].iterdir()) < limit
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    with FileServer(files) as server:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {
            "source": "coco", "coco_base_url": server.url, "coco_checksums": sums}}))
        stage = [sys.executable, str(root / "stages/download.py")]
        full = subprocess.run(stage, cwd=tmp_path, capture_output=True, text=True,
                              preexec_fn=lambda: _file_size_limit(limit), timeout=300)
        assert full.returncode == 2, full.stderr
        lines = [line for line in full.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("error: data/downloads/train2017.zip.part: cannot write "
                                    "(EFBIG: File too large); the partial download is kept")
        assert "Traceback" not in full.stderr
        assert (tmp_path / "data/downloads/train2017.zip.part").stat().st_size == limit
        rerun = subprocess.run(stage, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
    train = [rng for path, rng in server.requests if path == "/zips/train2017.zip"]
    assert train == [None, f"bytes={limit}-"]
    assert len(PanopticDataset.from_root(tmp_path / "data/raw", "train")) == 24


def test_a_full_disk_during_extraction_is_one_line_and_keeps_the_archive(tmp_path):
    import resource

    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"small.txt": b"ok", "big.bin": PAYLOAD * 2}))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        _file_size_limit(len(PAYLOAD))
        with pytest.raises(MaskoptError) as error:
            safe_extract(archive, tmp_path / "out", show_progress=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(error.value).startswith(f"{tmp_path / 'out' / 'big.bin'}: cannot write (EFBIG")
    assert "\n" not in str(error.value) and "the archive is kept" in str(error.value)
    assert archive.exists() and not list((tmp_path / "out").rglob("*.part"))
    safe_extract(archive, tmp_path / "out", show_progress=False)  # room again: completes
    assert (tmp_path / "out" / "big.bin").read_bytes() == PAYLOAD * 2


def test_coco_files_without_their_source_record_are_set_aside_not_deleted(tmp_path,
                                                                          sample_root):
    """data/raw from an older maskopt (or filled by hand) has no SOURCE.json: switching
    to the sample moves COCO's layout aside as COCO, and refuses anything else."""
    import shutil

    from tiny import tiny_params

    from maskopt.data.prepare import PARKED_COCO, prepare_raw_data

    raw, downloads = tmp_path / "data/raw", tmp_path / "data/downloads"
    shutil.copytree(sample_root, raw)  # COCO's layout, no SOURCE.json
    before = file_digests(raw)
    prepare_raw_data(tiny_params(), raw, downloads)
    assert file_digests(downloads / PARKED_COCO) == before
    assert len(PanopticDataset.from_root(raw, "val")) == 8  # the sample in its place

    shutil.rmtree(raw)
    raw.mkdir()
    (raw / "notes.txt").write_text("mine")
    with pytest.raises(MaskoptError, match="holds files of no known source"):
        prepare_raw_data(tiny_params(), raw, tmp_path / "other-downloads")
    assert (raw / "notes.txt").read_text() == "mine"


def test_a_wrong_checksum_after_a_copy_or_restore_fetches_nothing(tmp_path, sample_root):
    """A verified archive whose time stamp changed (copied, restored) and a mistyped MD5:
    the file still has the MD5 it was verified with, so the setting is wrong: kept, not
    fetched again."""
    import os

    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        coco(tmp_path / "raw", server, checksums=sums)
        archive = tmp_path / "raw-downloads" / "val2017.zip"
        data, fetched = archive.read_bytes(), len(server.requests)
        os.utime(archive, ns=(1, 1))  # as after a copy or a restore
        typo = dict(sums, **{"val2017.zip": "1" * 32})
        with pytest.raises(MaskoptError, match="verified earlier .* the file is kept"):
            coco(tmp_path / "raw", server, checksums=typo)
        coco(tmp_path / "raw", server, checksums=sums)
        assert len(server.requests) == fetched and archive.read_bytes() == data


def test_a_copy_set_aside_under_a_wrong_checksum_is_put_back_once_it_is_fixed(tmp_path):
    """An archive put in place by hand (no record) and a mistyped MD5: it is set aside
    and fetched once more; with the MD5 corrected it is put back, not fetched a third
    time."""
    dest = tmp_path / "f.bin"
    dest.write_bytes(PAYLOAD)
    with FileServer({"/f.bin": PAYLOAD}) as server:
        with pytest.raises(MaskoptError, match="same md5"):
            download_file(f"{server.url}/f.bin", dest, md5="1" * 32, show_progress=False)
        assert len(server.requests) == 1
        download_file(f"{server.url}/f.bin", dest, md5=md5(PAYLOAD), show_progress=False)
        assert len(server.requests) == 1
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.corrupt").exists()


def test_an_extracted_file_damaged_at_its_size_is_extracted_again(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        coco(tmp_path / "raw", server, checksums=sums)
        before = file_digests(tmp_path / "raw")
        image = sorted((tmp_path / "raw" / "val2017").iterdir())[0]
        png = sorted((tmp_path / "raw" / "annotations" / "panoptic_train2017").iterdir())[0]
        for damaged in (image, png):
            data = bytearray(damaged.read_bytes())
            data[len(data) // 2] ^= 0xFF
            damaged.write_bytes(bytes(data))  # the same size, other bytes
        fetched = len(server.requests)
        coco(tmp_path / "raw", server, checksums=sums)
        assert len(server.requests) == fetched  # from the kept archives
    assert file_digests(tmp_path / "raw") == before
    assert not list((tmp_path / "raw").rglob("*.extracted.json"))  # records stay outside
