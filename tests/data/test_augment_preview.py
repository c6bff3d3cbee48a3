"""``cnnlab augment-preview`` writes a before/after grid; bad input is a clear error."""

from PIL import Image

from cnnlab.cli.main import main


def test_preview_png(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert (
        main(
            [
                "augment-preview",
                "--data",
                "digits",
                "--augment",
                "crop(pad=1)+erase",
                "-n",
                "8",
                "--mixup",
                "0.4",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    w, h = Image.open(out).size
    assert w > 300 and h > 150 and "original" in capsys.readouterr().out


def test_unknown_augmentation_is_a_user_error(tmp_path, capsys):
    assert main(["augment-preview", "--data", "digits", "--augment", "flipp", "--output", str(tmp_path / "x.png")]) == 1
    assert "unknown augmentation 'flipp'" in capsys.readouterr().err


def test_a_folder_with_a_leak_or_a_broken_file_previews(tmp_path, capsys):
    """A preview trains nothing: copies across splits do not stop it, and --on-bad-image skip is taken."""
    import shutil

    import numpy as np
    from PIL import Image

    from cnnlab.cli.main import main

    for split in ("train", "test"):
        (tmp_path / "d" / split / "x").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i + 20 * (split == "test"), np.uint8)).save(
                tmp_path / "d" / split / "x" / f"{i}.png"
            )
    shutil.copy(tmp_path / "d" / "test" / "x" / "0.png", tmp_path / "d" / "train" / "x" / "leak.png")
    (tmp_path / "d" / "train" / "x" / "bad.png").write_bytes(b"not a png")
    argv = ["augment-preview", "--data", f"folder:{tmp_path / 'd'}", "-n", "2", "--output", str(tmp_path / "p.png")]
    assert main(argv) == 1 and "--on-bad-image skip" in capsys.readouterr().err
    assert main([*argv, "--on-bad-image", "skip"]) == 0
    assert (tmp_path / "p.png").is_file()
