# asgi.deploy: every developer and CI entry point. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
# The second controller toolchain (ansible-core 2.21 on Python 3.13): sanity, unit tests and the deploy scenario.
VENV_2_21 := $(CURDIR)/.venv-2.21
# A Python 3.13 that runs: one pyenv keeps (its shims only run the selected version), or one on PATH.
PYTHON_3_13 := $(firstword $(foreach p,$(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13),$(shell $(p) -c 'print("$(p)")' 2>/dev/null)))
export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/.config/containers/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export LAB_IMAGE_DEBIAN12 := $(shell images/build.sh --print-tag debian12)
export LAB_IMAGE_DEBIAN13 := $(shell images/build.sh --print-tag debian13)
export LAB_IMAGE_POSTGRESQL := $(shell images/build.sh --print-tag debian12-postgresql)

SCENARIOS := $(sort $(patsubst extensions/molecule/%/molecule.yml,%,$(wildcard extensions/molecule/*/molecule.yml)))
# Scenarios `make test` runs first: the platform before anything built on it.
SCENARIO_ORDER := lab $(filter-out lab,$(SCENARIOS))
# `make test` is three lines side by side, each a list of jobs, the longest job (faults) alone on its line: alone, a
# scenario keeps two cores about two-thirds busy (much of a deploy is waiting on gates, hooks and drains), so three
# lines fill the two cores. Line 1: the faults scenario. Line 2: the deploy scenario, then the quick benchmark.
# Line 3: lint, unit and playbooks, the scenarios without load, the smoke scenario on ansible-core 2.21, the docs test.
# The full scenarios run on 2.19; 2.21 gets sanity, unit tests and the smoke.
QUIET_SCENARIOS := lab release service
TIMED := tools/timed.sh
# The molecule scenarios' SSH key (root's and deploy's authorized key on their hosts; see extensions/molecule/config.yml).
MOLECULE_KEY := build/molecule-ssh/id_ed25519
.PHONY: help prereqs venv venv-2.19 images lock check-locks readmes lint lint-steps unit unit-steps playbooks checks line-faults line-deploy line-checks molecule molecule-2.21 docs-test bench bench-quick leftovers test check scenario lab lab-down demo build clean

help: ## List the targets
	@grep -hE '^[a-z0-9.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

prereqs: ## Install the system packages the lab and the tests need (apt; run as root: sudo make prereqs)
	tools/prereqs.sh install

venv: $(VENV)/.synced $(VENV_2_21)/.synced ## Install the pinned, hash-checked toolchains into .venv (2.19) and .venv-2.21

venv-2.19: $(VENV)/.synced ## Install the first toolchain only (ansible-core 2.19 on the system's Python 3.11): enough for the demo

$(VENV)/.synced: requirements/uv.txt requirements/dev.txt
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/uv.txt
	$(VENV)/bin/uv pip sync --quiet --require-hashes --python $(VENV)/bin/python requirements/dev.txt
	touch $@

$(VENV_2_21)/.synced: $(VENV)/.synced requirements/dev-2.21.txt
	@test -n "$(PYTHON_3_13)" || { echo "venv: the 2.21 toolchain needs Python 3.13 (on PATH or under ~/.pyenv/versions):" \
	  "pyenv install 3.13, or on Debian 13 apt install python3.13-venv; make demo needs only the first toolchain"; exit 2; }
	test -x $(VENV_2_21)/bin/python || $(VENV)/bin/uv venv --quiet --python $(PYTHON_3_13) $(VENV_2_21)
	$(VENV)/bin/uv pip sync --quiet --require-hashes --python $(VENV_2_21)/bin/python requirements/dev-2.21.txt
	touch $@

images: ## Build the Debian 12 and 13 test images, and Debian 12 with PostgreSQL (no-op when the recipe is unchanged)
	images/build.sh debian12 debian13 debian12-postgresql

lock: venv ## Re-resolve the hashed lockfiles from their .in files
	tools/locks.sh compile

check-locks: venv ## Fail when a lockfile is stale against its input
	tools/locks.sh check

readmes: venv ## Regenerate each role's README.md from its meta/argument_specs.yml
	python tools/argument_specs.py readme roles

lint: venv ## yamllint, ansible-lint (production), ruff, argument_specs and lock checks, ansible-test sanity
	$(TIMED) "$(STAGE)lint" $(MAKE) --no-print-directory lint-steps

lint-steps:
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .
	python tools/argument_specs.py check roles
	python tools/argument_specs.py readme --check roles
	python tools/docs.py check
	tools/locks.sh check
	tools/ansible-test.sh sanity

unit: venv ## Unit tests: the modules and plugins, the tooling, the example apps; ansible-test units
	$(TIMED) "$(STAGE)unit" $(MAKE) --no-print-directory unit-steps

unit-steps:
	mkdir -p build/junit
	uv pip install --quiet --no-deps --reinstall-package demo-app --reinstall-package live --python $(VENV)/bin/python ./app ./examples/live
	pytest -q --junitxml=build/junit/unit.xml tests/unit tests/tools app/tests examples/notes/tests examples/live/tests
	tools/compat.sh
	tools/ansible-test.sh units

playbooks: venv ## Controller-side playbooks for real: the app's CI gate (check.yml) and the installed collection
	mkdir -p build/junit
	$(TIMED) "$(STAGE)playbooks" pytest -q -p no:cacheprovider --junitxml=build/junit/playbooks.xml tests/playbooks

molecule: venv images $(MOLECULE_KEY) ## Every molecule scenario, in order (RUN="lab deploy" for some)
	mkdir -p build/logs
	for s in $(or $(RUN),$(SCENARIO_ORDER)); do \
	  echo "== molecule test -s $$s"; \
	  $(TIMED) "$(STAGE)$$s$(LANE)" bash -o pipefail -c "COLUMNS=200 molecule test -s $$s 2>&1 | tee build/logs/molecule-$$s$(LANE).log" \
	    || { tools/failure-summary.sh build/logs/molecule-$$s$(LANE).log; exit 1; }; \
	done

molecule-2.21: venv images ## The smoke scenario (default) with ansible-core 2.21 on Python 3.13 as the controller (RUN= for others)
	PATH=$(VENV_2_21)/bin:$$PATH ASGI_LANE=2.21 $(MAKE) --no-print-directory molecule RUN="$(or $(RUN),default)" LANE=-2.21

# Made once, before the lines start (they share it); written whole or not at all.
$(MOLECULE_KEY):
	mkdir -p $(@D)
	rm -f $@.tmp $@.tmp.pub
	ssh-keygen -q -t ed25519 -N '' -C asgi-deploy-molecule -f $@.tmp
	mv $@.tmp.pub $@.pub
	mv $@.tmp $@

bench: venv images ## Every benchmark (< 20 min): bench/results/latest.json, docs/benchmarks.md and plots
	@command -v wrk > /dev/null || { echo "bench: needs wrk (apt-get install wrk)"; exit 2; }
	python bench/run.py
	python bench/report.py

bench-quick: venv images ## CI: handover and restart on one host under load; fails on any failed request
	python bench/run.py --quick

leftovers: ## Fail when a test left a process or container behind
	tools/leftovers.sh

checks: venv ## Everything that needs no container: lint, unit, playbooks (one after the other)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory playbooks

check: venv images $(MOLECULE_KEY) ## The inner loop (< 10 min): lint and sanity, unit tests (one toolchain), playbooks, the smoke scenario
	rm -f build/timings.tsv
	TOOLCHAINS=.venv $(MAKE) --no-print-directory checks STAGE="check / "
	$(MAKE) --no-print-directory molecule RUN=default STAGE="check / "
	@python tools/timings.py --budget 10

# -k: when a line fails the others still run to their end, so one CI log names every failure.
test: venv $(MOLECULE_KEY) ## Everything CI runs, in three lines side by side; ends with where the time went
	@tools/prereqs.sh check
	rm -rf build/timings.tsv build/junit
	status=0; \
	$(TIMED) "all lines" $(MAKE) --no-print-directory -j3 -k --output-sync=recurse line-faults line-deploy line-checks && \
	$(TIMED) "leftovers" tools/leftovers.sh || status=$$?; \
	python tools/timings.py --budget 40; exit $$status

line-faults: venv images ## CI line 1: the faults scenario (the longest job)
	$(MAKE) --no-print-directory molecule RUN=faults STAGE="faults line / "

line-deploy: venv images ## CI line 2: the deploy scenario, then the quick benchmark
	$(MAKE) --no-print-directory molecule RUN=deploy STAGE="deploy line / "
	$(TIMED) "deploy line / bench-quick" $(MAKE) --no-print-directory bench-quick

line-checks: venv images ## CI line 3: lint, unit, playbooks; the quiet scenarios; the smoke on ansible-core 2.21; the docs test
	$(MAKE) --no-print-directory checks STAGE="checks line / "
	$(MAKE) --no-print-directory molecule RUN="$(QUIET_SCENARIOS)" STAGE="checks line / "
	$(MAKE) --no-print-directory molecule-2.21 STAGE="checks line / "
	$(MAKE) --no-print-directory docs-test STAGE="checks line / "

docs-test: venv images ## The docs are tests: every command block of README.md and docs/ that can run, run as written against the lab
	$(TIMED) "$(STAGE)docs-test" python tools/docs.py run

scenario: venv images $(MOLECULE_KEY) ## One molecule scenario: make scenario NAME=lab [CMD=converge]
	@test -n "$(NAME)" || { echo "usage: make scenario NAME=<$(SCENARIOS)>"; exit 2; }
	molecule $(or $(CMD),test) -s $(NAME)

lab: venv-2.19 ## Start web1..web3 over SSH on loopback (safe to repeat)
	@tools/prereqs.sh check
	tools/lab.sh up

lab-down: ## Remove the lab: containers, network, key
	tools/lab.sh down

demo: lab ## Set up everything, deploy 1.0.0 then 2.0.0 to the lab over SSH, print the status
	ansible-playbook -i inventories/lab/hosts.yml playbooks/deploy.yml -e version=1.0.0
	ansible-playbook -i inventories/lab/hosts.yml playbooks/deploy.yml -e version=2.0.0 -e app_source=$$(tools/app-at-version.sh 2.0.0)
	ansible-playbook -i inventories/lab/hosts.yml playbooks/status.yml

build: venv ## Build the collection tarball into build/
	ansible-galaxy collection build --force --output-path build .

clean: lab-down ## Remove the venv and build output
	rm -rf $(VENV) build .ansible
