# vmkube: every target sets up what it needs (venv, offline toolchain) on first use.
#   make up [STACK=local]      create or update a stack (default: the local libvirt stack)
#   make preview STACK=dev     show what `up` would change
#   make destroy STACK=local   remove everything the stack created
#   make test                  everything CI runs
#   make bench                 benchmarks; the table also goes to bench/latest.md
#   make toolchain             build the offline toolchain (pulumi, language host, vcsim)
STACK ?= local
PULUMI := tools/pulumi
PYTHON := .venv/bin/python

.PHONY: up preview destroy test bench toolchain venv stack

venv:
	@bash -c '. tools/lib.sh && vmkube_ensure_venv'

toolchain:
	@tools/build >/dev/null

stack: venv toolchain
	@$(PULUMI) stack select --create $(STACK) >/dev/null

up: stack
	$(PULUMI) up --yes --stack $(STACK)

preview: stack
	$(PULUMI) preview --diff --stack $(STACK)

destroy: venv toolchain
	$(PULUMI) destroy --yes --stack $(STACK)

test: venv toolchain
	$(PYTHON) -m pytest

bench: venv toolchain
	$(PYTHON) tools/bench.py
