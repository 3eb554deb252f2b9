import KVMCore

/// One perf event group: every wanted tracepoint counted for one CPU (system-wide) or one
/// thread (`-p`). Members are added as fields become wanted and never removed, so the
/// kernel's group read lists them in `slots` order.
///
/// The group counts only while its leader is enabled, and the kernel schedules a group as a
/// whole: so the leader is opened disabled and enabled once every member has its filter, and
/// every later change (new members, a reset) happens with the leader stopped. Parent and child
/// events therefore always start together, and no child counts what its filter rejects.
final class PerfGroup {
    /// A thread, -1 (every task on `cpu`), or with `cgroup` a cgroup directory's descriptor.
    let pid: Int32
    let cpu: Int32
    /// Counts the tasks of a cgroup on `cpu` (PERF_FLAG_PID_CGROUP).
    let cgroup: Bool
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

    init(pid: Int32, cpu: Int32, activity: FileDescriptor? = nil, cgroup: Bool = false) {
        self.pid = pid
        self.cpu = cpu
        self.cgroup = cgroup
        self.activity = activity
        buffer = .allocate(capacity: 1)
    }

    /// Every descriptor of the group, for release.
    var descriptors: [FileDescriptor] { members + (activity.map { [$0] } ?? []) }

    deinit { buffer.deallocate() }

    var leader: FileDescriptor? { members.first }

    /// The thread it counts, if it counts one thread.
    var thread: Int? { pid > 0 && !cgroup ? Int(pid) : nil }

    func contains(_ field: Int) -> Bool { position[field] != nil }

    /// Opens a counter for the source's field `field` in this group. The first becomes the
    /// leader and is opened disabled: call `start` when the group is complete.
    func add(field: Int, tracepointID: UInt64, filter: String?,
             architecture: any Architecture) throws(Errno) {
        let fd = try PerfEvent.openTracepoint(
            id: tracepointID, pid: pid, cpu: cpu, group: leader, disabled: leader == nil,
            cgroup: cgroup, syscallNumber: architecture.perfEventOpenSyscall)
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

    /// Starts the whole group counting (its leader); every member counts from here on.
    func start(ioctls: PerfIoctls) throws(Errno) {
        cachedCount = -1
        guard let leader else { return }
        _ = try leader.ioctl(ioctls.enable)
    }

    /// Stops the whole group: while stopped no member counts, so members can be added and
    /// reset without parents and children drifting apart.
    func stop(ioctls: PerfIoctls) {
        cachedCount = -1
        _ = try? leader?.ioctl(ioctls.disable)
    }

    /// Wants `field` (enabled, as upstream does on every filter change) or not (disabled —
    /// except the leader: disabling it would stop the whole group). Call with the group
    /// stopped and reset it before starting it again.
    func set(_ field: Int, wanted: Bool, ioctls: PerfIoctls) {
        guard let i = position[field], i != 0 else { return }
        cachedCount = -1
        _ = try? members[i].ioctl(wanted ? ioctls.enable : ioctls.disable)
    }

    /// Zeroes every member at one instant: the group is stopped, reset, and started again.
    func resetAll(ioctls: PerfIoctls) {
        stop(ioctls: ioctls)
        restart(ioctls: ioctls)
    }

    /// Zeroes every member of a stopped group and starts it.
    func restart(ioctls: PerfIoctls) {
        for fd in members { _ = try? fd.ioctl(ioctls.reset) }
        try? start(ioctls: ioctls)
    }

    /// Adds this group's counts into `totals` (indexed by field) with one read(2).
    func accumulate(into totals: UnsafeMutableBufferPointer<UInt64>) throws(Errno) {
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
            for i in 0..<n { totals[slots[i]] &+= buffer[i + 1] }
        }
    }
}
