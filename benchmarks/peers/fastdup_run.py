"""fastdup on a folder, as its quick start runs it (for bench_scale.py --peers; never imported by dnncheck)."""

import sys
import tempfile

import fastdup

with tempfile.TemporaryDirectory() as work:
    fastdup.create(work_dir=work, input_dir=sys.argv[1]).run(overwrite=True, num_threads=2, verbose=False)
