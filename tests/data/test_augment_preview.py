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
