"""Where the repository keeps things, found from this file: the scripts work from any directory."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
