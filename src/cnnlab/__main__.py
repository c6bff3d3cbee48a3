"""``python -m cnnlab`` (also what torchrun runs) is the same as the ``cnnlab`` command."""

from cnnlab.cli.main import run

run()
