"""``python -m weakseg`` (and ``torchrun ... -m weakseg train RECIPE``): the ``weakseg`` command."""

from weakseg.cli.main import app

if __name__ == "__main__":
    app(prog_name="weakseg")
