# One-command build and test for the hypervisor. Run `make help` for targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

BUILD    ?= build
TARGET   := aarch64-unknown-none
PROFILE  := release
ELF_DIR  := target/$(TARGET)/$(PROFILE)
HV_ELF   := $(ELF_DIR)/hypervisor
TEST_ELF := $(ELF_DIR)/hypervisor-selftest
LOG_DIR  := $(BUILD)/logs

QEMU        ?= qemu-system-aarch64
QEMU_CPU    ?= cortex-a72
QEMU_SMP    ?= 2
QEMU_BASE   := $(QEMU) -M virt,virtualization=on,gic-version=3 -cpu $(QEMU_CPU) \
               -smp $(QEMU_SMP) -m 2G -nographic -semihosting
RUN_TIMEOUT ?= 300

# Tools `make setup` provides; any missing one triggers it.
REQUIRED_TOOLS := $(QEMU) dtc cpio cpp python3

.PHONY: help setup need-tools build elf run test test-host lint doc clean

help:
	@echo "Targets:"
	@echo "  make setup         install QEMU, dtc, cpio and the Rust target (idempotent)"
	@echo "  make run           run the in-QEMU unit suites at EL2; exit status = result"
	@echo "  make test          everything: host tests, lints, docs, in-QEMU suites"
	@echo "  make test-host     host cargo tests only"
	@echo "  make lint          rustfmt check + clippy (host and aarch64-unknown-none)"
	@echo "  make doc           build the API docs (target/doc/hypervisor/index.html)"
	@echo "  make build         build both EL2 images"
	@echo "  make clean         remove build outputs"

# ── set-up ────────────────────────────────────────────────────────────
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup:
	@missing=""; \
	command -v $(QEMU) >/dev/null || missing="$$missing qemu-system-arm"; \
	command -v dtc >/dev/null || missing="$$missing device-tree-compiler"; \
	command -v cpio >/dev/null || missing="$$missing cpio"; \
	command -v cpp >/dev/null || missing="$$missing cpp"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	else echo "setup: host tools present"; fi
	@if ! dpkg --print-foreign-architectures | grep -qx arm64; then \
	  echo "setup: enabling the arm64 package architecture (guest kernel and busybox)"; \
	  $(SUDO) dpkg --add-architecture arm64 && $(SUDO) apt-get update; \
	fi
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

need-tools:
	@for t in $(REQUIRED_TOOLS); do command -v $$t >/dev/null || { $(MAKE) --no-print-directory setup; break; }; done
	@rustup target list --installed | grep -qx $(TARGET) || $(MAKE) --no-print-directory setup

# ── build ─────────────────────────────────────────────────────────────
build elf: need-tools
	cargo build --$(PROFILE) --target $(TARGET) --bins

# ── in-QEMU unit suites ───────────────────────────────────────────────
# QEMU exits through semihosting with the suites' status; `timeout` turns a
# hang into a failure (status 124) instead of hanging the caller.
run: elf
	@mkdir -p $(LOG_DIR)
	@echo "run: $(QEMU_BASE) -kernel $(TEST_ELF)  (timeout $(RUN_TIMEOUT)s)"
	@timeout -k 5 $(RUN_TIMEOUT) $(QEMU_BASE) -kernel $(TEST_ELF) </dev/null \
	  | tee $(LOG_DIR)/run.log; status=$${PIPESTATUS[0]}; \
	if [ $$status -eq 124 ]; then echo "run: FAILED: QEMU did not finish within $(RUN_TIMEOUT)s (log: $(LOG_DIR)/run.log)"; \
	elif [ $$status -ne 0 ]; then echo "run: FAILED with status $$status (log: $(LOG_DIR)/run.log)"; fi; \
	exit $$status

# ── host checks ───────────────────────────────────────────────────────
test-host: need-tools
	cargo test --workspace

lint: need-tools
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --target $(TARGET) -- -D warnings

doc: need-tools
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

# ── everything ────────────────────────────────────────────────────────
test: need-tools
	$(MAKE) --no-print-directory test-host
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory doc
	$(MAKE) --no-print-directory run
	@echo "make test: all checks passed"

clean:
	cargo clean
	rm -rf $(BUILD)
