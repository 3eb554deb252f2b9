/* SPDX-License-Identifier: GPL-2.0-only */
#define _GNU_SOURCE
#include "ckvm_syscalls.h"

#include <malloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

long ckvm_perf_event_open(long syscall_number, const void *attr, int pid, int cpu,
                          int group_fd, unsigned long flags) {
    return syscall(syscall_number, attr, pid, cpu, group_fd, flags);
}

int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value) {
    return ioctl(fd, request, value);
}

int ckvm_ioctl_pointer(int fd, unsigned long request, void *pointer) {
    return ioctl(fd, request, pointer);
}

int ckvm_set_not_dumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int ckvm_accept_nonblocking(int fd) {
    return accept4(fd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int ckvm_peer_pid(int fd) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return credentials.pid;
}

void ckvm_limit_malloc_arenas(int arenas) {
    mallopt(M_ARENA_MAX, arenas);
    /* A fixed threshold: big buffers (a monitor's answer) are always mapped and unmapped
     * when freed, rather than the threshold growing until they stay in an arena. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
}

void ckvm_trim_memory(void) {
    malloc_trim(0);
}

void ckvm_keep_freed_memory(int bytes) {
    mallopt(M_TRIM_THRESHOLD, bytes);
    /* Buffers up to that size come from the heap too, not a mapping of their own that is
     * unmapped when freed (the C library refuses more than 32 MiB). */
    int mapped = bytes < (32 << 20) ? bytes : (32 << 20);
    if (mapped > 256 * 1024) mallopt(M_MMAP_THRESHOLD, mapped);
}

int ckvm_signal_is_ignored(int sig) {
    struct sigaction old;
    if (sigaction(sig, 0, &old) != 0) return 0;
    return !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN;
}

long ckvm_bpf(long syscall_number, int cmd, void *attr, unsigned int size) {
    return syscall(syscall_number, cmd, attr, size);
}

int ckvm_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}
