/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * qmp-standin: a stand-in for a QEMU guest's QMP monitor, for measuring kvmstat's qmp source
 * with hundreds of guests (Scripts/bench --scale-only) where hundreds of real QEMUs cannot run.
 *
 *   qmp-standin -name guest=NAME -smp N -qmp unix:PATH,server=on,wait=off
 *   qmp-standin -name guest=NAME -smp N -chardev socket,id=kvmstat,path=PATH,server=on,wait=off \
 *               -mon chardev=kvmstat,mode=control
 *
 * (the second: a monitor QEMU keeps for kvmstat, which stays connected to it; `-mon` is for
 * kvmstat to read, one monitor socket is served either way)
 *
 * One small process per guest, with QEMU's command line (kvmstat finds monitors by
 * /proc/PID/cmdline), N threads that only sleep (the vCPUs: their thread ids are real tasks of
 * the process) and a unix socket at PATH, served by this process (kvmstat checks SO_PEERCRED).
 * It speaks QMP as QEMU 7.2 does on a KVM host (x86): the greeting, `qmp_capabilities`,
 * `query-stats-schemas`, `query-cpus-fast` and `query-stats` (targets vm and vcpu, with the
 * optional `providers` names and `vcpus` filters), in QEMU's layout (", " and ": ", CRLF, vCPUs
 * listed last to first, `id` echoed); anything else gets QMP's error object. Statistics are
 * KVM's, by the names, types, units and shapes Linux 6.18's KVM gives on x86, incl. the log2
 * histograms. Values are a function of the time since start, so they grow between calls:
 *
 *   counter = rate × (vCPU index + 1) × seconds   (VM and nanosecond counters: rate × seconds)
 *
 * with the rates below (10 a second at least: every counter grows between samples 0.1 s
 * apart); a histogram's buckets share out their own such count by fixed weights; levels are
 * constants or flip each second.
 *
 * Unlike QEMU it serves several clients at once. Single-threaded (the vCPU threads do
 * nothing), non-blocking, poll(2); clients that vanish mid-line are dropped. SIGTERM, SIGINT
 * and SIGHUP end it with status 0, its socket removed. Only libc:
 *
 *   cc -O2 -Wall -Wextra -o qmp-standin Scripts/qmp-standin.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum kind { CUMULATIVE, INSTANT, PEAK, LOG2_HISTOGRAM };

/* How a statistic's value is made: a counter's rate a second (per vCPU, times index + 1
 * unless `flat`), a level's constant, a histogram's events a second (shared out over buckets
 * lo..hi by fixed weights). */
struct kvm_stat {
    const char *name;
    enum kind kind;
    const char *unit; /* NULL, "boolean", "seconds" */
    int exponent;     /* base 10 when `unit` is seconds */
    uint64_t rate;
    int flat;
    int lo, hi;       /* histogram: the buckets with counts, lo..hi */
};

#define S "seconds"
#define B "boolean"
/* Linux 6.18's KVM on x86, as QEMU 7.2 lists them (query-stats-schemas). */
static const struct kvm_stat vcpu_stats[] = {
    {"pf_park_timeouts", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"pf_parked", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"notify_window_exits", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"guest_mode", INSTANT, B, 0, 0, 0, 0, 0},
    {"preemption_other", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"preemption_reported", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"directed_yield_successful", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"directed_yield_attempted", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"nested_run", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"req_event", CUMULATIVE, NULL, 0, 450, 0, 0, 0},
    {"nmi_injections", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"irq_injections", CUMULATIVE, NULL, 0, 350, 0, 0, 0},
    {"hypercalls", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"insn_emulation_fail", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"insn_emulation", CUMULATIVE, NULL, 0, 40, 0, 0, 0},
    {"fpu_reload", CUMULATIVE, NULL, 0, 100, 0, 0, 0},
    {"host_state_reload", CUMULATIVE, NULL, 0, 500, 0, 0, 0},
    {"irq_exits", CUMULATIVE, NULL, 0, 300, 0, 0, 0},
    {"request_irq_exits", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"halt_exits", CUMULATIVE, NULL, 0, 400, 0, 0, 0},
    {"l1d_flush", CUMULATIVE, NULL, 0, 50, 0, 0, 0},
    {"nmi_window_exits", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"irq_window_exits", CUMULATIVE, NULL, 0, 20, 0, 0, 0},
    {"signal_exits", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"mmio_exits", CUMULATIVE, NULL, 0, 200, 0, 0, 0},
    {"io_exits", CUMULATIVE, NULL, 0, 600, 0, 0, 0},
    {"exits", CUMULATIVE, NULL, 0, 2000, 0, 0, 0},
    {"invlpg", CUMULATIVE, NULL, 0, 30, 0, 0, 0},
    {"tlb_flush", CUMULATIVE, NULL, 0, 25, 0, 0, 0},
    {"pf_guest", CUMULATIVE, NULL, 0, 15, 0, 0, 0},
    {"pf_mmio_spte_created", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"pf_fast", CUMULATIVE, NULL, 0, 12, 0, 0, 0},
    {"pf_spurious", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"pf_emulate", CUMULATIVE, NULL, 0, 20, 0, 0, 0},
    {"pf_fixed", CUMULATIVE, NULL, 0, 60, 0, 0, 0},
    {"pf_taken", CUMULATIVE, NULL, 0, 80, 0, 0, 0},
    {"blocking", INSTANT, B, 0, 0, 0, 0, 0},
    {"halt_wait_hist", LOG2_HISTOGRAM, S, -9, 400, 0, 10, 22},
    {"halt_poll_fail_hist", LOG2_HISTOGRAM, S, -9, 100, 0, 12, 16},
    {"halt_poll_success_hist", LOG2_HISTOGRAM, S, -9, 200, 0, 8, 14},
    {"halt_wait_ns", CUMULATIVE, S, -9, 500000000, 1, 0, 0},
    {"halt_poll_fail_ns", CUMULATIVE, S, -9, 1000000, 1, 0, 0},
    {"halt_poll_success_ns", CUMULATIVE, S, -9, 2000000, 1, 0, 0},
    {"halt_wakeup", CUMULATIVE, NULL, 0, 400, 0, 0, 0},
    {"halt_poll_invalid", CUMULATIVE, NULL, 0, 10, 0, 0, 0},
    {"halt_attempted_poll", CUMULATIVE, NULL, 0, 300, 0, 0, 0},
    {"halt_successful_poll", CUMULATIVE, NULL, 0, 200, 0, 0, 0},
};

static const struct kvm_stat vm_stats[] = {
    {"mmu_kicks_spared", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"max_mmu_page_hash_collisions", PEAK, NULL, 0, 0, 0, 0, 0},
    {"max_mmu_rmap_size", PEAK, NULL, 0, 0, 0, 0, 0},
    {"nx_lpage_splits", INSTANT, NULL, 0, 0, 0, 0, 0},
    {"pages_1g", INSTANT, NULL, 0, 0, 0, 0, 0},
    {"pages_2m", INSTANT, NULL, 0, 8, 0, 0, 0},
    {"pages_4k", INSTANT, NULL, 0, 4096, 0, 0, 0},
    {"mmu_unsync", INSTANT, NULL, 0, 0, 0, 0, 0},
    {"mmu_cache_miss", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"mmu_recycled", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"mmu_flooded", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"mmu_pde_zapped", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"mmu_pte_write", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"mmu_shadow_zapped", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"remote_tlb_flush_requests", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
    {"remote_tlb_flush", CUMULATIVE, NULL, 0, 10, 1, 0, 0},
};
#undef S
#undef B

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define HIST_BUCKETS 32
#define MAX_VCPUS 1024
#define MAX_CLIENTS 256
#define MAX_INPUT (64 * 1024)
#define MAX_OUTPUT (8 * 1024 * 1024)

static const char *socket_path;
static ino_t socket_inode;
static int vcpus = 1;
static pid_t vcpu_tids[MAX_VCPUS];
static int vcpus_started;
static struct timespec started;

/* ---- output buffers ---- */

struct buf {
    char *data;
    size_t len, cap;
};

static void reserve(struct buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        perror("qmp-standin: realloc");
        exit(1);
    }
    b->data = data;
    b->cap = cap;
}

static void put_bytes(struct buf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void put(struct buf *b, const char *s) { put_bytes(b, s, strlen(s)); }

static void put_u64(struct buf *b, uint64_t v)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put_bytes(b, digits + sizeof(digits) - n, n);
}

static void put_int(struct buf *b, long v)
{
    if (v < 0) {
        put(b, "-");
        put_u64(b, (uint64_t)(-v));
    } else {
        put_u64(b, (uint64_t)v);
    }
}

/* ---- values ---- */

static uint64_t seconds_since_start(uint64_t *nanoseconds)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)(now.tv_sec - started.tv_sec) * 1000000000 + (now.tv_nsec - started.tv_nsec);
    if (ns < 0)
        ns = 0;
    *nanoseconds = (uint64_t)ns % 1000000000;
    return (uint64_t)ns / 1000000000;
}

/* rate × seconds, exactly (no overflow for rates up to 10^9 over centuries). */
static uint64_t grown(uint64_t rate, uint64_t sec, uint64_t ns) { return rate * sec + rate * ns / 1000000000; }

static uint64_t counter(const struct kvm_stat *st, int vcpu, uint64_t sec, uint64_t ns)
{
    return grown(st->rate * (st->flat ? 1 : (uint64_t)vcpu + 1), sec, ns);
}

/* One statistic's value: a number, true/false, or a list of buckets. */
static void put_value(struct buf *b, const struct kvm_stat *st, int vcpu, uint64_t sec, uint64_t ns)
{
    switch (st->kind) {
    case CUMULATIVE:
        put_u64(b, counter(st, vcpu, sec, ns));
        break;
    case INSTANT:
        if (st->unit && strcmp(st->unit, "boolean") == 0)
            /* guest_mode is never set (no nested guests); blocking flips every second. */
            put(b, strcmp(st->name, "blocking") == 0 && ((sec + (uint64_t)vcpu) & 1) ? "true" : "false");
        else
            put_u64(b, st->rate);
        break;
    case PEAK:
        /* A high-water mark: grows for a minute, then stays. */
        put_u64(b, 1 + (sec < 60 ? sec : 60) / (strcmp(st->name, "max_mmu_rmap_size") == 0 ? 1 : 10));
        break;
    case LOG2_HISTOGRAM: {
        uint64_t total = counter(st, vcpu, sec, ns);
        uint64_t weights = 0;
        for (int i = st->lo; i <= st->hi; i++)
            weights += (uint64_t)(1 + (i - st->lo) * (st->hi - i));
        put(b, "[");
        for (int i = 0; i < HIST_BUCKETS; i++) {
            uint64_t count_i = 0;
            if (i >= st->lo && i <= st->hi)
                count_i = total / weights * (uint64_t)(1 + (i - st->lo) * (st->hi - i))
                    + total % weights * (uint64_t)(1 + (i - st->lo) * (st->hi - i)) / weights;
            if (i)
                put(b, ", ");
            put_u64(b, count_i);
        }
        put(b, "]");
        break;
    }
    }
}

/* ---- a little JSON: spans of the request's text, validated before use ---- */

struct span {
    const char *p, *end;
};

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* The end of the string starting at p (at its quote), or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\') {
            if (++p >= end)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        } else if ((unsigned char)*p < 0x20) {
            return NULL;
        }
    }
    return NULL;
}

/* The end of the JSON value at p, or NULL when it is not one. */
static const char *skip_value(const char *p, const char *end, int depth)
{
    p = skip_ws(p, end);
    if (p >= end || depth > 64)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (p >= end || *p != '"' || !(p = skip_string(p, end)))
                    return NULL;
                p = skip_ws(p, end);
                if (p >= end || *p++ != ':')
                    return NULL;
            }
            if (!(p = skip_value(p, end, depth + 1)))
                return NULL;
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            return p < end && *p == close ? p + 1 : NULL;
        }
    }
    const char *start = p;
    while (p < end && (strchr("+-.eE", *p) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
        p++;
    size_t n = (size_t)(p - start);
    if ((n == 4 && !memcmp(start, "true", 4)) || (n == 4 && !memcmp(start, "null", 4))
        || (n == 5 && !memcmp(start, "false", 5)))
        return p;
    if (n == 0 || !(*start == '-' || (*start >= '0' && *start <= '9')))
        return NULL;
    for (const char *q = start; q < p; q++)
        if (*q >= 'a' && *q <= 'z' && *q != 'e')
            return NULL;
    return p;
}

/* A string value's text (escapes decoded, non-ASCII as '?'); 0 when not a string or too long. */
static int string_of(struct span v, char *out, size_t size)
{
    const char *p = skip_ws(v.p, v.end);
    if (p >= v.end || *p != '"')
        return 0;
    size_t n = 0;
    for (p++; p < v.end && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            c = *++p;
            switch (c) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                unsigned code = 0;
                for (int i = 0; i < 4 && p + 1 < v.end; i++) {
                    char h = *++p;
                    code = code * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
                }
                c = code > 0 && code < 0x80 ? (char)code : '?';
                break;
            }
            default: break; /* \" \\ \/ */
            }
        } else if ((unsigned char)c >= 0x80) {
            c = '?';
        }
        if (n + 1 >= size)
            return 0;
        out[n++] = c;
    }
    out[n] = 0;
    return 1;
}

/* Member `key` of the (valid) object v. */
static int member(struct span v, const char *key, struct span *found)
{
    const char *p = skip_ws(v.p, v.end);
    if (p >= v.end || *p != '{')
        return 0;
    p = skip_ws(p + 1, v.end);
    while (p < v.end && *p == '"') {
        const char *key_end = skip_string(p, v.end);
        char name[64];
        int named = string_of((struct span){p, key_end}, name, sizeof(name));
        p = skip_ws(key_end, v.end) + 1; /* ':' */
        const char *value_end = skip_value(p, v.end, 0);
        if (named && strcmp(name, key) == 0) {
            found->p = skip_ws(p, v.end);
            found->end = value_end;
            return 1;
        }
        p = skip_ws(value_end, v.end);
        if (p < v.end && *p == ',')
            p = skip_ws(p + 1, v.end);
    }
    return 0;
}

static int is(struct span v, char c) { return skip_ws(v.p, v.end) < v.end && *skip_ws(v.p, v.end) == c; }

/* The elements of the (valid) array v, one at a time: *at starts at NULL. */
static int next_element(struct span v, const char **at, struct span *element)
{
    const char *p = *at ? *at : skip_ws(v.p, v.end) + 1;
    p = skip_ws(p, v.end);
    if (p < v.end && *p == ',')
        p = skip_ws(p + 1, v.end);
    if (p >= v.end || *p == ']')
        return 0;
    element->p = p;
    element->end = skip_value(p, v.end, 0);
    *at = element->end;
    return 1;
}

/* Whether string `name` is among the strings of array v. */
static int listed(struct span v, const char *name)
{
    const char *at = NULL;
    struct span element;
    char text[256];
    while (next_element(v, &at, &element))
        if (string_of(element, text, sizeof(text)) && strcmp(text, name) == 0)
            return 1;
    return 0;
}

/* ---- answers ---- */

static void put_error(struct buf *b, const char *class, const char *desc)
{
    put(b, "{\"error\": {\"class\": \"");
    put(b, class);
    put(b, "\", \"desc\": \"");
    put(b, desc);
    put(b, "\"}");
}

static void put_schema(struct buf *b, const struct kvm_stat *table, size_t count, const char *target)
{
    put(b, "{\"provider\": \"kvm\", \"stats\": [");
    for (size_t i = 0; i < count; i++) {
        const struct kvm_stat *st = &table[i];
        put(b, i ? ", {\"name\": \"" : "{\"name\": \"");
        put(b, st->name);
        put(b, "\", ");
        if (st->unit) {
            put(b, "\"unit\": \"");
            put(b, st->unit);
            put(b, "\", ");
        }
        if (st->unit && strcmp(st->unit, "seconds") == 0)
            put(b, "\"base\": 10, ");
        put(b, "\"exponent\": ");
        put_int(b, st->exponent);
        put(b, ", \"type\": \"");
        put(b, st->kind == CUMULATIVE ? "cumulative" : st->kind == INSTANT ? "instant"
               : st->kind == PEAK ? "peak" : "log2-histogram");
        put(b, "\"}");
    }
    put(b, "], \"target\": \"");
    put(b, target);
    put(b, "\"}");
}

static void qom_path(char *out, size_t size, int vcpu)
{
    /* QEMU 7.2's: vCPU 0 is device[0], the others device[2], device[3], ... */
    snprintf(out, size, "/machine/unattached/device[%d]", vcpu ? vcpu + 1 : 0);
}

static void query_cpus_fast(struct buf *b)
{
    put(b, "{\"return\": [");
    for (int i = 0; i < vcpus; i++) {
        char path[64];
        qom_path(path, sizeof(path), i);
        put(b, i ? ", {\"thread-id\": " : "{\"thread-id\": ");
        put_int(b, vcpu_tids[i]);
        put(b, ", \"props\": {\"core-id\": ");
        put_int(b, i);
        put(b, ", \"thread-id\": 0, \"socket-id\": 0}, \"qom-path\": \"");
        put(b, path);
        put(b, "\", \"cpu-index\": ");
        put_int(b, i);
        put(b, ", \"target\": \"x86_64\"}");
    }
    put(b, "]");
}

/* One provider entry of query-stats: the statistics `names` lets through (all without it). */
static void put_stats(struct buf *b, const struct kvm_stat *table, size_t count, int vcpu, const struct span *names,
                      uint64_t sec, uint64_t ns)
{
    put(b, "{\"provider\": \"kvm\", \"stats\": [");
    int first = 1;
    for (size_t i = 0; i < count; i++) {
        if (names && !listed(*names, table[i].name))
            continue;
        put(b, first ? "{\"name\": \"" : ", {\"name\": \"");
        first = 0;
        put(b, table[i].name);
        put(b, "\", \"value\": ");
        put_value(b, &table[i], vcpu, sec, ns);
        put(b, "}");
    }
    put(b, "]");
}

static void query_stats(struct buf *b, struct span arguments, int has_arguments)
{
    struct span target, providers, vcpu_filter;
    char name[32];
    if (!has_arguments || !member(arguments, "target", &target)) {
        put_error(b, "GenericError", "Parameter 'target' is missing");
        return;
    }
    if (!string_of(target, name, sizeof(name)) || (strcmp(name, "vm") && strcmp(name, "vcpu"))) {
        put_error(b, "GenericError", "Parameter 'target' does not accept this value");
        return;
    }
    int vm = strcmp(name, "vm") == 0;
    int has_vcpus = !vm && member(arguments, "vcpus", &vcpu_filter);
    if (has_vcpus && !is(vcpu_filter, '[')) {
        put_error(b, "GenericError", "Invalid parameter type for 'vcpus', expected: array");
        return;
    }
    /* providers: [{"provider": "kvm", "names": [...]}]: kvm's, names the given ones' only. */
    int wanted = 1;
    struct span names, *names_filter = NULL;
    if (member(arguments, "providers", &providers)) {
        if (!is(providers, '[')) {
            put_error(b, "GenericError", "Invalid parameter type for 'providers', expected: array");
            return;
        }
        const char *at = NULL;
        struct span entry, provider;
        wanted = 0;
        while (next_element(providers, &at, &entry)) {
            if (!is(entry, '{') || !member(entry, "provider", &provider) || !string_of(provider, name, sizeof(name))) {
                put_error(b, "GenericError", "Parameter 'provider' is missing");
                return;
            }
            if (strcmp(name, "kvm")) {
                put_error(b, "GenericError", "Parameter 'provider' does not accept this value");
                return;
            }
            wanted = 1;
            if (member(entry, "names", &names) && is(names, '['))
                names_filter = &names;
        }
    }
    uint64_t ns, sec = seconds_since_start(&ns);
    put(b, "{\"return\": [");
    if (wanted && vm) {
        put_stats(b, vm_stats, COUNT(vm_stats), 0, names_filter, sec, ns);
        put(b, "}");
    } else if (wanted) {
        int first = 1;
        for (int i = vcpus - 1; i >= 0; i--) {
            char path[64];
            qom_path(path, sizeof(path), i);
            if (has_vcpus && !listed(vcpu_filter, path))
                continue;
            if (!first)
                put(b, ", ");
            first = 0;
            put_stats(b, vcpu_stats, COUNT(vcpu_stats), i, names_filter, sec, ns);
            put(b, ", \"qom-path\": \"");
            put(b, path);
            put(b, "\"}");
        }
    }
    put(b, "]");
}

struct client {
    int fd;
    int negotiated;
    struct buf in, out;
    size_t sent;
};

/* Answers one request (the span of a complete top-level JSON value). */
static void answer(struct client *c, struct span request)
{
    struct buf *b = &c->out;
    struct span execute, arguments, id;
    char command[64];
    int has_id = 0;
    if (!is(request, '{')) {
        put_error(b, "GenericError", "QMP input must be a JSON object");
    } else if (!skip_value(request.p, request.end, 0)) {
        put_error(b, "GenericError", "JSON parse error");
    } else {
        has_id = member(request, "id", &id);
        int has_arguments = member(request, "arguments", &arguments);
        if (!member(request, "execute", &execute)) {
            put_error(b, "GenericError", "QMP input lacks member 'execute'");
        } else if (!string_of(execute, command, sizeof(command))) {
            put_error(b, "GenericError", "QMP input member 'execute' must be a string");
        } else if (has_arguments && !is(arguments, '{')) {
            put_error(b, "GenericError", "QMP input member 'arguments' must be an object");
        } else if (strcmp(command, "qmp_capabilities") == 0) {
            if (c->negotiated) {
                put_error(b, "CommandNotFound", "Capabilities negotiation is already complete, command ignored");
            } else {
                c->negotiated = 1;
                put(b, "{\"return\": {}");
            }
        } else if (!c->negotiated) {
            put_error(b, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
        } else if (strcmp(command, "query-stats-schemas") == 0) {
            struct span provider;
            char name[32];
            if (has_arguments && member(arguments, "provider", &provider)
                && (!string_of(provider, name, sizeof(name)) || strcmp(name, "kvm"))) {
                put_error(b, "GenericError", "Parameter 'provider' does not accept this value");
            } else {
                put(b, "{\"return\": [");
                put_schema(b, vcpu_stats, COUNT(vcpu_stats), "vcpu");
                put(b, ", ");
                put_schema(b, vm_stats, COUNT(vm_stats), "vm");
                put(b, "]");
            }
        } else if (strcmp(command, "query-cpus-fast") == 0) {
            query_cpus_fast(b);
        } else if (strcmp(command, "query-stats") == 0) {
            query_stats(b, arguments, has_arguments);
        } else {
            int plain = 1;
            for (const char *p = command; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'
                      || *p == '_'))
                    plain = 0;
            put(b, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command ");
            put(b, plain ? command : "(unprintable)");
            put(b, " has not been found\"}");
        }
    }
    if (has_id && id.end) {
        put(b, ", \"id\": ");
        put_bytes(b, id.p, (size_t)(id.end - id.p));
    }
    put(b, "}\r\n");
}

/* The end of the complete top-level JSON value at the start of in (after blanks), NULL when
 * incomplete; *bad when what is there cannot become one (answered with an error up to the
 * next newline). */
static const char *complete(const char *p, const char *end, int *bad)
{
    *bad = 0;
    if (*p != '{' && *p != '[') {
        *bad = 1;
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        return newline ? newline + 1 : NULL;
    }
    int depth = 0, in_string = 0;
    for (; p < end; p++) {
        char ch = *p;
        if (in_string) {
            if (ch == '\\' && ++p == end)
                return NULL;
            else if (ch == '"')
                in_string = 0;
        } else if (ch == '"') {
            in_string = 1;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return p + 1;
        }
    }
    return NULL;
}

static void handle_input(struct client *c)
{
    size_t done = 0;
    while (done < c->in.len) {
        const char *p = skip_ws(c->in.data + done, c->in.data + c->in.len);
        const char *end = c->in.data + c->in.len;
        done = (size_t)(p - c->in.data);
        if (p == end)
            break;
        int bad;
        const char *value_end = complete(p, end, &bad);
        if (!value_end) {
            if (end - p > MAX_INPUT) { /* never ends: said once, dropped */
                put_error(&c->out, "GenericError", "JSON parse error, input too long");
                put(&c->out, "}\r\n");
                done = c->in.len;
            }
            break;
        }
        if (bad) {
            put_error(&c->out, "GenericError", "JSON parse error, invalid keyword");
            put(&c->out, "}\r\n");
        } else {
            answer(c, (struct span){p, value_end});
        }
        done = (size_t)(value_end - c->in.data);
    }
    memmove(c->in.data, c->in.data + done, c->in.len - done);
    c->in.len -= done;
}

/* Sends what can be sent now; 0 when the client is gone. */
static int flush(struct client *c)
{
    while (c->sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->sent, c->out.len - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return 0;
        }
        c->sent += (size_t)n;
    }
    if (c->sent == c->out.len) {
        c->out.len = 0;
        c->sent = 0;
    }
    return c->out.len - c->sent <= MAX_OUTPUT;
}

static void drop(struct client *c)
{
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static int serve_read(struct client *c)
{
    for (;;) {
        reserve(&c->in, 16384);
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c->in.len += (size_t)n;
        handle_input(c);
        if (c->out.len - c->sent > MAX_OUTPUT)
            return 0;
    }
}

/* ---- vCPUs: threads that sleep ---- */

static void *vcpu_thread(void *arg)
{
    int index = (int)(intptr_t)arg;
    char name[16];
    snprintf(name, sizeof(name), "CPU %d/KVM", index);
    pthread_setname_np(pthread_self(), name);
    vcpu_tids[index] = gettid();
    __atomic_add_fetch(&vcpus_started, 1, __ATOMIC_RELEASE);
    for (;;)
        pause(); /* every signal is blocked here: sleeps until the process ends */
    return NULL;
}

/* ---- start ---- */

static void usage(void)
{
    fprintf(stderr, "usage: qmp-standin [-name guest=NAME] [-smp N] -qmp unix:PATH,server=on,wait=off\n"
                    "       qmp-standin [-name guest=NAME] [-smp N] -chardev socket,id=ID,path=PATH,server=on,wait=off"
                    " -mon chardev=ID,mode=control\n");
    exit(2);
}

/* PATH of `unix:PATH,server=on,...` (`,,` a literal comma), when it names a server. */
static char *parse_qmp(const char *value)
{
    if (strncmp(value, "unix:", 5))
        return NULL;
    value += 5;
    char *path = malloc(strlen(value) + 1);
    size_t n = 0;
    const char *p = value;
    for (; *p; p++) {
        if (*p == ',') {
            if (p[1] != ',')
                break;
            p++;
        }
        path[n++] = *p;
    }
    path[n] = 0;
    int server = 0;
    while (*p == ',') {
        const char *option = ++p;
        while (*p && *p != ',')
            p++;
        size_t len = (size_t)(p - option);
        if ((len == 6 && !strncmp(option, "server", 6)) || (len == 9 && !strncmp(option, "server=on", 9))
            || (len == 10 && !strncmp(option, "server=yes", 10)) || (len == 11 && !strncmp(option, "server=true", 11)))
            server = 1;
    }
    if (!server || n == 0) {
        free(path);
        return NULL;
    }
    return path;
}

/* PATH of `socket,id=ID,path=PATH,server=on,...` (no `,,` in it), when it names a server: as
 * `unix:PATH,<the other options>` for parse_qmp. */
static char *parse_chardev(const char *value)
{
    if (strncmp(value, "socket,", 7))
        return NULL;
    const char *path = strstr(value, ",path=");
    if (!path)
        return NULL;
    path += 6;
    size_t len = strcspn(path, ",");
    size_t size = 5 + len + strlen(value + 6) + 1;
    char *qmp = malloc(size);
    snprintf(qmp, size, "unix:%.*s%s", (int)len, path, value + 6);
    char *found = parse_qmp(qmp);
    free(qmp);
    return found;
}

static int parse_smp(const char *value)
{
    /* `N` or `cpus=N,...` (`sockets=...` alone: 1). */
    const char *cpus = strncmp(value, "cpus=", 5) == 0 ? value + 5 : value;
    const char *found = strstr(value, ",cpus=");
    if (cpus == value && (*value < '0' || *value > '9'))
        cpus = found ? found + 6 : "1";
    long n = strtol(cpus, NULL, 10);
    if (n < 1 || n > MAX_VCPUS) {
        fprintf(stderr, "qmp-standin: -smp %s: 1 to %d vCPUs\n", value, MAX_VCPUS);
        exit(2);
    }
    return (int)n;
}

/* Binds and listens at socket_path: through a temporary name renamed into place, so the path
 * never names a socket that refuses connections. */
static int listen_at(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("qmp-standin: socket");
        exit(1);
    }
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    char temporary[sizeof(address.sun_path) + 32];
    snprintf(temporary, sizeof(temporary), "%s.%d~", socket_path, (int)getpid());
    const char *bound = strlen(temporary) < sizeof(address.sun_path) ? temporary : socket_path;
    if (strlen(bound) >= sizeof(address.sun_path)) {
        fprintf(stderr, "qmp-standin: %s: path too long for a unix socket\n", socket_path);
        exit(1);
    }
    strcpy(address.sun_path, bound);
    unlink(bound);
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) < 0 || listen(fd, 64) < 0) {
        fprintf(stderr, "qmp-standin: %s: %s\n", bound, strerror(errno));
        exit(1);
    }
    if (bound != socket_path && rename(bound, socket_path) < 0) {
        fprintf(stderr, "qmp-standin: %s: %s\n", socket_path, strerror(errno));
        unlink(bound);
        exit(1);
    }
    struct stat st;
    if (stat(socket_path, &st) == 0)
        socket_inode = st.st_ino;
    return fd;
}

static void remove_socket(void)
{
    struct stat st;
    /* Only the socket this process made (not one put there since). */
    if (socket_path && stat(socket_path, &st) == 0 && st.st_ino == socket_inode)
        unlink(socket_path);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
        if (strcmp(option, "-h") == 0 || strcmp(option, "-help") == 0)
            usage();
        if (i + 1 >= argc)
            break;
        if (strcmp(option, "-qmp") == 0) {
            socket_path = parse_qmp(argv[++i]);
            if (!socket_path) {
                fprintf(stderr, "qmp-standin: -qmp %s: only unix:PATH,server=on[,wait=off]\n", argv[i]);
                exit(2);
            }
        } else if (strcmp(option, "-chardev") == 0) {
            socket_path = parse_chardev(argv[++i]);
            if (!socket_path) {
                fprintf(stderr, "qmp-standin: -chardev %s: only socket,id=ID,path=PATH,server=on[,wait=off]\n", argv[i]);
                exit(2);
            }
        } else if (strcmp(option, "-mon") == 0) {
            i++; /* read by kvmstat */
        } else if (strcmp(option, "-smp") == 0) {
            vcpus = parse_smp(argv[++i]);
        } else if (strcmp(option, "-name") == 0) {
            i++; /* read by kvmstat from /proc/PID/cmdline, not here */
        }
    }
    if (!socket_path)
        usage();
    clock_gettime(CLOCK_MONOTONIC, &started);

    /* Signals go to the signalfd only: blocked here, and so in every thread made after. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGPIPE);
    sigprocmask(SIG_BLOCK, &signals, NULL);
    int signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0) {
        perror("qmp-standin: signalfd");
        return 1;
    }

    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    for (int i = 0; i < vcpus; i++) {
        pthread_t thread;
        int failure = pthread_create(&thread, &attributes, vcpu_thread, (void *)(intptr_t)i);
        if (failure) {
            fprintf(stderr, "qmp-standin: vCPU thread %d: %s\n", i, strerror(failure));
            return 1;
        }
        pthread_detach(thread);
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attributes);
    while (__atomic_load_n(&vcpus_started, __ATOMIC_ACQUIRE) < vcpus)
        nanosleep(&(struct timespec){0, 1000000}, NULL);

    int listener = listen_at();
    static struct client clients[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    static const char greeting[] = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "
                                   "\"package\": \"qmp-standin\"}, \"capabilities\": [\"oob\"]}}\r\n";
    struct pollfd fds[MAX_CLIENTS + 2];
    int owner[MAX_CLIENTS + 2];
    for (;;) {
        int n = 0;
        fds[n++] = (struct pollfd){.fd = signal_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = listener, .events = POLLIN};
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd < 0)
                continue;
            owner[n] = i;
            fds[n++] = (struct pollfd){.fd = clients[i].fd,
                                       .events = (short)(POLLIN | (clients[i].sent < clients[i].out.len ? POLLOUT : 0))};
        }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("qmp-standin: poll");
            break;
        }
        if (fds[0].revents) {
            struct signalfd_siginfo info;
            if (read(signal_fd, &info, sizeof(info)) == sizeof(info) && info.ssi_signo != SIGPIPE)
                break;
        }
        for (int k = 2; k < n; k++) {
            if (!fds[k].revents)
                continue;
            struct client *c = &clients[owner[k]];
            int alive = 1;
            if (fds[k].revents & (POLLIN | POLLHUP | POLLERR))
                alive = serve_read(c);
            if (alive)
                alive = flush(c);
            if (!alive)
                drop(c);
        }
        if (fds[1].revents & POLLIN) {
            for (;;) {
                int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                    if (clients[i].fd < 0)
                        slot = i;
                if (slot < 0) { /* too many at once: this one goes */
                    close(fd);
                    continue;
                }
                struct client *c = &clients[slot];
                c->fd = fd;
                put(&c->out, greeting);
                if (!flush(c))
                    drop(c);
            }
        }
    }
    remove_socket();
    return 0;
}
