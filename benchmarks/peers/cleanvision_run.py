"""cleanvision on a folder, every default issue type (for bench_scale.py --peers; never imported by dnncheck)."""

import sys

from cleanvision import Imagelab

Imagelab(data_path=sys.argv[1]).find_issues()
