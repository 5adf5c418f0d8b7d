"""Stage `synthesize`: cut-and-paste pairs -> data/pairs/{train,test}, reports/data.json."""

from maskopt.core.io import write_json
from maskopt.data.prepare import synthesize_pairs
from maskopt.pipeline.stage import run_stage


def main(params):
    report = synthesize_pairs(params)
    write_json("reports/data.json", report)
    for split, stats in report.items():
        print(f"synthesize {split}: {stats['pairs']} pairs, buckets {stats['buckets']}, "
              f"events {stats['events']}")


if __name__ == "__main__":
    run_stage(main)
