#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// Where each vCPU thread's time goes, from what the host kernel keeps per thread (readable
/// under lockdown, no counters opened): running guest code (`guest_time`), in the host
/// kernel (system time: exit handling), in the VMM's userspace (user time less guest time,
/// which the kernel also counts as user time), and runnable but waiting for a host CPU
/// (schedstat's run delay: the guest's steal time). Cumulative nanoseconds per vCPU
/// (`vcpu_wait_ns(vcpu1)`), summed per statistic and per guest as the qmp source's.
public final class VCPUTimeSource: StatSource {
    public let name = "vcpu"
    public var supportsByGuest: Bool { true }

    static let statistics: [(name: String, mode: String, help: String)] = [
        ("vcpu_guest_ns", "guest", "time vCPU threads ran guest code"),
        ("vcpu_kernel_ns", "kernel", "time vCPU threads spent in the host kernel (exit handling)"),
        ("vcpu_vmm_ns", "vmm", "time vCPU threads spent in the VMM's userspace (user time less guest time)"),
        ("vcpu_wait_ns", "wait", "time vCPU threads were runnable but waited for a host CPU (run delay, steal)"),
    ]

    static let kinds = Dictionary(uniqueKeysWithValues: statistics.map { ($0.name, StatKind.counter) })

    /// In Prometheus one family, by mode: `kvm_vcpu_seconds_total{mode="wait",vcpu="1"}`.
    static let dimensionHelp = "where vCPU threads' time went: guest code, host kernel, VMM userspace, "
        + "waiting for a host CPU"

    public static let description = SourceDescription(
        name: "vcpu", summary: "where each vCPU thread's time goes: guest, host kernel, VMM, waiting for a CPU (/proc)",
        enabledPhrase: "vcpu", byGuest: true, reads: [.pid, .fields, .includePast], defaultRank: nil,
        unavailableReason: { configuration in
            FileSystem.isDirectory(configuration.paths.proc) ? nil
                : "kvmstat: \(configuration.paths.proc) is not readable: vCPU threads cannot be found"
        },
        fields: { _ in statistics.map(\.name) },
        make: { configuration in VCPUTimeSource(configuration: configuration) })

    private let threads: VCPUThreads
    private let includePast: Bool
    private let nanosecondsPerTick: UInt64
    private var pid: Int
    private var book = GuestStatBook()
    private var known: [Int: [Int: Int?]] = [:]
    private var started = false
    private var sample = 0
    private var filter: FieldFilter?
    private var warnings: [String] = []
    private var emptyNotice = EmptyNotice()
    private let families: [String: MetricFamily]

    public init(configuration: SourceConfiguration) {
        threads = VCPUThreads(proc: configuration.paths.proc, debugfsKVM: configuration.paths.debugfsKVM)
        includePast = configuration.includePast
        pid = configuration.pid
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        nanosecondsPerTick = ticks > 0 ? 1_000_000_000 / UInt64(ticks) : 10_000_000
        families = Dictionary(uniqueKeysWithValues: Self.statistics.map { statistic in
            (statistic.name, MetricFamily(statistic.name, kind: .counter, unit: MetricUnit("seconds", base: 10, exponent: -9),
                                          help: statistic.help, origin: .kvmStatistic,
                                          dimension: MetricDimension(family: "vcpu_ns", help: Self.dimensionHelp,
                                                                     label: "mode", value: statistic.mode)))
        })
        filter = configuration.fieldFilter
        poll()
        book.select(filter)
    }

    public func availableFields() -> [String] { Self.statistics.map(\.name) }

    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        self.filter = filter
        book.select(filter)
    }

    public func setPid(_ pid: Int) throws(SourceError) { self.pid = pid }

    public func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        poll()
        book.select(filter)
        var reading = book.reading(request, pid: pid, families: families, origin: name)
        reading.warnings = warnings
        warnings.removeAll()
        return reading
    }

    /// Reads every vCPU thread of every KVM process once; returns the processes read.
    @discardableResult
    private func poll() -> Set<Int> {
        let initial = !started
        started = true
        sample += 1
        let present = threads.processes()
        book.keepOnly(present, watching: pid, proc: threads.proc)
        for gone in known.keys where !present.contains(gone) { known[gone] = nil }
        var read = Set<Int>()
        for process in present.sorted() {
            var cache = known[process] ?? [:]
            let vcpus = threads.threads(of: process, known: &cache, sample: sample)
            known[process] = cache
            guard !vcpus.isEmpty else { continue }
            if book.kinds(of: process).isEmpty {
                book.admit(process, name: Guests(proc: threads.proc).name(of: process), countsFromZero: !initial || includePast)
                book.setKinds(Self.kinds, of: process)
            }
            // Per vCPU index (a process with several VMs, as kvmstat-workload, has a vCPU 0 in
            // each: their times add up under one index).
            var sums: [Int: VCPUThreads.Times] = [:]
            for (tid, vcpu) in vcpus {
                guard let times = threads.times(pid: process, tid: tid, nanosecondsPerTick: nanosecondsPerTick) else { continue }
                var sum = sums[vcpu] ?? VCPUThreads.Times(user: 0, system: 0, guest: 0, waiting: 0)
                sum.user &+= times.user
                sum.system &+= times.system
                sum.guest &+= times.guest
                sum.waiting &+= times.waiting
                sums[vcpu] = sum
            }
            var readings: [GuestReading] = []
            for (vcpu, times) in sums {
                let vmm = times.user >= times.guest ? times.user - times.guest : 0
                readings += [GuestReading(name: "vcpu_guest_ns", vcpu: vcpu, value: times.guest),
                             GuestReading(name: "vcpu_kernel_ns", vcpu: vcpu, value: times.system),
                             GuestReading(name: "vcpu_vmm_ns", vcpu: vcpu, value: vmm),
                             GuestReading(name: "vcpu_wait_ns", vcpu: vcpu, value: times.waiting)]
            }
            _ = book.record(readings, of: process)
            read.insert(process)
        }
        if let notice = emptyNotice.check(empty: read.isEmpty, Self.noThreads) { warnings.append(notice) }
        return read
    }

    static let noThreads = "vcpu: no vCPU thread was found (no process has a VM, or its vCPU threads are neither "
        + "named as VMMs name them nor inside KVM_RUN): nothing to show until one is"

    public func reset() throws(SourceError) {
        book.reset(readNow: poll())
    }

    public func close() {}
}
