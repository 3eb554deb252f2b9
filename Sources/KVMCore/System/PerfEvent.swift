#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKVMSyscalls

/// perf_event_open(2) for tracepoint counters, read as groups (PERF_FORMAT_GROUP), so one
/// read(2) per group per sample returns every member's count.
public enum PerfEvent {
    static let typeTracepoint: UInt32 = 2
    static let formatGroup: UInt64 = 1 << 3
    static let flagFDCloexec: UInt = 1 << 3
    /// PERF_ATTR_SIZE_VER1: the fields up to bp_len, all kvmstat sets.
    static let attrSize = 72

    /// Opens a counter for tracepoint `id`. `pid`/`cpu` follow perf_event_open(2): a thread on
    /// any CPU (`cpu` -1) or everything on one CPU (`pid` -1). The first event of a group passes
    /// `group` nil and becomes its leader. A `disabled` event counts nothing until enabled: a
    /// group's leader is opened so, and enabled once every member has its filter, so no member
    /// ever counts what its filter would have rejected.
    ///
    /// With `cgroup`, `pid` is a descriptor of a cgroup v2 directory and the event counts every
    /// task of that cgroup (and the cgroups below it) while it runs on `cpu`.
    public static func openTracepoint(
        id: UInt64, pid: Int32, cpu: Int32, group: FileDescriptor?, disabled: Bool = false,
        cgroup: Bool = false, syscallNumber: Int
    ) throws(Errno) -> FileDescriptor {
        try open(type: typeTracepoint, config: id, readFormat: formatGroup, pid: pid, cpu: cpu,
                 group: group, flags: disabled ? flagDisabled : 0, openFlags: cgroup ? flagPidCgroup : 0,
                 syscallNumber: syscallNumber)
    }

    /// perf_event_open(2)'s PERF_FLAG_PID_CGROUP.
    static let flagPidCgroup: UInt = 1 << 2

    /// perf_event_attr's first flag bit: `disabled`.
    static let flagDisabled: UInt64 = 1

    /// Opens the task-clock of one thread (nanoseconds it ran), read as a plain u64. A thread
    /// whose task-clock did not move since the last sample cannot have counted anything.
    public static func openTaskClock(pid: Int32, syscallNumber: Int) throws(Errno) -> FileDescriptor {
        try open(type: typeSoftware, config: softwareTaskClock, readFormat: 0, pid: pid, cpu: -1,
                 group: nil, flags: 0, openFlags: 0, syscallNumber: syscallNumber)
    }

    static let typeSoftware: UInt32 = 1
    static let softwareTaskClock: UInt64 = 1

    /// perf_event_open(2) with a PERF_ATTR_SIZE_VER1 attribute; every other field stays 0
    /// (counting, enabled at once unless `flags` says disabled).
    private static func open(
        type: UInt32, config: UInt64, readFormat: UInt64, pid: Int32, cpu: Int32,
        group: FileDescriptor?, flags: UInt64, openFlags: UInt, syscallNumber: Int
    ) throws(Errno) -> FileDescriptor {
        var attr = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0),
                    UInt64(0), UInt64(0))
        let fd = withUnsafeMutableBytes(of: &attr) { raw -> Int in
            raw.storeBytes(of: type, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(attrSize), toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: config, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: readFormat, toByteOffset: 32, as: UInt64.self)
            raw.storeBytes(of: flags, toByteOffset: 40, as: UInt64.self)
            return ckvm_perf_event_open(syscallNumber, raw.baseAddress, pid, cpu,
                                        group?.rawValue ?? -1, flagFDCloexec | openFlags)
        }
        guard fd >= 0 else { throw Errno.current }
        return FileDescriptor(rawValue: Int32(fd))
    }

    /// Reads a single counter (read_format 0).
    public static func readCounter(_ fd: FileDescriptor) throws(Errno) -> UInt64 {
        var value: UInt64 = 0
        let n = try withUnsafeMutableBytes(of: &value) { (raw) throws(Errno) -> Int in try fd.read(into: raw) }
        return n == 8 ? value : 0
    }

    /// Reads a group's counters through its leader into `buffer`, laid out as the kernel's
    /// `struct read_format { u64 nr; u64 values[nr]; }`: member i's count is `buffer[i + 1]`.
    /// Returns how many members the kernel reported.
    public static func readGroup(
        leader: FileDescriptor, into buffer: UnsafeMutableBufferPointer<UInt64>
    ) throws(Errno) -> Int {
        let n = try leader.read(into: UnsafeMutableRawBufferPointer(buffer))
        guard n >= 8 else { return 0 }
        return min(Int(buffer[0]), n / 8 - 1)
    }

    /// Attaches BPF program `program` to tracepoint event `event` (PERF_EVENT_IOC_SET_BPF,
    /// `request` being the architecture's encoding): it runs on every hit, on every CPU.
    public static func attach(program: FileDescriptor, to event: FileDescriptor, request: UInt) throws(Errno) {
        guard ckvm_ioctl_value(event.rawValue, request, UInt(bitPattern: Int(program.rawValue))) >= 0 else {
            throw Errno.current
        }
    }

    /// Installs a tracepoint filter such as `reason==2`.
    public static func setFilter(
        _ fd: FileDescriptor, _ filter: String, request: UInt
    ) throws(Errno) {
        var bytes = Array(filter.utf8CString)
        let result = bytes.withUnsafeMutableBytes { raw -> Int32 in
            ckvm_ioctl_pointer(fd.rawValue, request, raw.baseAddress)
        }
        guard result >= 0 else { throw Errno.current }
    }
}
