# Two commands for a newcomer: `make demo` and `make test` (each installs what it needs first).
PYTHON ?= python3
# These pins match the wheels on the project's build machines (taken from local disk there);
# elsewhere override them, e.g. `make demo TORCH_PINS=` to keep the torch you have.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# the near-duplicate search's index (faiss) and local features (OpenCV), at the versions tested here
INDEX_PINS ?= faiss-cpu==1.15.1 opencv-python-headless==4.14.0.94
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test bench bench-leakage bench-label-noise bench-throughput bench-pixel-attack bench-scale bench-faults bench-clients bench-stream bench-estimate bench-threads

install:
	$(PIP) $(TORCH_PINS) $(INDEX_PINS) -e ".[dev]"

demo: install
	mkdir -p reports
	$(PYTHON) -m dnncheck audit sklearn:digits --json reports/demo.json --html reports/demo.html

# two workers, one thread each (tests/conftest.py): 199 s instead of 324 s on the 2-core machine
test: install
	$(PYTHON) -m pytest -n 2

bench: install
	$(PYTHON) benchmarks/bench_demo.py

bench-leakage: install
	$(PYTHON) benchmarks/bench_leakage.py

bench-label-noise: install
	$(PYTHON) benchmarks/bench_label_noise.py

bench-throughput: install
	$(PYTHON) benchmarks/bench_throughput.py

bench-pixel-attack: install
	$(PYTHON) benchmarks/bench_pixel_attack.py

bench-scale: install
	$(PYTHON) benchmarks/bench_scale.py

bench-faults: install
	$(PYTHON) benchmarks/bench_faults.py

bench-clients: install
	$(PYTHON) benchmarks/bench_clients.py

bench-stream: install
	$(PYTHON) benchmarks/bench_dataset_stream.py

bench-estimate: install
	$(PYTHON) benchmarks/bench_estimate.py

bench-threads: install
	$(PYTHON) benchmarks/bench_threads.py
