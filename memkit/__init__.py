"""memkit: distill agent runs into versioned, outcome-scored playbooks.

    import memkit
    bank = memkit.open("path/to/project")          # read-only; write=True to change things
    bank.sql("SELECT outcome, count(*) FROM trajectories GROUP BY 1")
"""

import os

# litellm otherwise fetches its model cost map over the network at import; memkit works offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from memkit.bank import Bank, open  # noqa: E402
from memkit.errors import MemkitError  # noqa: E402

__all__ = ["Bank", "MemkitError", "open", "init"]
__version__ = "0.1.0"


def init(path=".") -> Bank:
    """Create (or reuse) the bank at `path` and return it open for writing."""
    return Bank.init(path)[0]
