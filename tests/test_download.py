import hashlib
import io
import json
import zipfile

import pytest
from http_server import FileServer

from maskopt.data.coco import download_coco
from maskopt.data.download import download_file, safe_extract
from maskopt.data.panoptic import PanopticDataset, split_paths
from maskopt.errors import MaskoptError

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


def test_corrupted_download_is_detected_and_removed(tmp_path):
    damaged = bytearray(PAYLOAD)
    damaged[1234] ^= 0xFF
    with FileServer({"/f.bin": bytes(damaged)}) as server:
        with pytest.raises(MaskoptError, match="checksum mismatch"):
            download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5=md5(PAYLOAD),
                          show_progress=False)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_missing_url_is_a_clear_error(tmp_path):
    with FileServer({}) as server, pytest.raises(MaskoptError, match="HTTP 404"):
        download_file(f"{server.url}/nope.zip", tmp_path / "nope.zip", show_progress=False)


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt"])
def test_archive_member_outside_target_is_refused_before_writing(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"fine.txt": b"ok", evil: b"owned"}))
    target = tmp_path / "out"
    with pytest.raises(MaskoptError, match="outside"):
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
    files["/annotations/panoptic_annotations_trainval2017.zip"] = zip_bytes(nested)
    sums = {path.rsplit("/", 1)[1]: md5(data) for path, data in files.items()
            if path.endswith(".zip")}
    return files, sums


def test_coco_download_full_and_subset_read_back(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        counts = download_coco(tmp_path / "full", server.url, checksums=sums)
        assert counts == {"train": 24, "val": 16}
        full = PanopticDataset.from_root(tmp_path / "full", "train")
        assert full.load(0).rgb.shape == (72, 96, 3)
        fetched = len(server.requests)
        download_coco(tmp_path / "full", server.url, checksums=sums)
        assert len(server.requests) == fetched  # everything complete: nothing fetched again

        counts = download_coco(tmp_path / "subset", server.url, max_images=5, checksums=sums)
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
        download_coco(tmp_path / "coco", server.url, checksums=sums)


def test_subset_then_full_then_subset_gives_exactly_each_dataset(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    root = tmp_path / "coco"
    with FileServer(files) as server:
        assert download_coco(root, server.url, max_images=5, checksums=sums) == \
            {"train": 5, "val": 5}
        assert download_coco(root, server.url, checksums=sums) == {"train": 24, "val": 16}
        full = json.loads(split_paths(root, "train")[1].read_text())
        assert len(full["images"]) == 24 and len(full["annotations"]) == 24
        assert download_coco(root, server.url, max_images=3, checksums=sums) == \
            {"train": 3, "val": 3}
        assert download_coco(root, server.url, max_images=7, checksums=sums) == \
            {"train": 7, "val": 7}
        assert download_coco(root, server.url, checksums=sums) == {"train": 24, "val": 16}
        assert len(PanopticDataset.from_root(root, "val")) == 16


def test_a_mirror_sets_its_own_checksums_or_turns_them_off(tmp_path, sample_root):
    files, sums = coco_mirror(sample_root)
    with FileServer(files) as server:
        with pytest.raises(MaskoptError, match="checksum mismatch"):
            download_coco(tmp_path / "published", server.url, max_images=2)  # official MD5s
        with pytest.warns(UserWarning, match="verification is off"):
            counts = download_coco(tmp_path / "off", server.url, max_images=2,
                                   checksums={"panoptic_annotations_trainval2017.zip": None})
        assert counts == {"train": 2, "val": 2}
        with pytest.raises(MaskoptError, match="unknown archive"):
            download_coco(tmp_path / "x", server.url, checksums={"train2014.zip": None})


def test_checksum_params_are_validated():
    from tiny import tiny_params

    with pytest.raises(Exception, match="not an MD5"):
        tiny_params(**{"data.coco_checksums": {"val2017.zip": "abc"}})
    params = tiny_params(**{"data.coco_checksums": {"val2017.zip": "0" * 32}})
    assert params.data.coco_checksums == {"val2017.zip": "0" * 32}


def test_a_verified_archive_is_not_hashed_again(tmp_path, monkeypatch):
    from maskopt.data import download

    payload = b"x" * 5000
    calls = []
    real_md5 = download._md5
    monkeypatch.setattr(download, "_md5", lambda path: calls.append(path) or real_md5(path))
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
    assert not (tmp_path / "out" / ".extracted-broken.zip").exists()


def test_subset_images_are_retried_on_server_errors_but_not_on_missing_files(tmp_path,
                                                                            sample_root):
    files, sums = coco_mirror(sample_root)
    val = sorted(p for p in files if p.startswith("/val2017/"))
    with FileServer(files) as server:
        server.fail_next[val[0]] = [503, 502]  # two transient failures, then served
        counts = download_coco(tmp_path / "a", server.url, max_images=4, checksums=sums,
                               retry_backoff=0.01)
        assert counts == {"train": 4, "val": 4}
        assert sum(path == val[0] for path, _ in server.requests) == 3
        del files[val[1]]
        before = len(server.requests)
        with pytest.raises(MaskoptError, match="HTTP 404"):
            download_coco(tmp_path / "b", server.url, max_images=4, checksums=sums,
                          retry_backoff=0.01)
        later = server.requests[before:]
        assert sum(path == val[1] for path, _ in later) == 1  # not retried
