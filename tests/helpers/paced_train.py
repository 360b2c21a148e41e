"""Run by tests/test_reliability.py: ``l2o train`` with every epoch lasting at least half a
second, so that a signal sent after the first checkpoint reaches a run that is still training
however loaded the machine is."""

import sys
import time

from l2o.cli import main
from l2o.meta.trainer import MetaTrainer

if __name__ == "__main__":
    train_epoch = MetaTrainer._train_epoch

    def paced(self, *args, **kwargs):
        time.sleep(0.5)
        return train_epoch(self, *args, **kwargs)

    MetaTrainer._train_epoch = paced
    sys.exit(main(["train", *sys.argv[1:]]))
