# eprobust: `make reproduce` runs the paper pipeline (cpu preset), `make test` runs the tests.
# Both create .venv on first use. Override e.g. `make reproduce PRESET=paper DATA=/data/cifar10`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU/CUDA wheels that install from this project's machines; GPU users override, e.g.
#   make install TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cu124"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
PRESET ?= cpu
EXECUTOR ?=
EXECUTOR_PARAMS ?=
DATA   ?= $(or $(EPROBUST_DATA),$(wildcard ../shared/data/cifar10),data/cifar10)
export EPROBUST_DATA := $(abspath $(DATA))

.PHONY: install reproduce adaptive test test-fast lab clean-nbs

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	# torchattacks pins requests~=2.25.1, which no resolver can satisfy beside papermill: install it alone
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1
	# the frost textures of CIFAR-10-C (image files only; its scikit-image/numba deps are not needed)
	$(BIN)/pip install -q --no-deps imagecorruptions-imaug==1.1.5
	touch $@

install: $(BIN)/.installed

# the paper pipeline: every stage notebook in order with papermill -> results/, figures/<preset>/, runs/<preset>/
# EXECUTOR=slurm|local runs the stages as submitit jobs (README: On a cluster), e.g. EXECUTOR_PARAMS="slurm_partition=gpu"
reproduce: install
	$(BIN)/eprobust reproduce --preset $(PRESET) $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(EXECUTOR_PARAMS),--executor-params "$(EXECUTOR_PARAMS)")

# issue 18's adaptive evaluation (worst case per image over every attack, masking checks), then the figures again:
# 46 min on 2 cores at cpu scale, so `reproduce` leaves it out for the cpu preset
adaptive: install
	$(BIN)/eprobust reproduce --preset $(PRESET) --stages adaptive,figures

# notebook tests (nbdev-test, slow cells included), then pytest; outputs go to .test_out/, not the project
test: install
	EPROBUST_OUT=$(CURDIR)/.test_out $(BIN)/nbdev-test --n-workers 1 --flags slow
	EPROBUST_OUT=$(CURDIR)/.test_out $(BIN)/pytest -q tests

# the quick tier only: notebook cells without `#| slow`, pytest without the slow marker
test-fast: install
	EPROBUST_OUT=$(CURDIR)/.test_out $(BIN)/nbdev-test --n-workers 1
	EPROBUST_OUT=$(CURDIR)/.test_out $(BIN)/pytest -q tests -m "not slow"

lab: install
	$(BIN)/pip install -q jupyterlab && $(BIN)/jupyter lab nbs/

# the gates CI checks: notebooks clean and the library in sync with them
clean-nbs: install
	$(BIN)/nbdev-clean && $(BIN)/nbdev-export
