"""``python -m cascade_vm``: the command line (see ``cascade_vm.cli``)."""

from cascade_vm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
