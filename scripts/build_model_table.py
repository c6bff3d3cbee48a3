"""Write the tables shipped in ``src/cnnlab/models``, which answer without building a network:

- ``zoo_table.json``: every registered model summarised at its own input and class count (parameters,
  MACs, description, and what one class more adds), the rows ``cnnlab models`` lists;
- ``zoo_summaries.json``: the whole per-layer summary of each model built by torchvision
  (``cnnlab.models._common.TORCHVISION_BUILT``) at its own input and class count, with what one class
  more changes, which ``cnnlab summary`` prints at that input without importing torchvision (and so
  TorchDynamo).

Run it after adding or changing a model (tests/models/test_summary.py rebuilds every row and entry and fails
while a table is stale), then read the diff. Each file is written atomically: a kill leaves the old one.

Usage (from the repository root): ``python scripts/build_model_table.py``
"""

from __future__ import annotations

import json

from cnnlab.cli.models import TABLE, model_names, zoo_table_row
from cnnlab.files.atomic import write_text
from cnnlab.models._common import TORCHVISION_BUILT
from cnnlab.models.summary import default_num_classes, summary
from cnnlab.summary_table import SHIPPED, per_class, summaries_text


def main() -> None:
    rows = [zoo_table_row(name) for name in model_names("*")]
    write_text(TABLE, json.dumps({"models": rows}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} models to {TABLE.name}")
    shipped = {}
    for name in sorted(TORCHVISION_BUILT):
        own, k = summary(name), default_num_classes(name)
        shipped[name] = (own, k, per_class(own, summary(name, num_classes=k + 1)))
    write_text(SHIPPED, summaries_text(shipped))
    print(f"wrote {len(shipped)} summaries to {SHIPPED.name}")


if __name__ == "__main__":
    main()
