"""Run by tests/test_reliability.py: takes ownership of the run directory given as argument,
prints ``held``, and keeps it until killed."""

import sys
import time

from l2o.run_directory import RunDirectory

if __name__ == "__main__":
    with RunDirectory(sys.argv[1]).owned():
        print("held", flush=True)
        time.sleep(600)
