#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// KVM's tracepoints counted in the kernel: BPF programs assembled here (`CountingProgram`),
/// on each counted tracepoint's perf event (`TracepointPrograms`), add every hit to a hash
/// map keyed by thread, thread group, event and exit reason. kvmstat reads the map once a
/// sample. The same fields and names as the tracepoint source (`kvm_userspace_exit(IO)`),
/// per guest without cgroups and per thread without one perf event each: the descriptors are
/// two per tracepoint, a few programs and two maps, whatever the CPUs, guests and threads.
///
/// What it costs the guests: no filter is evaluated per hit, one program runs (a map lookup
/// and an atomic add), where the tracepoint source runs one filter per exit reason.
public final class BPFSource: StatSource {
    public let name = "bpf"
    public var supportsByGuest: Bool { true }

    /// Keys the count map holds at most (about 72 bytes of kernel memory each, allocated as
    /// used): a thread's events and reasons, ~20 per vCPU, for 3,000 vCPUs.
    static let maxKeys = 65_536

    public static let description = SourceDescription(
        name: "bpf",
        summary: "KVM tracepoints counted in the kernel by BPF programs, per guest and thread "
            + "(needs root, kernel >= 4.7; at most \(maxKeys) thread/event/reason counts, ~5 MB of kernel memory)",
        enabledPhrase: "bpf", byGuest: true, reads: [.pid, .fields, .latency], defaultRank: nil,
        unavailableReason: { configuration in
            if !configuration.architectureIsHosts {
                return "kvmstat: the bpf source cannot run for --arch \(configuration.architecture.name) on this host"
            }
            return TracepointCatalog.unavailableReason(configuration)
        },
        fields: { (configuration) throws(SourceError) in try TracepointCatalog.fieldNames(configuration) },
        make: { (configuration) throws(SourceError) in try BPFSource(configuration: configuration) })

    private let catalog: TracepointCatalog
    private let bpf: BPFSystem
    private let architecture: any Architecture
    private let proc: String
    private let counts: FileDescriptor
    private let dropped: FileDescriptor
    /// The programs on the tracepoints, and their descriptors.
    private let programs: TracepointPrograms
    /// Field index of each parent tracepoint (the event number in keys), and of each child by
    /// event and reason value.
    private let eventOfTracepoint: [String: UInt32]
    private let childField: [UInt32: [UInt32: Int]]
    /// Whether the kernel reads the map in batches (until it says it cannot).
    private var batchLookups = true
    /// Keys of exited threads found by the last read, to delete.
    private var exited: [CountingProgram.Key] = []
    private var pid: Int
    private var wanted: [Int] = []
    /// Counts at the last reset, by key (subtracted from what the map says).
    private var baseline: [CountingProgram.Key: UInt64] = [:]
    /// What threads that exited counted, by thread group and field (their keys are deleted
    /// from the map so it does not fill with the dead).
    private var departed: [UInt32: [Int: UInt64]] = [:]
    /// Each guest's threads are listed every this many samples (and at once for a new one).
    static let listEvery = 4
    /// The thread group that stands for guests that have quit (no pid is this big).
    static let quitGroups = UInt32.max
    /// What exited vCPU threads counted, by thread group, vCPU and event.
    private var departedVCPUs: [VCPUCount: UInt64] = [:]
    /// Each thread group's living threads and their vCPU indexes, as last looked at.
    private var threadsOf: [UInt32: [Int: Int?]] = [:]
    /// Thread groups that are kernel threads (`kvm-pit`, vhost workers): the host's, not
    /// guests. Known while they are in the map.
    private var kernelThreads: [UInt32: Bool] = [:]
    private let threads: VCPUThreads
    private var samples = 0
    private var exitNotice = SilentExitNotice()
    /// The field filter, and whether it wants each per-vCPU child (by name) as it wants a
    /// tracepoint's reason children.
    private var filter: FieldFilter?
    private var vcpuChildWanted: [String: Bool] = [:]
    private var warnedDropped = false
    private var warnings: [String] = []
    private var guestNames: GuestNames
    private var handoffs: [Int32] = []
    private var closed = false
    /// The architecture's latency pairs being timed (`--latency`).
    private var timers: [LatencyTimer] = []

    public init(configuration: SourceConfiguration) throws(SourceError) {
        if let reason = Self.description.unavailableReason(configuration) {
            throw SourceError(reason.hasPrefix("kvmstat: ") ? String(reason.dropFirst("kvmstat: ".count)) : reason)
        }
        architecture = configuration.architecture
        catalog = try TracepointCatalog(configuration: configuration)
        bpf = BPFSystem(syscallNumber: architecture.bpfSyscall)
        proc = configuration.paths.proc
        pid = configuration.pid
        guestNames = GuestNames(proc: proc)
        threads = VCPUThreads(proc: proc, debugfsKVM: configuration.paths.debugfsKVM)
        ResourceLimits.unlimitLockedMemory()
        do throws(Errno) {
            counts = try bpf.createMap(.hash, keySize: CountingProgram.keySize, valueSize: 8,
                                       maxEntries: Self.maxKeys, name: "kvmstat_counts", noPrealloc: true)
        } catch {
            throw Self.failure("create its count map", error)
        }
        do throws(Errno) {
            dropped = try bpf.createMap(.array, keySize: 4, valueSize: 8, maxEntries: 1, name: "kvmstat_drops")
        } catch {
            counts.close()
            throw Self.failure("create its map of dropped counts", error)
        }
        var events: [String: UInt32] = [:]
        var children: [UInt32: [UInt32: Int]] = [:]
        for (field, key) in catalog.keys.enumerated() where key.parent == nil { events[key.name] = UInt32(field) }
        for (field, key) in catalog.keys.enumerated() {
            guard let parent = key.parent, let event = events[parent],
                  let value = catalog.reasonValue(of: field), let reason = UInt32(exactly: value) else { continue }
            children[event, default: [:]][reason] = field
        }
        eventOfTracepoint = events
        childField = children
        programs = TracepointPrograms(catalog: catalog, bpf: bpf, architecture: architecture, counts: counts,
                                      dropped: dropped)
        do throws(SourceError) {
            try updateFields(configuration.fieldFilter)
            if configuration.latency { try startTimers() }
        } catch {
            close()
            throw error
        }
    }

    /// Times every latency pair of the architecture whose tracepoints this kernel has.
    private func startTimers() throws(SourceError) {
        let pairs = architecture.latencyPairs
        guard !pairs.isEmpty else {
            throw SourceError("--latency: kvmstat knows no exit latencies to time on \(architecture.name)")
        }
        for pair in pairs where catalog.tracepointID(pair.start) != nil && catalog.tracepointID(pair.end) != nil {
            timers.append(try LatencyTimer(pair: pair, catalog: catalog, bpf: bpf, dropped: dropped) { (tracepoint, code) throws(SourceError) in
                try self.programs.attach(code, to: tracepoint, name: "kvmstat_latency")
            })
        }
    }

    deinit { close() }

    static func failure(_ operation: String, _ error: Errno) -> SourceError {
        SourceError("the bpf source could not \(operation)", errno: error,
                    advice: error == .notPermitted || error == .permissionDenied
                        ? "it needs root (CAP_BPF and CAP_PERFMON), a kernel with BPF (4.7 or later) and no "
                            + "lockdown refusing it; the tracepoint source (-t) counts the same events"
                        : nil)
    }

    public func availableFields() -> [String] { catalog.fields }

    /// Attaches a program to every tracepoint the filter wants (those attached stay), and
    /// counts from zero again, as the tracepoint source does on a filter change.
    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        wanted = catalog.select(filter)
        self.filter = filter
        vcpuChildWanted.removeAll()
        for field in wanted where catalog.keys[field].parent == nil {
            let tracepoint = catalog.keys[field].name
            if let event = eventOfTracepoint[tracepoint] { try programs.count(tracepoint, event: event) }
        }
        try reset()
    }

    public func setPid(_ pid: Int) throws(SourceError) {
        self.pid = pid
    }

    /// One key's count since the baseline, and its thread's vCPU index if it is a vCPU.
    struct Entry {
        var key: CountingProgram.Key
        var count: UInt64
        var vcpu: Int?
    }

    /// A count per guest process, vCPU and event (the per-vCPU children).
    struct VCPUCount: Hashable {
        var tgid: UInt32
        var vcpu: Int
        var event: UInt32
    }

    /// Every key's count now, less its baseline; threads that have exited are folded into
    /// `departed` and their keys deleted. Each thread group's threads are listed
    /// (`VCPUThreads`: which are alive, and which vCPU each is) every `listEvery` samples, and
    /// at once when it has a thread not yet seen.
    private func collect() throws(SourceError) -> [Entry] {
        samples &+= 1
        // One call for all keys where the kernel has batch lookups, else two per key.
        let all: (keys: [UInt8], values: [UInt8], count: Int)
        do throws(Errno) {
            all = try bpf.elements(counts, keySize: CountingProgram.keySize, valueSize: 8, batched: &batchLookups)
        } catch {
            throw SourceError("reading the bpf source's counts", errno: error)
        }
        var keys: [(key: CountingProgram.Key, value: UInt64)] = []
        keys.reserveCapacity(all.count)
        all.keys.withUnsafeBytes { raw in
            all.values.withUnsafeBytes { values in
                for i in 0..<all.count {
                    let base = i * CountingProgram.keySize
                    keys.append((CountingProgram.Key(tid: raw.load(fromByteOffset: base, as: UInt32.self),
                                                     tgid: raw.load(fromByteOffset: base + 4, as: UInt32.self),
                                                     event: raw.load(fromByteOffset: base + 8, as: UInt32.self),
                                                     reason: raw.load(fromByteOffset: base + 12, as: UInt32.self)),
                                 values.load(fromByteOffset: i * 8, as: UInt64.self)))
                }
            }
        }
        // Which thread groups to list now: all every `listEvery` samples, else those with a
        // thread the last listing did not see (a thread that exited meanwhile still counts
        // right: its count stands still, and it is folded at the next listing).
        let listingSample = samples % Self.listEvery == 0
        var toList = Set<UInt32>()
        for (key, _) in keys where key.tid != 0 && key.tgid != 0 {
            if listingSample || threadsOf[key.tgid]?[Int(key.tid)] == nil { toList.insert(key.tgid) }
        }
        var live: [UInt32: [Int: Int?]] = [:]
        var gone = Set<UInt32>()
        for (key, _) in keys where key.tid != 0 && key.tgid != 0 && live[key.tgid] == nil && !gone.contains(key.tgid) {
            guard toList.contains(key.tgid) else {
                live[key.tgid] = threadsOf[key.tgid]
                continue
            }
            var known = threadsOf[key.tgid] ?? [:]
            // The rechecks of threads not yet known as vCPUs go by listing, not by sample.
            if let now = threads.liveThreads(of: Int(key.tgid), known: &known, sample: samples / Self.listEvery) {
                live[key.tgid] = now
            } else {
                gone.insert(key.tgid)
            }
        }
        var entries: [Entry] = []
        entries.reserveCapacity(keys.count)
        for (key, value) in keys {
            let base = baseline[key] ?? 0
            let counted = value >= base ? value - base : value
            // Interrupt context and the idle task count for the host, alive for ever.
            if key.tid == 0 || key.tgid == 0 {
                entries.append(Entry(key: key, count: counted, vcpu: nil))
            } else if let thread = live[key.tgid]?[Int(key.tid)] {
                entries.append(Entry(key: key, count: counted, vcpu: thread))
            } else {
                // Its vCPU as the listing before this one knew it.
                depart(key, counted, vcpu: threadsOf[key.tgid]?[Int(key.tid)] ?? nil)
            }
        }
        threadsOf = live
        // Groups whose process has gone: what they counted joins the one row of guests that
        // have quit (a kernel thread's, the host's), not a pid each of every guest that ever
        // ran. Also groups with no key left in the map (their threads exited before them),
        // looked at on listing samples.
        var ended = gone
        if listingSample {
            let departedGroups = Set(departed.keys).union(departedVCPUs.keys.map(\.tgid))
            for group in departedGroups where group != 0 && group != Self.quitGroups && live[group] == nil
                && access("\(proc)/\(group)", F_OK) != 0 {
                ended.insert(group)
            }
        }
        for group in ended where Int(group) != pid { fold(group, into: kernelThreads[group] == true ? 0 : Self.quitGroups) }
        kernelThreads = kernelThreads.filter { live[$0.key] != nil }
        for group in live.keys where kernelThreads[group] == nil {
            kernelThreads[group] = Self.isKernelThread(proc: proc, pid: group)
        }
        deleteExited()
        return entries
    }

    /// Moves what thread group `group` counted into `target`'s.
    private func fold(_ group: UInt32, into target: UInt32) {
        if let counts = departed.removeValue(forKey: group) {
            for (field, count) in counts { departed[target, default: [:]][field, default: 0] &+= count }
        }
        for (count, value) in departedVCPUs where count.tgid == group {
            departedVCPUs[count] = nil
            departedVCPUs[VCPUCount(tgid: target, vcpu: count.vcpu, event: count.event), default: 0] &+= value
        }
    }

    /// Whether process `pid` is a kernel thread (PF_KTHREAD in /proc/PID/stat's flags).
    static func isKernelThread(proc: String, pid: UInt32) -> Bool {
        // Flags is field 9.
        guard let stat = ProcStat(path: "\(proc)/\(pid)/stat") else { return false }
        return stat[9] & 0x0020_0000 != 0
    }

    /// Folds the count of an exited thread's key into `departed` (and its vCPU's), and
    /// marks the key for deletion (the map holds the living).
    private func depart(_ key: CountingProgram.Key, _ counted: UInt64, vcpu: Int?) {
        forEachField(of: key) { departed[key.tgid, default: [:]][$0, default: 0] &+= counted }
        if let vcpu {
            departedVCPUs[VCPUCount(tgid: key.tgid, vcpu: vcpu, event: key.event), default: 0] &+= counted
        }
        baseline[key] = nil
        exited.append(key)
    }

    /// Deletes the keys of threads that exited, once the map has been read (deleting while
    /// walking it key by key would start the walk again).
    private func deleteExited() {
        for var key in exited {
            _ = withUnsafeBytes(of: &key) { try? bpf.delete(counts, key: $0.baseAddress!) }
        }
        exited.removeAll()
    }

    /// The fields a key counts for: its event, and the child of its reason if there is one.
    private func forEachField(of key: CountingProgram.Key, _ body: (Int) -> Void) {
        let event = Int(key.event)
        guard event < catalog.keys.count else { return }
        body(event)
        if let child = childField[key.event]?[key.reason] { body(child) }
    }

    public func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        reapHandoffs()
        let entries = try collect()
        noteDrops()
        // Per thread group and field, what it counted (the living and its departed threads).
        let fieldCount = catalog.keys.count
        let zeros = [UInt64](repeating: 0, count: fieldCount)
        var byGroup: [UInt32: [UInt64]] = [:]
        for (group, counts) in departed {
            var row = zeros
            for (field, count) in counts { row[field] &+= count }
            byGroup[group] = row
        }
        var byVCPU = departedVCPUs
        // A thread group with a living thread is running (the reads just looked).
        var running = Set<UInt32>()
        for entry in entries {
            running.insert(entry.key.tgid)
            forEachField(of: entry.key) { byGroup[entry.key.tgid, default: zeros][$0] &+= entry.count }
            if let vcpu = entry.vcpu {
                byVCPU[VCPUCount(tgid: entry.key.tgid, vcpu: vcpu, event: entry.key.event), default: 0] &+= entry.count
            }
        }
        var reading = Reading(families: catalog.families, warnings: warnings)
        warnings.removeAll()

        // Running guests (not the host's, not kernel threads) get latency histograms of their own.
        let timedGuests: Set<UInt32> = request.perGuest && !timers.isEmpty
            ? running.filter { $0 != 0 && kernelThreads[$0] != true } : []
        for timer in timers {
            reading.families[timer.pair.name] = timer.family
            reading.histograms.merge(timer.read(pid: pid, guests: timedGuests)) { first, _ in first }
        }
        let wantedParents = wanted.filter { catalog.keys[$0].parent == nil }
        if request.byGuest {
            for (group, counts) in byGroup where pid == 0 || Int(group) == pid {
                let sum = wantedParents.reduce(UInt64(0)) { $0 &+ counts[$1] }
                let row = group == 0 || kernelThreads[group] == true ? EventID.hostOnly
                    : running.contains(group) ? Int(group) : EventID.departedGuests
                reading.values[.guestTotal(row), default: 0] &+= sum
            }
        } else {
            for field in wanted { reading.values[catalog.keys[field]] = 0 }
            for (group, counts) in byGroup where pid == 0 || Int(group) == pid {
                for field in wanted { reading.values[catalog.keys[field], default: 0] &+= counts[field] }
            }
            // Per-vCPU children (`x`) of the wanted tracepoints: `kvm_userspace_exit(vcpu0)`.
            let parents = Set(wantedParents.map { UInt32($0) })
            for (count, value) in byVCPU where parents.contains(count.event) && (pid == 0 || Int(count.tgid) == pid)
                && kernelThreads[count.tgid] != true {
                let id = Self.vcpuChild(catalog.keys[Int(count.event)].name, count.vcpu)
                if vcpuChildWanted[id.name] == nil {
                    // Bounded: a thread name gives the index, and names are anyone's.
                    if vcpuChildWanted.count >= 4096 { vcpuChildWanted.removeAll() }
                    vcpuChildWanted[id.name] = filter.wants(id.name)
                }
                guard vcpuChildWanted[id.name] == true else { continue }
                reading.values[id, default: 0] &+= value
                if request.perGuest && running.contains(count.tgid) {
                    reading.guestValues.add(value, row: reading.guestValues.row(Int(count.tgid)),
                                            column: reading.guestValues.column(id))
                }
            }
            exitNotice.look(at: reading.values, into: &reading.warnings)
            if request.perGuest {
                var columns: [Int]?
                for (group, counts) in byGroup where group != 0 && kernelThreads[group] != true
                    && running.contains(group) && (pid == 0 || Int(group) == pid) {
                    if columns == nil { columns = wanted.map { reading.guestValues.column(catalog.keys[$0]) } }
                    let row = reading.guestValues.row(Int(group))
                    for (field, column) in zip(wanted, columns!) { reading.guestValues.set(counts[field], row: row, column: column) }
                }
            }
        }
        if request.byGuest || request.perGuest { guestNames.name(&reading) }
        return reading
    }

    /// The per-vCPU child of tracepoint `name`, as the statistics sources name theirs.
    static func vcpuChild(_ name: String, _ vcpu: Int) -> EventID {
        EventID("\(name)(vcpu\(vcpu))", parent: name, vcpu: vcpu)
    }

    /// A full map is said once; the hits it could not hold are counted in the kernel.
    private func noteDrops() {
        guard !warnedDropped else { return }
        var index: UInt32 = 0
        var lost: UInt64 = 0
        let found = (try? withUnsafeBytes(of: &index) { (k) throws(Errno) -> Bool in
            try withUnsafeMutableBytes(of: &lost) { (v) throws(Errno) -> Bool in
                try bpf.lookup(dropped, key: k.baseAddress!, into: v.baseAddress!)
            }
        }) ?? false
        guard found, lost > 0 else { return }
        warnedDropped = true
        warnings.append("bpf: the count map is full (\(Self.maxKeys) thread/event/reason counts): "
            + "counts of new threads, events or reasons are left out (\(lost) hits so far); the counts kept stay exact")
    }

    /// Counting from zero again: what every key holds now becomes its baseline.
    public func reset() throws(SourceError) {
        // Read first: threads found exited are folded into `departed`, which then starts over.
        let entries = try collect()
        departed.removeAll()
        departedVCPUs.removeAll()
        var fresh: [CountingProgram.Key: UInt64] = [:]
        for entry in entries { fresh[entry.key] = (baseline[entry.key] ?? 0) &+ entry.count }
        baseline = fresh
    }

    public func setupNotes() -> [String] { [programs.note] }

    public func close() {
        guard !closed else { return }
        closed = true
        var descriptors: [FileDescriptor] = []
        descriptors += programs.release()
        for timer in timers { descriptors += timer.descriptors }
        timers.removeAll()
        // Detaching from a tracepoint waits for the kernel (an RCU grace period each): the
        // hand-off child pays it, as for the tracepoint source.
        if let child = DescriptorHandoff.release(descriptors) { handoffs.append(child) }
        counts.close()
        dropped.close()
    }

    private func reapHandoffs() {
        handoffs.removeAll { DescriptorHandoff.reap($0) }
    }
}
