/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef CKVM_SYSCALLS_H
#define CKVM_SYSCALLS_H

#include <stdint.h>

/* Thin, non-variadic entry points for the calls Swift cannot make itself
 * (syscall(2) and ioctl(2) are variadic). Each returns the raw result and
 * leaves errno set; the Swift layer in KVMCore turns -1 into a typed error. */

/* perf_event_open(2) through an architecture-provided syscall number. */
long ckvm_perf_event_open(long syscall_number, const void *attr, int pid, int cpu,
                          int group_fd, unsigned long flags);

/* bpf(2) through an architecture-provided syscall number. */
long ckvm_bpf(long syscall_number, int cmd, void *attr, unsigned int size);

/* ioctl(2) with an integer argument. */
int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value);

/* ioctl(2) with a pointer argument. */
int ckvm_ioctl_pointer(int fd, unsigned long request, void *pointer);

/* prctl(PR_SET_NAME): the calling thread's name (15 bytes at most), as /proc shows it. */
int ckvm_set_thread_name(const char *name);

/* prctl(PR_SET_DUMPABLE, 0): no core dump, whatever core_pattern says. */
int ckvm_set_not_dumpable(void);

/* accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC (a GNU extension the Swift Glibc module
 * does not show). */
int ckvm_accept_nonblocking(int fd);

/* The pid of the process serving the other end of a connected unix socket (SO_PEERCRED,
 * whose struct ucred the Swift Glibc module does not show); -1 with errno on failure. */
int ckvm_peer_pid(int fd);

/* Fewer malloc arenas (M_ARENA_MAX): the worker threads that read monitors would otherwise
 * each keep an arena of freed memory, and the resident size grows with the threads. */
void ckvm_limit_malloc_arenas(int arenas);

/* Gives freed heap memory back to the system (malloc_trim). */
void ckvm_trim_memory(void);

/* Keeps up to `bytes` of freed memory at the heap's top instead of giving it back when
 * memory is freed (M_TRIM_THRESHOLD), and takes buffers up to that size from the heap
 * (M_MMAP_THRESHOLD, at most 32 MiB). */
void ckvm_keep_freed_memory(int bytes);

/* Whether `sig`'s disposition is SIG_IGN (as inherited from nohup or a script's background
   job): 1 if so, 0 otherwise. */
int ckvm_signal_is_ignored(int sig);

#endif
