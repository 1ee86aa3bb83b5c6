import sys
from pathlib import Path

# The helpers beside the tests (synthetic data, the subprocess training script) import as top-level modules.
# (One torch thread for in-process tests is set by tests/conftest.py; subprocesses set their own.)
sys.path.insert(0, str(Path(__file__).parent))
