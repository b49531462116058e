# Two entry points, each doing its own set-up in a local virtual environment:
#   make demo   trains and evaluates MANet on the embedded synthetic MA-52
#   make test   runs the test suite
# and the detection demo (MMA-52), on features of the recognition demo's MANet:
#   make detection-demo
PYTHON ?= python3
VENV ?= .venv
WORKDIR ?= workdirs/demo
DETECTION_WORKDIR ?= workdirs/mmad_demo
TEST_WORKERS ?= 2

.PHONY: demo test install detection-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-dev-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -r requirements-dev-nodeps.txt
	touch $@

demo: install
	PYTHONPATH=. $(VENV)/bin/python run.py --config=configs/demo.py --workdir=$(WORKDIR)

# The recognition demo first: its workdir is the detector's backbone (a
# finished run returns at once).
detection-demo: demo
	PYTHONPATH=. $(VENV)/bin/python run.py --config=configs/mmad_demo.py \
	    --workdir=$(DETECTION_WORKDIR) \
	    --config.detection.backbone_workdir=$(WORKDIR)

test: install
	PYTHONPATH=. $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --durations=15 tests
