"""reports/paper.md and the sweep's Table IV: our numbers beside the paper's, claims tested."""

from maskopt.evaluation.paper import paper_markdown, table_iv
from maskopt.evaluation.paper_numbers import paper_numbers

BUCKETS = ["0-10", "10-20", "20-30", "30-40"]


def _table(rows: dict[str, float]) -> dict:
    return {row: {b: {"psnr": value + i, "ssim": 0.5} for i, b in enumerate([*BUCKETS, "all"])}
            for row, value in rows.items()}


def test_paper_tables_put_ours_beside_the_papers_and_test_each_claim():
    rows = {"gt_d0": 20.0, "gt_d-2": 17.0, "random_inpainters_gt_mask": 19.0, "joint": 18.0,
            "telea_pretrained_mask": 18.5, "ns_pretrained_mask": 18.4,
            "random_inpainters_pretrained_mask": 17.5}
    image_buckets = [b for b in BUCKETS for _ in range(5)]
    per_image = {row: [v + 0.01 * i for i in range(20)] for row, v in rows.items()}
    per_image["random_inpainters_gt_mask"] = [v - 1.0 for v in per_image["gt_d0"]]
    text = paper_markdown(_table(rows), per_image, image_buckets, [-2, 0], True, 64)
    paper = paper_numbers()
    assert f"| 0-10 % | 19.00 ({paper['table_2']['psnr']['random'][0]:.2f}) | 20.00 (" in text
    assert "object > random masks, all pairs: mean difference +1.00 dB, wins 20/20" in text
    assert "object > random masks, 30-40 %: mean difference +1.00 dB, wins 5/5" in text
    assert "Ours > OpenCV Telea: mean difference -0.50 dB" in text and "does not hold" in text


def test_table_two_says_when_its_rows_were_not_made():
    rows = {"gt_d0": 20.0, "gt_d-2": 17.0, "joint": 18.0, "telea_pretrained_mask": 18.5,
            "ns_pretrained_mask": 18.4}
    per_image = {row: [v] * 4 for row, v in rows.items()}
    text = paper_markdown(_table(rows), per_image, BUCKETS, [-2, 0], False, 64)
    assert "Not in this run: the random-mask inpainters were not evaluated." in text
    assert "| PSNR | OpenCV Telea | OpenCV NS | random-mask nets | EdgeC | w/o MEL | " \
           "joint, MEL off |" in text


def test_table_four_has_every_alpha_of_the_sweep_and_the_papers():
    sweep = [{"alpha": 0.03, "psnr": 20.7, "ssim": 0.757, "commit": "abc1234", "seed": 0},
             {"alpha": 0.05, "psnr": 20.5, "ssim": 0.743, "commit": "abc1234", "seed": 0}]
    text = "\n".join(table_iv(paper_numbers()["table_4"], sweep, 0.03, {}))
    assert "| PSNR | – (30.68) | 20.70 (30.87) | 20.50 (30.51) | – (30.47) |" in text
    assert "| SSIM | – (0.951) | 0.757 (0.954) | 0.743 (0.949) | – (0.949) |" in text
    assert "commit abc1234, seed 0). Best α there by PSNR: 0.03" in text
    assert "not run" in "\n".join(table_iv(paper_numbers()["table_4"], [], 0.03, {}))


def test_table_v_claims_are_tested_in_every_bucket_on_psnr_ssim_and_lpips():
    rows = {"joint": 20.0, "telea_pretrained_mask": 19.0, "without_mel": 20.5}
    image_buckets = [b for b in BUCKETS for _ in range(5)]
    per_image = {row: [v + 0.01 * i for i in range(20)] for row, v in rows.items()}
    ssim = {row: [v / 40 for v in values] for row, values in per_image.items()}
    # LPIPS: lower is better, so ours (0.20) beats Telea (0.30) and loses to w/o MEL (0.15)
    lpips = {"joint": [0.2] * 20, "telea_pretrained_mask": [0.3] * 20,
             "without_mel": [0.15] * 20}
    without = paper_markdown(_table(rows), per_image, image_buckets, [0], True, 64,
                             per_image_more={"ssim": ssim})
    assert "LPIPS per test pair" not in without and "LPIPS is not tested" in without
    text = paper_markdown(_table(rows), per_image, image_buckets, [0], True, 64,
                          per_image_more={"ssim": ssim, "lpips": lpips})
    lpips_table = text.split("baseline − Ours, LPIPS per test pair (lower is better)")[1]
    lpips_lines = lpips_table.split("\n\n")[1].splitlines()
    telea_lpips = next(line for line in lpips_lines if line.startswith("| OpenCV Telea"))
    assert telea_lpips.count("+0.100 [+0.100, +0.100] ✓") == 5
    mel_lpips = next(line for line in lpips_lines if line.startswith("| w/o MEL"))
    assert mel_lpips.count("-0.050 [-0.050, -0.050]") == 5 and "✓" not in mel_lpips
    psnr_table = text.split("Ours − baseline, PSNR per test pair")[1].split("\n\n")[1]
    telea = next(line for line in psnr_table.splitlines() if line.startswith("| OpenCV Telea"))
    assert telea.count("+1.00 [+1.00, +1.00] ✓") == 5  # all pairs and each of 4 buckets
    mel = next(line for line in psnr_table.splitlines() if line.startswith("| w/o MEL"))
    assert mel.count("-0.50 [-0.50, -0.50]") == 5 and "✓" not in mel
    assert "Ours − baseline, SSIM per test pair" in text


def test_table_one_maps_the_papers_d_and_each_claim_shows_the_other_seeds():
    rows = {"gt_d0": 20.0, "gt_d-1": 17.0, "joint": 18.0, "telea_pretrained_mask": 18.5}
    image_buckets = [b for b in BUCKETS for _ in range(5)]
    per_image = {row: [v + 0.01 * i for i in range(20)] for row, v in rows.items()}
    rerun = {"gt_d0": 19.0, "gt_d-1": 18.5, "joint": 18.0, "telea_pretrained_mask": 18.25}
    text = paper_markdown(_table(rows), per_image, image_buckets, [-1, 0], True, 128,
                          reruns=[{"seed": 1, "table": _table(rerun)}])
    paper = paper_numbers()["table_1"]["psnr"]
    assert "d = -1 here ↔ -2 at 256 px, d = +0 here ↔ +0 at 256 px" in text
    assert f"| 0-10 % | 17.00 ({paper['-2'][0]:.2f}) | 20.00 ({paper['0'][0]:.2f}) |" in text
    eroded = next(line for line in text.splitlines() if "beats it eroded by 1 px" in line)
    assert "mean difference +3.00 dB" in eroded and "Other seeds: +0.50 (seed 1)." in eroded
    telea = next(line for line in text.splitlines() if line.startswith("- Ours > OpenCV Telea"))
    assert "mean difference -0.50 dB" in telea and "Other seeds: -0.25 (seed 1)." in telea
    alone = paper_markdown(_table(rows), per_image, image_buckets, [-1, 0], True, 128)
    assert "No run with another seed is recorded" in alone and "Other seeds" not in alone


def test_a_rerun_differs_only_in_its_seed_or_in_settings_that_change_no_claim():
    from maskopt.evaluation.paper_report import is_rerun, rerun_params
    from maskopt.pipeline.params import Params

    base = rerun_params(Params())
    assert rerun_params(Params.model_validate({"seed": 1})) == base
    assert rerun_params(Params.model_validate({"train": {"log_every": 5}})) == base
    # the fixed-dilation sweep is a stage of its own: paper.md's claims do not read it
    assert rerun_params(Params.model_validate({"evaluate": {"fixed_dilations": [0]}})) == base
    assert rerun_params(Params.model_validate({"alpha": 0.05})) != base
    this = Params.model_validate({"seed": 0})
    assert is_rerun({"seed": 1, "params": base}, this)
    assert not is_rerun({"seed": 0, "params": base}, this)  # itself
    # a run recorded before a param existed did what its default does, and nothing else
    older = {k: v for k, v in base.items() if k != "segmenter.mask_resolution"}
    assert is_rerun({"seed": 1, "params": older}, this)
    assert not is_rerun({"seed": 1, "params": older}, Params.model_validate(
        {"segmenter": {"mask_resolution": 28}}))
    # one number of steps for every inpainter, recorded before the steps were per kind
    one_number = {k: v for k, v in base.items() if not k.startswith("train.inpainter.steps.")}
    assert not is_rerun({"seed": 1, "params": {**one_number, "train.inpainter.steps": "250"}},
                        this)


def test_table_v_notes_where_the_papers_own_cells_disagree():
    rows = {"joint": 20.0, "telea_pretrained_mask": 19.0}
    per_image = {row: [v] * 4 for row, v in rows.items()}
    text = paper_markdown(_table(rows), per_image, BUCKETS, [0], True, 128)
    assert "Table V's Ours at 30-40 % is 26.50, above its own 10-20 % (24.71)" in text
    assert "Table I's exact GT mask at 30-40 % (19.21)" in text
    assert "Table IV's mean at α = 0.03 is 30.87; the mean of Table V's Ours over the " \
           "buckets is 26.98." in text
