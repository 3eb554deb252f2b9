import KVMCore

/// One perf event group: every wanted tracepoint counted for one CPU (system-wide) or one
/// thread (`-p`). Members are added as fields become wanted and never removed, so the
/// kernel's group read lists them in `names` order.
final class PerfGroup {
    let pid: Int32
    let cpu: Int32
    private(set) var members: [FileDescriptor] = []
    /// The source's field index of each member, in the kernel's read order.
    private(set) var slots: [Int] = []
    private var position: [Int: Int] = [:]
    private var buffer: UnsafeMutableBufferPointer<UInt64>
    /// For a thread's group: its task-clock, and the counts it had when last read. An idle
    /// thread's counts cannot change, so its group is not read again (most vCPU threads of a
    /// big guest are idle at any moment, and a group read costs the kernel ~0.2 µs a counter).
    private var activity: FileDescriptor?
    private var lastClock: UInt64 = 0
    private var cachedCount = -1

    init(pid: Int32, cpu: Int32, activity: FileDescriptor? = nil) {
        self.pid = pid
        self.cpu = cpu
        self.activity = activity
        buffer = .allocate(capacity: 1)
    }

    /// Every descriptor of the group, for release.
    var descriptors: [FileDescriptor] { members + (activity.map { [$0] } ?? []) }

    deinit { buffer.deallocate() }

    var leader: FileDescriptor? { members.first }

    func contains(_ field: Int) -> Bool { position[field] != nil }

    /// Opens a counter for the source's field `field` in this group.
    func add(field: Int, tracepointID: UInt64, filter: String?,
             architecture: any Architecture) throws(Errno) {
        let fd = try PerfEvent.openTracepoint(
            id: tracepointID, pid: pid, cpu: cpu, group: leader,
            syscallNumber: architecture.perfEventOpenSyscall)
        if let filter {
            do throws(Errno) {
                try PerfEvent.setFilter(fd, filter, request: architecture.perfIoctls.setFilter)
            } catch {
                fd.close()
                throw error
            }
        }
        position[field] = members.count
        members.append(fd)
        slots.append(field)
        cachedCount = -1
        if buffer.count < members.count + 1 {
            buffer.deallocate()
            buffer = .allocate(capacity: max(members.count + 1, buffer.count * 2))
        }
    }

    /// Wants `field` (reset and enable, as upstream does on every filter change) or not
    /// (disable — except the leader: disabling it would stop the whole group).
    func set(_ field: Int, wanted: Bool, ioctls: PerfIoctls) {
        guard let i = position[field] else { return }
        cachedCount = -1
        if wanted {
            _ = try? members[i].ioctl(ioctls.reset)
            _ = try? members[i].ioctl(ioctls.enable)
        } else if i != 0 {
            _ = try? members[i].ioctl(ioctls.disable)
        }
    }

    func resetAll(ioctls: PerfIoctls) {
        cachedCount = -1
        for fd in members { _ = try? fd.ioctl(ioctls.reset) }
    }

    /// Adds this group's counts into `totals` (indexed by field) with one read(2).
    func accumulate(into totals: UnsafeMutableBufferPointer<Int>) throws(Errno) {
        guard let leader else { return }
        var n = cachedCount
        if let activity, let clock = try? PerfEvent.readCounter(activity) {
            if clock != lastClock || cachedCount < 0 {
                // Read the clock first: anything counted after it shows up next time.
                lastClock = clock
                n = min(try PerfEvent.readGroup(leader: leader, into: buffer), slots.count)
                cachedCount = n
            }
        } else {
            n = min(try PerfEvent.readGroup(leader: leader, into: buffer), slots.count)
        }
        slots.withUnsafeBufferPointer { slots in
            for i in 0..<n { totals[slots[i]] &+= Int(truncatingIfNeeded: buffer[i + 1]) }
        }
    }
}
