#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What this process uses, as Prometheus client libraries export it (`process_*`): CPU time,
/// memory, descriptors and start time, read from /proc/self and the descriptor limit.
public struct ProcessResources: Sendable, Equatable {
    /// User and system CPU time, nanoseconds.
    public var cpuNanoseconds: UInt64
    public var residentBytes: UInt64
    public var virtualBytes: UInt64
    public var openDescriptors: UInt64
    /// The soft limit on descriptors (`UInt64.max` when unlimited).
    public var maxDescriptors: UInt64
    /// When the process started, nanoseconds since the epoch.
    public var startTimeNanoseconds: UInt64

    /// How many descriptors this process has open; nil when /proc/self/fd cannot be listed.
    public static func openDescriptorCount(proc: String = "/proc") -> Int? {
        (try? FileSystem.numericEntries("\(proc)/self/fd"))?.count
    }

    /// Now, or nil when /proc/self cannot be read (no /proc).
    public static func current(proc: String = "/proc") -> ProcessResources? {
        // utime 14, stime 15, starttime 22, vsize 23, rss 24 (pages).
        guard let stat = ProcStat(path: "\(proc)/self/stat") else { return nil }
        let field = { (number: Int) in stat[number] }
        let ticks = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        let nanosecondsPerTick = 1_000_000_000 / ticks
        let pageSize = UInt64(max(1, sysconf(Int32(_SC_PAGESIZE))))
        let descriptors = UInt64(openDescriptorCount(proc: proc) ?? 0)
        let limit = ResourceLimits.openFilesSoftLimit()
        // Boot time (`btime` of /proc/stat, seconds since the epoch) plus the start in ticks.
        let boot = (try? FileSystem.readText("\(proc)/stat"))?.split(separator: "\n")
            .first { $0.hasPrefix("btime ") }.flatMap { UInt64($0.dropFirst(6)) } ?? 0
        return ProcessResources(
            cpuNanoseconds: (field(14) &+ field(15)) &* nanosecondsPerTick,
            residentBytes: field(24) &* pageSize, virtualBytes: field(23),
            openDescriptors: descriptors, maxDescriptors: limit == Int.max ? .max : UInt64(max(0, limit)),
            startTimeNanoseconds: boot &* 1_000_000_000 &+ field(22) &* nanosecondsPerTick)
    }
}
