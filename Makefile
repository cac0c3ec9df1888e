# vmkube: every target sets up what it needs (host packages, venv, offline toolchain) on first use.
#   make up [STACK=local]      create or update a stack (default: the local libvirt stack)
#   make preview STACK=dev     show what `up` would change
#   make destroy STACK=local   remove everything the stack created
#   make test                  everything CI runs
#   make bench                 benchmarks; the table also goes to bench/latest.md
#   make toolchain             build the offline toolchain (pulumi, language host, vcsim, Kubernetes, etcd)
#   make image                 build the libvirt node image (Debian 12, from Debian packages)
#   make host                  install and start what the libvirt backend needs on this machine
STACK ?= local
PULUMI := tools/pulumi
PYTHON := .venv/bin/python
# The local stack runs on this machine's libvirt: it needs the host set up and the image built.
LOCAL := $(if $(filter local,$(STACK)),image,)

.PHONY: up preview destroy test bench toolchain venv stack host image

host:
	@tools/host-setup

venv: host
	@bash -c '. tools/lib.sh && vmkube_ensure_venv'

toolchain:
	@tools/build >/dev/null
	@tools/build kubernetes etcd pause hello kwok

image: host
	@tools/build-image >/dev/null

stack: venv toolchain
	@$(PULUMI) stack select --create $(STACK) >/dev/null

up: $(LOCAL) stack
	$(PULUMI) up --yes --refresh --stack $(STACK)
	@echo
	@echo "Use the cluster:"
	@echo "  tools/pulumi stack output --stack $(STACK) --show-secrets kubeconfig > kubeconfig-$(STACK)"
	@echo "  kubectl --kubeconfig kubeconfig-$(STACK) get nodes    # kubectl: $$(tools/build --tool-dir kubernetes)/kubectl"
	@echo "The apps answer from this machine (curl one of these URLs):"
	@$(PULUMI) stack output --stack $(STACK) apps 2>/dev/null || echo "  (no apps in this stack)"

preview: $(LOCAL) stack
	$(PULUMI) preview --diff --stack $(STACK)

destroy: venv toolchain
	$(PULUMI) destroy --yes --stack $(STACK)

test: venv toolchain image
	$(PYTHON) -m pytest

bench: venv toolchain image
	$(PYTHON) tools/bench.py
