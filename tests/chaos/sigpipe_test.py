#!/usr/bin/env python3
"""retort ignores SIGPIPE: writing to a connection or pipe whose reader is
gone fails with EPIPE instead of killing the process without a word.

Regression test for a bug the chaos soak found: when a data-parallel rank was
SIGKILLed, a surviving rank sometimes died of SIGPIPE (exit -13, Gloo writes
without MSG_NOSIGNAL) instead of exiting 1 with "restart them all with
--resume=auto". Here `retort help` writes its usage into a pipe whose read
end is already closed.

usage: sigpipe_test.py RETORT_BINARY
"""

import os
import signal
import subprocess
import sys


def main(retort):
    r, w = os.pipe()
    os.close(r)  # nobody will ever read
    p = subprocess.Popen([retort, "help"], stdout=w, stderr=subprocess.DEVNULL)
    os.close(w)
    code = p.wait(timeout=60)
    if code == -signal.SIGPIPE:
        print("FAIL: retort was killed by SIGPIPE")
        return 1
    print("OK: retort survived a closed pipe (exit %d)" % code)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(64)
    sys.exit(main(sys.argv[1]))
