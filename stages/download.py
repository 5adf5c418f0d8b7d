"""Stage `download`: the offline sample or COCO 2017 + panoptic annotations -> data/raw."""

from maskopt.data.prepare import prepare_raw_data
from maskopt.pipeline.stage import run_stage


def main(params):
    counts = prepare_raw_data(params)
    print(f"download ({params.data.source}): " + ", ".join(f"{k} {v} images"
                                                           for k, v in counts.items()))


if __name__ == "__main__":
    run_stage(main)
