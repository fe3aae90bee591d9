"""``python -m xpt``: the ``xpt`` console script (e.g. ``torchrun ... -m xpt pretrain ...``)."""

from xpt.toolkit.cli import main

if __name__ == "__main__":
    main()
