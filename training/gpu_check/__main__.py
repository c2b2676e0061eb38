"""``python -m training.gpu_check`` (what ``scripts/gpu_check.sh`` runs): ``training.gpu_check.main``."""

from training.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())
