# One-command set-up: `make run` starts the hotline, `make test` runs the whole suite.
# Both install what is missing first: Debian packages (deploy/install-system.sh), then a virtualenv
# with exactly the packages of the hash-pinned lock (requirements.lock), installed by a pinned uv.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
TOOLS  := .venv-tools
UV     := $(TOOLS)/bin/uv
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
NPM_DIR   := deploy/npm
NPM_STAMP := $(NPM_DIR)/node_modules/.installed
# Bytecode is compiled at install, as pip does: pydub 0.25.1 has escape sequences that Python 3.11
# warns about when it compiles them, and pytest treats warnings as errors.
# uv: never fetch a Python of its own, copy files (the cache may sit on another file system).
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
export UV_NO_PROGRESS := 1

.PHONY: run test install system lockcheck lock audit lint bench bench-routing bench-estimate bench-pops bench-soak bench-faults bench-call-control bench-speech-accuracy bench-speech-endpoint bench-campaign bench-recording bench-transcribe bench-alerts bench-planning bench-webrtc bench-workers clean prompts

run: install
	$(BIN)/ivr run

# The unit and service tiers run in three processes (pytest-xdist: each worker has its own Redis, and
# ports from chunks no other process holds, tests/ports.py; three keep both cores busy while tests
# wait on the servers they start: 287 s instead of 364 s with two, 319 s with four; work stealing
# took 405 s where the default took 381 and 383, --dist loadgroup 437 s where it took 398). Then the
# end-to-end tier in three processes, a test module at a time each (--dist loadscope: a module's own
# hotline starts once, in one process; modules in collection order, those on the shared hotline
# first, see tests/e2e/conftest.py), with the lint beside it: the e2e tests mostly wait on calls in
# real time, the unit tier is bound by the CPU. (Two e2e processes took 498 s with the forked
# workers; three, before them, 473 s instead of about 600, but a hotline's workers did not come up
# within 30 s while the ten browser agents ran beside: that module is `serial` now.) Either failing
# fails the target, the lint's output printed after the tests'. Last the tests marked `serial` (timing- or load-sensitive, or heavy enough to starve
# others: the ten browser agents) alone: run beside each other, the media tests failed (a greeting
# correlation of 0.70 with speech recognition beside).
LINT_LOG := $(VENV)/lint.log
# the modules with serial tests: collecting every service and e2e module to pick them took 10 s
SERIAL_MODULES = $(shell grep -l "pytest.mark.serial" tests/service/*.py tests/e2e/*.py)
test: install
	$(BIN)/pytest -p no:cacheprovider -n 3 -m "not serial" --durations=15 tests/unit tests/service $(PYTEST_ARGS)
	@( $(LINT) ) > $(LINT_LOG) 2>&1 & lint=$$!; \
	$(BIN)/pytest -p no:cacheprovider -n 3 --dist loadscope --no-loadscope-reorder -m "not serial" --durations=15 tests/e2e $(PYTEST_ARGS); \
	rc=$$?; wait $$lint; lint_rc=$$?; echo "--- lint:"; cat $(LINT_LOG); \
	test $$lint_rc -eq 0 && test $$rc -eq 0
	$(BIN)/pytest -p no:cacheprovider -m serial --durations=10 $(SERIAL_MODULES) $(PYTEST_ARGS)

install: system lockcheck $(STAMP) $(NPM_STAMP)

system:
	@bash deploy/install-system.sh

# pyproject.toml and requirements.lock must agree before anything is installed from the lock.
lockcheck:
	@$(PYTHON) deploy/python/lock.py --check

# uv itself, pinned with hashes and installed by pip, in a virtualenv of its own.
$(UV): deploy/python/uv.txt
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --require-hashes --no-deps -r deploy/python/uv.txt
	@$(UV) --version

# The hotline's virtualenv holds exactly the lock (sync removes anything else), then the project
# itself, editable, built with the locked setuptools (no build isolation, so nothing unpinned).
$(STAMP): $(LOCK) pyproject.toml $(UV)
	test -x $(BIN)/python || $(UV) venv -q --python $(PYTHON) $(VENV)
	$(UV) pip sync -q --compile-bytecode --python $(BIN)/python --require-hashes $(LOCK)
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The browser libraries the agent desktop serves (SIP.js for its phone, ivr/cti/webrtc.py): exactly
# deploy/npm/package-lock.json (integrity hashes checked by npm), no install scripts run, nothing
# vendored into the repository. A changed lock reinstalls. npm is Debian's (deploy/install-system.sh).
$(NPM_STAMP): $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	cd $(NPM_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

# A deliberate refresh: re-resolve every lock to the newest versions within pyproject.toml's ranges.
# Then run `make test` on it and commit pyproject.toml and the locks together.
lock: $(UV)
	$(PYTHON) deploy/python/lock.py --uv $(UV)

# Known vulnerabilities of the locked packages (the index's advisory data); not part of `make test`.
audit: lockcheck $(UV)
	$(TOOLS)/bin/python deploy/python/audit.py $(AUDIT_ARGS)

LINT = $(BIN)/ruff check ivr tests bench deploy/python && $(BIN)/mypy ivr bench deploy/python && $(BIN)/lint-imports
lint: install
	$(LINT)

bench: install  # every section, then the faults, the 10,000-record campaign, recording, transcription, alerts, planning, browser phones, worker costs, then the 30-minute soak (about 95 min)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/campaign.py
	$(BIN)/python bench/recording.py
	$(BIN)/python bench/transcribe.py $(TRANSCRIBE_ARGS)
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/planning.py
	nice -n 5 $(BIN)/python bench/webrtc.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/soak.py

bench-workers: install  # what a worker costs, forked vs exec'd: start, idle PSS and CPU, stop of 50 and 200 workers (about 6 min; WORKERS_ARGS="--counts 50 --modes fork" about 1)
	$(BIN)/python bench/workers.py $(WORKERS_ARGS)

bench-routing: install  # routing decision latency: 1,000 agents, 50 skills, 5,000 waiting callers
	$(BIN)/python bench/routing.py

bench-recording: install  # CPU and disk per recorded call-hour: 8 calls, recording off then on (about 4 min)
	$(BIN)/python bench/recording.py

bench-faults: install  # the seven faults under traffic at bench scale, each with what was lost (about 10 min)
	$(BIN)/python bench/faults.py

bench-call-control: install  # call-control command latency with 200 calls up; the leg policy's callers per worker (about 5 min)
	$(BIN)/python bench/call_control.py $(CC_ARGS)

bench-speech-accuracy: install  # Korean phrases, noise, codecs, digits: raw Vosk vs real SIP calls (about 25 min; SA_ARGS=--quick about 5)
	nice $(BIN)/python bench/speech_accuracy.py $(SA_ARGS)

bench-speech-endpoint: install  # end of utterance, offline: the speech service's decoder on the accuracy corpus (about 4 min; SE_ARGS=--quick --rows)
	nice $(BIN)/python bench/speech_endpoint.py --save $(SE_ARGS)

bench-transcribe: install  # recordings to transcripts: real-time factor, call-hours per core-hour, lag under a backlog, then while a hotline carries calls (about 10 min; TRANSCRIBE_ARGS=--quick about 2)
	$(BIN)/python bench/transcribe.py $(TRANSCRIBE_ARGS)

bench-campaign: install  # a 10,000-record campaign dialling a sipp phone at 25/s: achieved rate, pacing error, CPU (about 8 min; CAMPAIGN_ARGS=--records 500 for a smoke run)
	$(BIN)/python bench/campaign.py $(CAMPAIGN_ARGS)

bench-pops: install  # screen-pop latency: offer -> desktop WebSocket with 500 agents connected (about 30 s)
	$(BIN)/python bench/pops.py

bench-estimate: install  # wait-estimate error against real waits in a simulated queue day (about 100 s)
	$(BIN)/python bench/estimate.py

bench-alerts: install  # one evaluation of every alert rule with 200 queues and 2,000 agents on a real Redis
	$(BIN)/python bench/alerts.py $(ALERTS_ARGS)

bench-planning: install  # forecast (every method, back-tested) and staffing for a year of interval history
	$(BIN)/python bench/planning.py $(PLANNING_ARGS)

bench-soak: install  # 30 min at 70% of the newest measured capacity: RSS flat, no failed call, no key leak
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

bench-webrtc: install  # browser phones: rtpengine's CPU and added delay per call, browser agents per core, offer -> ringing (about 6 min; WEBRTC_ARGS=--quick about 2)
	nice -n 5 $(BIN)/python bench/webrtc.py $(WEBRTC_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache build *.egg-info
