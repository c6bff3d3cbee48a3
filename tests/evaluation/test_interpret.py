import csv

import numpy as np
import pytest
from sklearn import metrics as skm

from cnnlab.evaluation.interpret import (
    CSV_COLUMNS,
    misclassified,
    most_confused,
    prediction_table,
    sample_losses,
    top_losses,
    write_misclassified_csv,
)
from cnnlab.evaluation.metrics import confusion_matrix, softmax


@pytest.fixture
def logits_and_targets():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 120)
    logits = rng.normal(size=(120, 4)) + 1.2 * np.eye(4)[y]
    return logits, y


def test_sample_losses_average_to_scikit_learn_log_loss(logits_and_targets):
    logits, y = logits_and_targets
    losses = sample_losses(logits, y)
    assert losses.shape == (120,) and (losses > 0).all()
    assert losses.mean() == pytest.approx(skm.log_loss(y, softmax(logits), labels=range(4)))
    assert losses[0] == pytest.approx(-np.log(softmax(logits)[0, y[0]]))


def test_most_confused_orders_off_diagonal_cells():
    # cats (0) often called dogs (1); trucks (2) sometimes called cars... the seed's classic pairs
    cm = np.array([[50, 9, 1], [4, 40, 0], [2, 0, 30]])
    rows = most_confused(cm, ["cat", "dog", "truck"], top=3)
    assert [(r["true"], r["pred"], r["count"]) for r in rows] == [
        ("cat", "dog", 9),
        ("dog", "cat", 4),
        ("truck", "cat", 2),
    ]
    assert rows[0]["share"] == pytest.approx(9 / 60)
    assert len(most_confused(cm, ["cat", "dog", "truck"], top=10, min_count=3)) == 2  # 9 and 4 only
    assert most_confused(np.diag([5, 5]), ["a", "b"]) == []  # a perfect model confuses nothing


def test_prediction_table_fields_and_top_losses(logits_and_targets):
    logits, y = logits_and_targets
    names = ["a", "b", "c", "d"]
    rows = prediction_table(logits, y, names, ids=[f"img{i}.png" for i in range(120)])
    p = softmax(logits)
    r = rows[7]
    assert r["id"] == "img7.png" and r["true"] == names[y[7]] and r["pred"] == names[p[7].argmax()]
    assert r["confidence"] == pytest.approx(p[7].max()) and r["p_true"] == pytest.approx(p[7, y[7]])
    assert r["correct"] == (p[7].argmax() == y[7])
    worst = top_losses(rows, 10)
    assert [w["loss"] for w in worst] == sorted((w["loss"] for w in rows), reverse=True)[:10]
    wrong = misclassified(rows)
    assert len(wrong) == int((p.argmax(1) != y).sum()) and not any(w["correct"] for w in wrong)
    cm = confusion_matrix(y, p.argmax(1), 4)
    assert len(wrong) == cm.sum() - np.trace(cm)


def test_misclassified_csv_lists_every_mistake_highest_loss_first(tmp_path, logits_and_targets):
    logits, y = logits_and_targets
    rows = prediction_table(logits, y, ["a", "b", "c", "d"])
    path = write_misclassified_csv(tmp_path / "misclassified.csv", rows)
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == CSV_COLUMNS
    assert len(read) == sum(not r["correct"] for r in rows)
    losses = [float(r["loss"]) for r in read]
    assert losses == sorted(losses, reverse=True)
    assert all(r["true"] != r["pred"] for r in read)
    first = rows[int(read[0]["index"])]
    assert read[0]["id"] == first["id"] and float(read[0]["confidence"]) == pytest.approx(first["confidence"], abs=1e-6)


def test_run_predictions_on_an_image_folder_names_files(tmp_path):
    from PIL import Image

    from cnnlab.api import train
    from cnnlab.evaluation.interpret import run_predictions

    rng = np.random.default_rng(0)
    for c, level in (("dark", 40), ("light", 200)):
        (tmp_path / "shapes" / c).mkdir(parents=True)
        for i in range(10):
            pixels = (rng.random((8, 8)) * 30 + level).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "shapes" / c / f"{i}.png")
    overrides = {"output.progress": False, "output.plots": False, "data.image_size": 8, "data.test_fraction": 0.3}
    overrides["data.num_workers"] = 0  # no worker processes to start for 20 tiny images
    data = f"folder:{tmp_path / 'shapes'}"
    run = train(data=data, model="mnist_cnn", epochs=1, out=tmp_path / "runs", overrides=overrides, log=print).run_dir
    rp = run_predictions(run)
    with open(run / "split.csv", newline="") as f:
        tested = [row["source"] for row in csv.DictReader(f) if row["split"] == "test"]
    assert rp.ids == tested and all(i.endswith(".png") and "/" in i for i in rp.ids)
    assert rp.images(range(len(rp.ids))).shape == (len(tested), 8, 8, 3)  # folders decode to RGB
    first = np.asarray(Image.open(tmp_path / "shapes" / rp.ids[0]), dtype=np.float32) / 255
    assert np.allclose(rp.images([0])[0, ..., 0], first, atol=1 / 255)  # the image behind the id
