# SPDX-License-Identifier: MIT
K2I_PKGS := libevent libevent_openssl libnghttp2 jansson openssl
