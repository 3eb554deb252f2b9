#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKVMSyscalls
import Synchronization

/// RLIMIT_NOFILE: kvmstat needs one descriptor per (group, event).
public enum ResourceLimits {
    /// RLIM_INFINITY, which Swift can't import (it is `-1` cast to unsigned).
    static let infinity = rlim_t.max

    /// Ensures the soft limit is at least `needed`: the soft limit alone when the hard limit
    /// allows, else both (which needs CAP_SYS_RESOURCE). Throws the errno when it can't.
    public static func ensureOpenFiles(_ needed: Int) throws(Errno) {
        var limit = rlimit()
        guard getrlimit(resource(), &limit) == 0 else { throw Errno.current }
        if limit.rlim_cur != Self.infinity && limit.rlim_cur >= rlim_t(needed) { return }
        if limit.rlim_cur == Self.infinity { return }
        var wanted = limit
        wanted.rlim_cur = rlim_t(needed)
        if limit.rlim_max != Self.infinity && limit.rlim_max < rlim_t(needed) {
            wanted.rlim_max = rlim_t(needed)
        }
        guard setrlimit(resource(), &wanted) == 0 else { throw Errno.current }
    }

    /// Whether kvmstat runs as root (whose failures then mean a missing capability).
    public static var runningAsRoot: Bool { geteuid() == 0 }

    /// Processors online now (for how many threads to open perf groups with).
    public static func onlineProcessors() -> Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    public static func openFilesSoftLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(resource(), &limit) == 0 else { return 0 }
        return limit.rlim_cur == Self.infinity ? Int.max : Int(limit.rlim_cur)
    }

    /// Lifts RLIMIT_MEMLOCK (best effort): kernels before 5.11 charge BPF maps to it, and its
    /// usual 8 MiB soft limit would refuse the bpf source's maps.
    public static func unlimitLockedMemory() {
        var unlimited = rlimit(rlim_cur: Self.infinity, rlim_max: Self.infinity)
        setrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &unlimited)
    }

    private static func resource() -> __rlimit_resource_t {
        __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    }
}

/// The C library's heap, where kvmstat's resident size is decided.
public enum HeapMemory {
    /// At most `arenas` malloc arenas: the threads that read monitors and serve scrapes
    /// would otherwise each keep one, full of freed memory.
    public static func limitArenas(_ arenas: Int32) { ckvm_limit_malloc_arenas(arenas) }

    /// Gives freed heap memory back to the system.
    public static func trim() { ckvm_trim_memory() }

    /// Keeps up to `bytes` of freed memory at the heap's top rather than giving it back as it
    /// is freed (the C library's default keeps 128 KiB): for work that allocates and frees
    /// about as much at every sample, whose pages would otherwise be returned and faulted in
    /// again each time (libvirt's client library decoding its answer: a quarter of the libvirt
    /// source's CPU at 50 domains). Buffers up to that size (32 MiB at most) come from the
    /// heap too, not a mapping of their own unmapped when freed. The resident size between
    /// samples becomes what it is during one. Only ever raised, to at most 256 MiB; `trim()`
    /// still gives everything back.
    public static func keepFreed(upTo bytes: Int) {
        let wanted = Int32(clamping: min(max(bytes, 0), 256 << 20))
        keptFreed.withLock { kept in
            guard wanted > kept else { return }
            kept = wanted
            ckvm_keep_freed_memory(wanted)
        }
    }

    /// What `keepFreed` last asked for (0: the library's default).
    private static let keptFreed = Mutex<Int32>(0)
}
