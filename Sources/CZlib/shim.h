/* SPDX-License-Identifier: GPL-2.0-only */
/* zlib, for the endpoint's gzip answers (Accept-Encoding: gzip, which Prometheus sends). */
#include <zlib.h>
