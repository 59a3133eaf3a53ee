"""Runs a seed program under PySpark with the smallest change that lets it run where the seed's
text does not, without editing the program file (make_goldens.py uses it; README.md lists which
program needs which and why).

    accommodate.py [--batch-duration] [--checkpoint DIR] PROGRAM.py [ARG ...]

--batch-duration  gives PySpark's StreamingContext the attribute ``_batchDuration`` (the
                  batchDuration argument, as given), which seed 000 prints and PySpark 3.5 lacks.
--checkpoint DIR  sets DIR as the checkpoint directory at ``start()`` when the program set none
                  (seed 002's updateStateByKey example, which PySpark refuses to start without).
"""

import argparse
import runpy
import sys

from pyspark.streaming import StreamingContext


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-duration", action="store_true")
    parser.add_argument("--checkpoint", metavar="DIR")
    parser.add_argument("program")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()

    if options.batch_duration:
        original_init = StreamingContext.__init__

        def __init__(self, sparkContext, batchDuration=None, jssc=None):
            original_init(self, sparkContext, batchDuration, jssc)
            self._batchDuration = batchDuration

        StreamingContext.__init__ = __init__

    if options.checkpoint:
        original_checkpoint = StreamingContext.checkpoint
        original_start = StreamingContext.start

        def checkpoint(self, directory):
            self._accommodate_checkpoint_set = True
            return original_checkpoint(self, directory)

        def start(self):
            if not getattr(self, "_accommodate_checkpoint_set", False):
                checkpoint(self, options.checkpoint)
            return original_start(self)

        StreamingContext.checkpoint = checkpoint
        StreamingContext.start = start

    sys.argv = [options.program] + options.args
    runpy.run_path(options.program, run_name="__main__")


if __name__ == "__main__":
    main()
