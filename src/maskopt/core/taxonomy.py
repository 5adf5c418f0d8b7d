"""The class numbering that every network and file of a run shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maskopt.core.io import read_json


@dataclass(frozen=True)
class Taxonomy:
    """Semantic index 0 = unlabeled, 1..C-1 the categories; things (instances) numbered
    1..K in category order."""

    categories: tuple[dict, ...]

    @classmethod
    def from_pairs(cls, pairs_dir: str | Path) -> Taxonomy:
        return cls(tuple(read_json(Path(pairs_dir) / "annotations.json")["categories"]))

    @property
    def num_classes(self) -> int:
        return max(c["index"] for c in self.categories) + 1

    @property
    def thing_ids(self) -> dict[int, int]:
        """COCO category id → thing label 1..K."""
        things = sorted(c["id"] for c in self.categories if c.get("isthing"))
        return {cid: k + 1 for k, cid in enumerate(things)}

    @property
    def thing_category_ids(self) -> list[int]:
        """COCO category id of thing labels 1..K, in label order."""
        return sorted(self.thing_ids, key=self.thing_ids.get)

    @property
    def num_things(self) -> int:
        return len(self.thing_ids)

    def names(self) -> list[str]:
        names = ["unlabeled"] * self.num_classes
        for c in self.categories:
            names[c["index"]] = c["name"]
        return names

    def thing_names(self) -> dict[int, str]:
        """Thing label 1..K → category name."""
        name_of = {c["id"]: c["name"] for c in self.categories}
        return {label: name_of[cid] for cid, label in self.thing_ids.items()}
