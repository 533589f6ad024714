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
# `-nic none`: no QEMU run needs a firmware or ROM file (the virt machine's
# default PCI NIC would need efi-virtio.rom from the `ipxe-qemu` package).
QEMU_BASE   := $(QEMU) -M virt,virtualization=on,gic-version=3 -cpu $(QEMU_CPU) \
               -smp $(QEMU_SMP) -m 2G -nographic -nic none -semihosting
RUN_TIMEOUT ?= 300

# Guest images: built from Debian's arm64 packages unless you bring your own
# (GUEST_KERNEL=path/Image GUEST_INITRD=path/initramfs.cpio.gz; GUEST_DISK=none
# for no virtio-blk disk). GUEST_APPEND adds to every VM's kernel command line.
GUEST_DIR    := $(BUILD)/guest
GUEST_KERNEL ?= $(GUEST_DIR)/Image
GUEST_INITRD ?= $(GUEST_DIR)/initramfs.cpio.gz
GUEST_DISK   ?= $(GUEST_DIR)/disk.img
GUEST_APPEND ?=
SYSTEST_TIMEOUT ?= 240
# make test-cpus: the QEMU CPU models (space-separated) and the vCPU counts of
# the Linux boots on each (make test-cpu: the same for QEMU_CPU only).
CPU_MODELS ?= cortex-a53 cortex-a57 cortex-a72 cortex-a76 neoverse-n1 a64fx max,pauth-impdef=on
CPU_VCPUS  ?= 1,4
# A CPU with SVE, pointer authentication and BTI (QEMU's default QARMA
# algorithm for pointer authentication is very slow under TCG).
SVE_CPU    := max,pauth-impdef=on
# make run-multi-vm / run-multi-vm-smp: number of VMs (1-4) and vCPUs per VM (1-4).
VMS   ?= 2
VCPUS ?= 1
# make bench: repetitions of every setup, MiB of the nc integrity check, iperf3 seconds
# (-t, after a -O 2 warm-up), the fixed UDP rate, limit per pair's QEMU run (s; 0 = from the phases).
BENCH_RUNS    ?= 5
BENCH_MB      ?= 16
BENCH_TIME    ?= 10
BENCH_UDP     ?= 100M
BENCH_TIMEOUT ?= 0

# The switch (every run target): NET_CAPTURE=FILE writes every frame to FILE
# (pcapng; Ctrl-\ c toggles), NET_VLANS=1,1,2 gives VM n's port an access
# VLAN, NET_RATE_MBIT=0,50 caps VM n's transmit rate (0 = unlimited),
# NET_OFFLOADS=1,0 offers VM n checksum/segmentation offload or not.
NET_CAPTURE   ?=
NET_VLANS     ?=
NET_RATE_MBIT ?=
NET_OFFLOADS  ?=
HVRUN = python3 tests/system/hvrun.py --hv $(HV_ELF) --build $(BUILD) --qemu $(QEMU) --cpu $(QEMU_CPU) \
        --net-capture "$(if $(NET_CAPTURE),$(abspath $(NET_CAPTURE)))" --net-vlans "$(NET_VLANS)" \
        --net-rate-mbit "$(NET_RATE_MBIT)" --net-offloads "$(NET_OFFLOADS)" \
        --kernel "$(GUEST_KERNEL)" --initrd "$(if $(filter none,$(GUEST_INITRD)),,$(GUEST_INITRD))" \
        --disk "$(if $(filter none,$(GUEST_DISK)),,$(GUEST_DISK))" --append "$(GUEST_APPEND)"

# Tools `make setup` provides; any missing one triggers it.
REQUIRED_TOOLS := $(QEMU) dtc cpio cpp python3 tcpdump

.PHONY: help setup need-tools build elf run test test-host lint doc clean guest-images \
        run-linux run-linux-smp run-multi-vm run-multi-vm-smp test-linux test-multi-vm bench \
        test-no-firmware check-vm-knobs setup-nightly setup-fuzz fuzz miri test-cpu test-cpus run-sve

help:
	@echo "Targets:"
	@echo "  make setup         install QEMU, dtc, cpio and the Rust target (idempotent)"
	@echo "  make run-multi-vm  two Linux VMs time-sliced on one pCPU, eth0 10.0.0.1/.2, ping each other"
	@echo "  make run-multi-vm-smp  the same with one VM per physical CPU"
	@echo "                     knobs: VMS=1..4 (default 2, VM n is 10.0.0.n+1), VCPUS=1..4 per VM (default 1)"
	@echo "                     switch (every run target): NET_CAPTURE=FILE (pcapng, Ctrl-\\ c toggles),"
	@echo "                     NET_VLANS=1,1,2 (access VLAN per VM), NET_RATE_MBIT=0,50 (TX limit per VM),"
	@echo "                     NET_OFFLOADS=1,0 (checksum/TSO offload offered per VM, default all 1)"
	@echo "  make run-linux     one Linux VM (1 vCPU) with a BusyBox shell"
	@echo "  make run-linux-smp one Linux VM with 4 vCPUs"
	@echo "  make run           run the in-QEMU unit suites at EL2; exit status = result"
	@echo "  make test-linux    automated Linux boots (1 and 4 vCPUs, virtio-blk, broken images)"
	@echo "  make test-cpus     Linux 1 and 4 vCPUs and a two-VM ping on every CPU model in CPU_MODELS, as a matrix"
	@echo "  make test-cpu      the same for QEMU_CPU only"
	@echo "  make run-sve       the in-QEMU suites on -cpu $(SVE_CPU); fails if a test is skipped"
	@echo "  make test-multi-vm automated inter-VM tests (ping, 16 MiB TCP, console, crash isolation)"
	@echo "  make bench         boot + VM exits, ping idle and under load, iperf3 TCP/UDP, cost per frame,"
	@echo "                     each next to plain QEMU; table, results.json, ratios.svg, throughput.svg"
	@echo "                     in build/bench (not in make test; BENCH_RUNS=1: about 10 min on 2 cores)"
	@echo "  make test          everything: host tests, lints, docs, in-QEMU suites (also on $(SVE_CPU)), Linux (also on $(SVE_CPU)), firmware guard"
	@echo "  make test-no-firmware  in-QEMU suites + one Linux boot with QEMU's firmware/ROM dirs hidden (root)"
	@echo "  make test-host     host cargo tests and the bench parser tests (Python)"
	@echo "  make lint          module cycle/layer check, rustfmt check, clippy (host and aarch64-unknown-none)"
	@echo "  make fuzz          every fuzz target for FUZZ_SECS s (default 60; nightly + cargo-fuzz)"
	@echo "  make miri          host tests of the modules with unsafe code under Miri (nightly)"
	@echo "  make doc           build the API docs (target/doc/hypervisor/index.html)"
	@echo "  make build         build both EL2 images"
	@echo "  make clean         remove build outputs"
	@echo "Knobs for every QEMU target: QEMU_CPU=cortex-a72 (QEMU -cpu model), QEMU=qemu-system-aarch64,"
	@echo "  GUEST_KERNEL=, GUEST_INITRD=, GUEST_DISK=, GUEST_APPEND= (see README)"

# ── set-up ────────────────────────────────────────────────────────────
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup:
	@missing=""; \
	command -v $(QEMU) >/dev/null || missing="$$missing qemu-system-arm"; \
	command -v dtc >/dev/null || missing="$$missing device-tree-compiler"; \
	command -v cpio >/dev/null || missing="$$missing cpio"; \
	command -v cpp >/dev/null || missing="$$missing cpp"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	command -v tcpdump >/dev/null || missing="$$missing tcpdump"; \
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

# Nightly is only for `make miri` and `make fuzz`; the project builds on stable.
setup-nightly:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@rustup +nightly component list --installed | grep -q '^miri' || \
	  rustup component add --toolchain nightly miri rust-src

setup-fuzz: setup-nightly
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

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

# ── guests ────────────────────────────────────────────────────────────
# The default images are built (and cached) only if one of them is used.
guest-images: need-tools
	@dpkg --print-foreign-architectures | grep -qx arm64 || $(MAKE) --no-print-directory setup
	@if [ "$(GUEST_KERNEL)" = "$(GUEST_DIR)/Image" ] || \
	    [ "$(GUEST_INITRD)" = "$(GUEST_DIR)/initramfs.cpio.gz" ] || \
	    [ "$(GUEST_DISK)" = "$(GUEST_DIR)/disk.img" ]; then \
	  guest/linux/build-images.sh $(GUEST_DIR); fi

run-linux: elf guest-images
	$(HVRUN) --vms 1 --vcpus 1 --timeout 0 run

run-linux-smp: elf guest-images
	$(HVRUN) --vms 1 --vcpus 4 --timeout 0 run

# VMS and VCPUS are checked before anything is built.
check-vm-knobs:
	@case "$(VMS)" in 1|2|3|4) ;; *) echo "make: VMS=$(VMS): the hypervisor runs 1 to 4 VMs (VMS=1..4)"; exit 2 ;; esac
	@case "$(VCPUS)" in 1|2|3|4) ;; *) echo "make: VCPUS=$(VCPUS): a VM has 1 to 4 vCPUs (VCPUS=1..4)"; exit 2 ;; esac

run-multi-vm: check-vm-knobs elf guest-images
	$(HVRUN) --vms $(VMS) --vcpus $(VCPUS) --placement timeslice --timeout 0 run

# One pCPU per VM: QEMU gets max(2, VMS) CPUs.
run-multi-vm-smp: check-vm-knobs elf guest-images
	$(HVRUN) --vms $(VMS) --vcpus $(VCPUS) --placement per-pcpu --smp $(if $(filter 3 4,$(VMS)),$(VMS),2) --timeout 0 run

test-linux: elf guest-images
	$(HVRUN) --timeout $(SYSTEST_TIMEOUT) test-linux

test-multi-vm: elf guest-images
	$(HVRUN) --timeout $(SYSTEST_TIMEOUT) test-multi-vm

# Linux with 1 and 4 vCPUs and two VMs pinging each other on one CPU model
# (QEMU_CPU) or on each of CPU_MODELS; prints pass/fail and boot seconds as a
# matrix (also in build/run/cpu-matrix.txt).
test-cpu: elf guest-images
	$(HVRUN) --timeout $(SYSTEST_TIMEOUT) --vcpu-counts $(CPU_VCPUS) test-cpu

test-cpus: elf guest-images
	$(HVRUN) --timeout $(SYSTEST_TIMEOUT) --vcpu-counts $(CPU_VCPUS) --models "$(CPU_MODELS)" test-cpus

# The in-QEMU suites on a CPU with SVE and pointer authentication: the test
# that two VMs' SVE registers and keys stay apart must run, not skip.
run-sve:
	@$(MAKE) --no-print-directory run QEMU_CPU=$(SVE_CPU)
	@grep -q ', 0 skipped' $(LOG_DIR)/run.log || { echo "run-sve: FAILED: a test was skipped on -cpu $(SVE_CPU)"; exit 1; }

# The in-QEMU suites, one Linux boot under the hypervisor and two plain-QEMU
# VMs as `make bench` starts them, with QEMU's firmware and ROM directories
# hidden in a private mount namespace: proves that no QEMU run needs a file a
# fresh machine may lack (e.g. efi-virtio.rom from ipxe-qemu). Without root
# it prints why and is skipped.
PLAIN_BOOT = QEMU=$(QEMU) QEMU_CPU=$(QEMU_CPU) guest/linux/run-plain-qemu.sh -e -n 2 -t $(SYSTEST_TIMEOUT) \
             -k "$(GUEST_KERNEL)" -i "$(GUEST_INITRD)" -d "$(GUEST_DISK)"
test-no-firmware: elf guest-images
	@QEMU=$(QEMU) QEMU_CPU=$(QEMU_CPU) tests/system/no-firmware.sh \
	  bash -c '$(MAKE) --no-print-directory run && $(HVRUN) --timeout $(SYSTEST_TIMEOUT) test-boot$(if $(filter none,$(GUEST_INITRD) $(GUEST_DISK)),, && $(PLAIN_BOOT))'

# Not part of `make test`: about 10 minutes per run on 2 cores (BENCH_RUNS=1 for a quick look).
bench: elf guest-images
	python3 tests/system/bench.py --hv $(HV_ELF) --build $(BUILD) --qemu $(QEMU) --cpu $(QEMU_CPU) \
	  --kernel "$(GUEST_KERNEL)" --initrd "$(GUEST_INITRD)" --append "$(GUEST_APPEND)" \
	  --runs $(BENCH_RUNS) --mb $(BENCH_MB) --time $(BENCH_TIME) --udp $(BENCH_UDP) --timeout $(BENCH_TIMEOUT)

# ── host checks ───────────────────────────────────────────────────────
# The fuzz crate (fuzz/) is not a workspace member: its regression tests
# (every committed seed and crash reproducer, on stable) run here.
FUZZ_CARGO = cargo --config 'build.target-dir="target"'
test-host: need-tools
	cargo test --workspace
	$(FUZZ_CARGO) test --manifest-path fuzz/Cargo.toml --no-default-features
	PYTHONDONTWRITEBYTECODE=1 python3 tests/system/test_bench_parse.py

# The module check: no import cycle, no upward import in the logic layer
# (layers as in docs/architecture.md); its self-test proves it can fail.
lint: need-tools
	python3 tests/lint/module_graph.py --self-test
	python3 tests/lint/module_graph.py
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --target $(TARGET) -- -D warnings
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	$(FUZZ_CARGO) clippy --manifest-path fuzz/Cargo.toml --no-default-features --all-targets -- -D warnings

doc: need-tools
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

# ── fuzzing and Miri ──────────────────────────────────────────────────
# `make fuzz`: each target for FUZZ_SECS seconds from its committed seeds
# (fuzz/seeds/<target>, read only) and its growing corpus (fuzz/corpus/,
# not committed); prints executions and coverage per target. A crash is
# saved under fuzz/artifacts/<target>/ and fails the run: copy it to
# tests/fuzz/<target>/ to make it a regression test (see README).
FUZZ_SECS    ?= 60
FUZZ_TARGETS ?= virtio_transport virtio_queue virtio_blk virtio_net vswitch vgic pl011 boot_config loader gso
fuzz: setup-fuzz
	@mkdir -p $(LOG_DIR)/fuzz; failed=""; \
	cargo +nightly fuzz build -O || exit 1; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; log=$(LOG_DIR)/fuzz/$$t.log; \
	  cargo +nightly fuzz run -O $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECS) -rss_limit_mb=4096 -print_final_stats=1 >$$log 2>&1; status=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log | tail -1); \
	  cov=$$(grep -o 'cov: [0-9]*' $$log | tail -1 | cut -d' ' -f2); \
	  ft=$$(grep -o 'ft: [0-9]*' $$log | tail -1 | cut -d' ' -f2); \
	  corp=$$(grep -o 'corp: [0-9]*' $$log | tail -1 | cut -d' ' -f2); \
	  if [ $$status -eq 0 ]; then \
	    printf 'fuzz: %-17s %9s executions  coverage %5s edges  %5s features  corpus %s\n' $$t "$$execs" "$$cov" "$$ft" "$$corp"; \
	  else \
	    echo "fuzz: $$t: FOUND A PROBLEM (status $$status, log $$log):"; \
	    grep -E "panicked|ERROR|Test unit written" $$log | head -5; failed="$$failed $$t"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in:$$failed"; exit 1; fi; \
	echo "fuzz: $(words $(FUZZ_TARGETS)) targets, $(FUZZ_SECS) s each, no finding"

# The host tests of every module with unsafe code, interpreted by Miri
# (undefined behaviour, aliasing, data races in the threaded ring tests).
# Leaks are not errors: the tests leak their guest RAM and rings on purpose
# (`GuestMemory::from_static` and the rings' users need `'static` memory).
MIRI_TESTS ?= guest_memory spsc net::rx_ring print::
miri: setup-nightly
	MIRIFLAGS="-Zmiri-ignore-leaks" cargo +nightly miri test --lib -- $(MIRI_TESTS)

# ── everything ────────────────────────────────────────────────────────
test: need-tools
	$(MAKE) --no-print-directory test-host
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory doc
	$(MAKE) --no-print-directory miri
	$(MAKE) --no-print-directory run
	$(MAKE) --no-print-directory run-sve
	$(MAKE) --no-print-directory test-linux
	$(MAKE) --no-print-directory test-cpu QEMU_CPU=$(SVE_CPU) CPU_VCPUS=1
	$(MAKE) --no-print-directory test-multi-vm
	$(MAKE) --no-print-directory test-no-firmware
	@echo "make test: all checks passed"

clean:
	cargo clean
	rm -rf $(BUILD)
