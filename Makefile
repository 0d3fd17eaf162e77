# The commands users and CI rely on. `make run` and `make test` are all a new machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Host tools the project calls; `make setup` installs the missing ones with apt-get.
APT_PACKAGES := mmdebstrap bubblewrap arch-test debian-archive-keyring gpgv util-linux \
	coreutils tar zstd xz-utils apt-utils dpkg-dev gpg lintian sbuild fdisk \
	qemu-utils dosfstools mtools e2fsprogs grub-pc-bin grub-efi-amd64-bin \
	qemu-system-x86 ovmf openssh-client grub2-common binutils skopeo umoci podman
# Where tests keep their shared store and package cache between runs.
TEST_CACHE ?= /var/cache/debian-forge-tests

.PHONY: setup run test bench clean apt-deps

setup: apt-deps $(VENV)/.installed

apt-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing host tools:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: setup
	$(BIN)/debian-forge build examples/debian-qcow2.json --export qcow2 --output-directory output
	@echo
	@echo "Boot it (BIOS; add --uefi for UEFI):"
	@echo "  $(BIN)/debian-forge boot output/qcow2/debian-12-generic-amd64.qcow2"

test: setup
	DEBIAN_FORGE_TEST_CACHE=$(TEST_CACHE) $(BIN)/pytest -q -ra $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) output
