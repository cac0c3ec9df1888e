# vmkube: every target sets up what it needs (host packages, venv, offline toolchain) on first use.
#   make up [STACK=local]      create or update a stack (default: the local libvirt stack)
#   make preview STACK=dev     show what `up` would change
#   make destroy STACK=local   remove everything the stack created
#   make kubeconfig STACK=local  the cluster's admin kubeconfig, in a file only you can read
#   make conformance [STACK=local] [FOCUS=re] [RUNGS=n]  the Kubernetes conformance suite; docs/conformance.md
#   make snapshot [STACK=local]   an etcd snapshot of the cluster now, kept on this machine
#   make snapshots [STACK=local]  the snapshots kept of a stack
#   make restore STACK=local SNAPSHOT=<name>  put the cluster's etcd back to a snapshot
#   make certs [STACK=local]      each certificate of the cluster with its end date
#   make test                  everything CI runs
#   make bench                 benchmarks; the table also goes to bench/latest.md
#   make toolchain             build the offline toolchain (pulumi, language host, vcsim, Kubernetes, etcd)
#   make image                 build the libvirt node image (Debian 12, from Debian packages)
#   make host                  install and start what the libvirt backend needs on this machine
#   make check                 refuse early, naming the fix, on a machine that cannot do the job
STACK ?= local
PULUMI := tools/pulumi
PYTHON := .venv/bin/python
# The local stack runs on this machine's libvirt: it needs the host set up and the image built.
LOCAL := $(if $(filter local,$(STACK)),image,)

.PHONY: up preview destroy test bench toolchain venv stack host image check kubeconfig conformance snapshot snapshots restore certs

# Refuses at once, naming the fix, on a machine that cannot do the job (tools/check-machine).
check:
	@tools/check-machine

host: check
	@tools/host-setup

venv: host
	@bash -c '. tools/lib.sh && vmkube_ensure_venv'

toolchain: check
	@tools/build >/dev/null
	@tools/build kubernetes etcd pause hello kwok coredns metrics-server kube-network-policies conformance

image: host
	@tools/build-image >/dev/null

stack: venv toolchain
	@$(PULUMI) stack select --create $(STACK) >/dev/null

# No preview first (`make preview` shows one; pull requests get one): it would refresh every VM
# and ask the API server again, doubling a no-op `up`.
up: $(LOCAL) stack
	$(PULUMI) up --yes --skip-preview --refresh --stack $(STACK)
	@echo
	@echo "Use the cluster:"
	@echo "  make kubeconfig STACK=$(STACK)    # writes kubeconfig-$(STACK), readable by you only"
	@echo "  kubectl --kubeconfig kubeconfig-$(STACK) get nodes    # kubectl: $$(tools/build --tool-dir kubernetes)/kubectl"
	@echo "The apps answer from this machine (curl one of these URLs):"
	@$(PULUMI) stack output --stack $(STACK) apps 2>/dev/null || echo "  (no apps in this stack)"

preview: $(LOCAL) stack
	$(PULUMI) preview --diff --stack $(STACK)

destroy: venv toolchain
	$(PULUMI) destroy --yes --stack $(STACK)

# The admin credentials of the cluster, in a file only you can read (umask 077, then 0600).
kubeconfig: venv
	@umask 077 && $(PULUMI) stack output --stack $(STACK) --show-secrets kubeconfig > kubeconfig-$(STACK).tmp \
	  && chmod 600 kubeconfig-$(STACK).tmp && mv kubeconfig-$(STACK).tmp kubeconfig-$(STACK)
	@echo "wrote kubeconfig-$(STACK) (mode 600)"

# etcd snapshots under vmkube's data directory (0600 each): tools/snapshot.py, README "Backups".
snapshot: venv toolchain
	$(PYTHON) tools/snapshot.py take --stack $(STACK)

snapshots: venv
	@$(PYTHON) tools/snapshot.py list --stack $(STACK)

restore: venv toolchain
	$(PYTHON) tools/snapshot.py restore --stack $(STACK) --snapshot '$(SNAPSHOT)'

# Dates only, from the stack's `certificates` output: tools/certs.py, README "Certificates".
certs: venv
	@$(PYTHON) tools/certs.py --stack $(STACK)

test: venv toolchain image
	$(PYTHON) -m pytest

# The upstream conformance suite against a stack's cluster; writes docs/conformance.md.
# FOCUS=<regex> runs just that; RUNGS=<n> climbs the first n rungs of the ladder.
conformance: venv toolchain
	$(PYTHON) tools/conformance.py --stack $(STACK) $(if $(FOCUS),--focus '$(FOCUS)') $(if $(RUNGS),--rungs $(RUNGS))

bench: venv toolchain image
	$(PYTHON) tools/bench.py
