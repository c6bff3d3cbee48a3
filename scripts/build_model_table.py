"""Write ``src/cnnlab/models/zoo_table.json``: every registered model summarised at its own input and
class count (parameters, MACs, description, and what one class more adds), the rows ``cnnlab models``
lists without building them.

Run it after adding or changing a model (tests/models/test_summary.py rebuilds every row and fails
while the table is stale), then read the diff.

Usage (from the repository root): ``python scripts/build_model_table.py``
"""

from __future__ import annotations

import json

from cnnlab.cli.models import TABLE, model_names, zoo_table_row


def main() -> None:
    rows = [zoo_table_row(name) for name in model_names("*")]
    text = json.dumps({"models": rows}, indent=1, ensure_ascii=False) + "\n"
    TABLE.write_text(text)
    print(f"wrote {len(rows)} models to {TABLE.name}")


if __name__ == "__main__":
    main()
