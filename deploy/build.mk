# SPDX-License-Identifier: MIT
#
# Deployment: k2i-certs (the fleet's certificate tool) and the install rules for systemd units,
# the sysusers.d entry and the default configuration files. The top Makefile's install target
# installs $(BINS) and deploy/k2i.conf, then depends on install-deploy for the rest.
#
#   make install PREFIX=/usr DESTDIR=/tmp/root SYSTEMDUNITDIR=/usr/lib/systemd/system

# k2i-certs: a CA, node and client certificates for a fleet, over libcommon/certgen.c.
K2I_CERTS_PKGS := openssl
K2I_CERTS_OBJS := $(B)/obj/deploy/k2i-certs.o
ALL_OBJS += $(K2I_CERTS_OBJS)
BINS += $(B)/bin/k2i-certs

$(K2I_CERTS_OBJS): PKG_CFLAGS := $(call pkg_cflags,$(K2I_CERTS_PKGS))

$(B)/bin/k2i-certs: $(K2I_CERTS_OBJS) $(LIBCOMMON)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_LDFLAGS) -o $@ $^ $(call pkg_libs,$(LIBCOMMON_PKGS) $(K2I_CERTS_PKGS))

# Where systemd looks for units and sysusers.d entries shipped by packages. Under /usr/local
# systemd does not look by default (only /etc and /usr/lib); install with PREFIX=/usr, or set
# SYSTEMDUNITDIR=/etc/systemd/system, for systemctl to find them.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DOCDIR ?= $(PREFIX)/share/doc/k2i

DEPLOY_UNITS := deploy/systemd/k2i.service deploy/systemd/middlecon.service

# The units name /usr/bin and /etc/k2i, the packaged paths; the copies installed point at this
# install's $(BINDIR) and $(SYSCONFDIR) instead. Configuration files are installed only where
# none exists, so an administrator's edits survive every later make install.
.PHONY: install-deploy
install-deploy:
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/k2i
	set -e; for u in $(DEPLOY_UNITS); do \
		sed -e 's|/usr/bin/|$(BINDIR)/|g' -e 's|/etc/k2i/|$(SYSCONFDIR)/k2i/|g' \
			-e 's|/usr/share/doc/k2i/|$(DOCDIR)/|g' $$u \
			>$(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}.tmp; \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}.tmp; \
		mv -f $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}.tmp $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}; \
	done
	install -m 0644 deploy/systemd/k2i.sysusers $(DESTDIR)$(SYSUSERSDIR)/k2i.conf
	install -m 0644 deploy/systemd/k2i.tmpfiles $(DESTDIR)$(TMPFILESDIR)/k2i.conf
	install -m 0644 docs/deploy.md $(DESTDIR)$(DOCDIR)/deploy.md
	test -e $(DESTDIR)$(SYSCONFDIR)/k2i/middlecon.conf || \
		install -m 0644 deploy/middlecon.conf $(DESTDIR)$(SYSCONFDIR)/k2i/middlecon.conf
