"""``mgs`` with every block gradient of a step on several views all-reduced by the rows the views reached
(``SPARSE_FROM`` 0), for the test that compares it with the all-reduce of every row. Run under ``torchrun``."""

from momentum_gs.cli import entry
from momentum_gs.train import views

if __name__ == "__main__":
    views.SPARSE_FROM = 0
    entry()
