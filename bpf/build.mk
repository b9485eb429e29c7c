# SPDX-License-Identifier: MIT
#
# libbpf CO-RE programs: bpf/<name>.bpf.c (+ bpf/<name>.h, shared with user space) becomes
# $(B)/gen/bpf/<name>.bpf.o and the skeleton $(B)/gen/bpf/<name>.skel.h, which the loader
# includes as "bpf/<name>.skel.h". vmlinux.h is dumped from the running kernel's BTF, or copied
# from VMLINUX_H=FILE. Nothing here is committed. BPF objects never get sanitizer flags or the
# user-space CFLAGS: they are built for the BPF target by clang alone.

# bpftool lives in /usr/sbin on Debian, which a user's PATH may lack.
BPFTOOL ?= $(or $(shell command -v bpftool 2>/dev/null),/usr/sbin/bpftool)
BPF_CLANG ?= clang
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
VMLINUX_H ?=
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Wno-unused-function \
	-I$(B)/gen/bpf -I.

BPF_PROGS := proctrace
BPF_SKELS := $(BPF_PROGS:%=$(B)/gen/bpf/%.skel.h)

$(B)/gen/bpf/vmlinux.h: $(VMLINUX_H)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GEN     $@")
ifneq ($(VMLINUX_H),)
	$(Q)cp $(VMLINUX_H) $@
else
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c >$@
endif

# The compiled object, then the linked one (bpftool gen object also checks its BTF).
$(B)/obj/bpf/%.bpf.o: bpf/%.bpf.c bpf/%.h $(B)/gen/bpf/vmlinux.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  BPF     $@")
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

$(B)/gen/bpf/%.bpf.o: $(B)/obj/bpf/%.bpf.o
	@$(if $(Q),echo "  GENOBJ  $@")
	$(Q)$(BPFTOOL) gen object $@ $<

$(B)/gen/bpf/%.skel.h: $(B)/gen/bpf/%.bpf.o
	@$(if $(Q),echo "  GENSKEL $@")
	$(Q)$(BPFTOOL) gen skeleton $< name $*_bpf >$@
