import KVMCore

/// One perf event group: every wanted tracepoint counted for one CPU (system-wide) or one
/// thread (`-p`). Members are added as fields become wanted and never removed, so the
/// kernel's group read lists them in `names` order.
final class PerfGroup {
    let pid: Int32
    let cpu: Int32
    private(set) var members: [FileDescriptor] = []
    private(set) var names: [String] = []
    private var position: [String: Int] = [:]
    /// The key each member reports under, or nil while its field is not wanted.
    private var keys: [String?] = []
    private var buffer: UnsafeMutableBufferPointer<UInt64>

    init(pid: Int32, cpu: Int32) {
        self.pid = pid
        self.cpu = cpu
        buffer = .allocate(capacity: 1)
    }

    deinit { buffer.deallocate() }

    var leader: FileDescriptor? { members.first }

    func contains(_ name: String) -> Bool { position[name] != nil }

    /// Opens a counter for `name` in this group.
    func add(name: String, key: String, tracepointID: UInt64, filter: String?,
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
        position[name] = members.count
        members.append(fd)
        names.append(name)
        keys.append(key)
        if buffer.count < members.count + 1 {
            buffer.deallocate()
            buffer = .allocate(capacity: max(members.count + 1, buffer.count * 2))
        }
    }

    /// Wants `name` (reset and enable, as upstream does on every filter change) or not
    /// (disable — except the leader: disabling it would stop the whole group).
    func set(_ name: String, wanted key: String?, ioctls: PerfIoctls) {
        guard let i = position[name] else { return }
        keys[i] = key
        if key != nil {
            _ = try? members[i].ioctl(ioctls.reset)
            _ = try? members[i].ioctl(ioctls.enable)
        } else if i != 0 {
            _ = try? members[i].ioctl(ioctls.disable)
        }
    }

    func resetAll(ioctls: PerfIoctls) {
        for fd in members { _ = try? fd.ioctl(ioctls.reset) }
    }

    /// Adds this group's wanted counts into `totals` with one read(2).
    func accumulate(into totals: inout [String: Int]) throws(Errno) {
        guard let leader else { return }
        let n = try PerfEvent.readGroup(leader: leader, into: buffer)
        for i in 0..<min(n, keys.count) {
            if let key = keys[i] { totals[key, default: 0] += Int(buffer[i]) }
        }
    }
}
