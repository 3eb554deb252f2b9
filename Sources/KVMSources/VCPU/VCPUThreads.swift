import KVMCore

/// The vCPU threads of the host's KVM processes, found in /proc: a VMM names its vCPU
/// threads (QEMU `CPU 0/KVM` with `-name debug-threads=on`, as libvirt starts it;
/// Firecracker `fc_vcpu 0`; cloud-hypervisor and crosvm `vcpu0`), and the name gives the
/// vCPU's index. A thread without such a name is a vCPU when it is inside KVM_RUN on a
/// `kvm-vcpu:N` descriptor (`/proc/PID/task/TID/syscall`: plain QEMU names no thread); one
/// caught outside it is looked at again a few samples later. KVM processes are those with a VM in
/// debugfs (`kvm/PID-FD`, listable also under lockdown), else those with `-name`.
struct VCPUThreads {
    let proc: String
    let debugfsKVM: String

    /// Per thread: its process, vCPU index, and the times the kernel keeps for it.
    struct Times: Sendable, Equatable {
        var user: UInt64
        var system: UInt64
        var guest: UInt64
        /// Time runnable but waiting for a CPU (schedstat), nanoseconds.
        var waiting: UInt64
    }

    /// The vCPU index a thread name gives, nil for a thread that is no vCPU.
    static func vcpuIndex(threadName name: String) -> Int? {
        var text = Substring(name)
        if text.hasPrefix("CPU "), text.hasSuffix("/KVM") {
            text = text.dropFirst(4).dropLast(4)
        } else if text.hasPrefix("fc_vcpu ") {
            text = text.dropFirst(8)
        } else if text.hasPrefix("vcpu") {
            text = text.dropFirst(4).drop { $0 == " " || $0 == "_" }
        } else {
            return nil
        }
        guard !text.isEmpty, text.count <= 6, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              let index = Int(text), index < maxVCPUs else { return nil }
        return index
    }

    /// The KVM processes now: pids with a VM in debugfs, or (debugfs unreadable) with `-name`.
    func processes() -> Set<Int> {
        if let entries = try? FileSystem.listDirectory(debugfsKVM) {
            return Set(entries.filter(\.isDirectory).compactMap { entry in
                entry.name.split(separator: "-").first.flatMap { Int($0) }
            })
        }
        return Set(Guests(proc: proc).all().map(\.pid))
    }

    /// Each vCPU thread of process `pid` (tid → vCPU index). A thread is looked at once
    /// (`known`, which forgets threads that are gone): its name, else whether it is in
    /// KVM_RUN; one that was neither is looked at again every sample at first (a starting
    /// guest's vCPUs enter KVM_RUN late), then every `recheckEvery` samples (spread by tid),
    /// not every sample for ever (a QEMU's I/O and RCU threads are never vCPUs).
    func threads(of pid: Int, known: inout [Int: Int?], sample: Int) -> [Int: Int] {
        guard let live = liveThreads(of: pid, known: &known, sample: sample) else { return [:] }
        return live.compactMapValues { $0 }
    }

    /// Every living thread of process `pid` with its vCPU index (nil: no vCPU), looked at as
    /// `threads(of:known:sample:)` says; nil when the process has gone (`known` unchanged).
    func liveThreads(of pid: Int, known: inout [Int: Int?], sample: Int) -> [Int: Int?]? {
        guard let tids = try? FileSystem.numericEntries("\(proc)/\(pid)/task") else { return nil }
        var seen: [Int: Int?] = [:]
        seen.reserveCapacity(tids.count)
        for tid in tids {
            var index: Int?
            switch known[tid] {
            case .some(.some(let cached)): index = cached
            case .some(.none) where sample > Self.recheckEvery && (sample &+ tid) % Self.recheckEvery != 0: index = nil
            case .some(.none): index = inKVMRun(pid: pid, tid: tid)
            case .none:
                let name = (try? FileSystem.readText("\(proc)/\(pid)/task/\(tid)/comm"))?.trimmingBlanks() ?? ""
                index = Self.vcpuIndex(threadName: name) ?? inKVMRun(pid: pid, tid: tid)
            }
            seen[tid] = .some(index)
        }
        known = seen
        return seen
    }

    static let recheckEvery = 8

    /// vCPU indexes beyond KVM's own limit (x86's KVM_MAX_VCPUS) are no vCPU's: a name is
    /// anyone's to choose, and each index is a row and a series.
    static let maxVCPUs = 4096

    /// The vCPU index of a thread blocked in KVM_RUN (`ioctl(fd, 0xae80)`, the request's
    /// low 16 bits on every architecture) on a descriptor that is a `kvm-vcpu:N`; nil else.
    func inKVMRun(pid: Int, tid: Int) -> Int? {
        guard let text = try? FileSystem.readText("\(proc)/\(pid)/task/\(tid)/syscall") else { return nil }
        let words = text.split(separator: " ")
        guard words.count >= 3, let fd = UInt64(words[1].dropFirst(2), radix: 16),
              let request = UInt64(words[2].dropFirst(2), radix: 16), request & 0xffff == 0xae80, fd < 1 << 20,
              let target = try? FileSystem.linkTarget("\(proc)/\(pid)/fd/\(fd)"), target.hasPrefix("anon_inode:kvm-vcpu:")
        else { return nil }
        return Int(target.dropFirst("anon_inode:kvm-vcpu:".count)).flatMap { $0 < Self.maxVCPUs ? $0 : nil }
    }

    /// A thread's times in nanoseconds, nil when it has gone.
    func times(pid: Int, tid: Int, nanosecondsPerTick: UInt64) -> Times? {
        let directory = "\(proc)/\(pid)/task/\(tid)"
        // utime 14, stime 15, guest_time 43.
        guard let stat = ProcStat(path: directory + "/stat") else { return nil }
        let waiting = (try? FileSystem.readText(directory + "/schedstat"))
            .flatMap { $0.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } } ?? 0
        return Times(user: stat[14] &* nanosecondsPerTick, system: stat[15] &* nanosecondsPerTick,
                     guest: stat[43] &* nanosecondsPerTick, waiting: waiting)
    }
}
