import KVMCore

/// Reads KVM's per-VM statistics files under `<debugfs>/kvm/<pid>-<fd>/`, as upstream's
/// DebugfsProvider: counts are relative to a baseline taken when a VM is first seen (or zero
/// with `includePast`), summed over VMs, or keyed by guest pid.
///
/// Unlike upstream it never holds a VM's file open between samples (an open file pins the VM
/// in the kernel), keeps the last counts of VMs that went away so totals never drop, and
/// stops reading fields that no VM lets it read (kernel lockdown), saying so once.
public final class DebugfsSource: StatSource {
    public let name = "debugfs"
    public var supportsByGuest: Bool { true }

    /// Files in the kvm directory that are not counters: upstream's list, and the
    /// histograms (`*_hist`, many numbers per file), which upstream would fail to parse.
    static let exempt: Set<String> = ["halt_poll_fail_ns", "halt_poll_success_ns", "halt_wait_ns"]

    static func isCounter(_ name: String) -> Bool {
        !exempt.contains(name) && !name.hasSuffix("_hist")
    }

    private let architecture: any Architecture
    private let directory: String
    private let includePast: Bool
    private let fields: [String]
    /// Per field (by index into `fields`): its name as a C string for openat(2), and the key
    /// it reports under (`child parent` for a child).
    private let cNames: [[CChar]]
    private let keys: [String]
    private var wanted: [Int] = []
    private var pid: Int
    /// Per VM directory: the baseline and the last value read of each field (by index).
    private var vms: [String: VMState] = [:]
    /// Counts of VMs that went away, per guest pid and field, so totals never go backwards
    /// (only the watched pid's count when there is one).
    private var departed: [String: [Int]] = [:]
    /// While resetting, every baseline is the value read now.
    private var resetting = false
    /// Fields no VM would let us read, and those already reported.
    private var unreadable: [Bool]
    private var reported: Set<String> = []
    private var warnings: [String] = []
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    /// Every VM directory ever listed, and whether the first sample has been taken.
    private var seen: Set<String> = []
    private var started = false
    private var generation = 0
    /// The kvm directory, held for openat(2) (a directory pins no VM).
    private var kvmDirectory: FileDescriptor?
    private let pathBuffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 4096)

    static let none = Int.min

    struct VMState {
        var baseline: [Int]
        var last: [Int]
        /// `<name>/` as bytes, the prefix of its files' paths relative to the kvm directory.
        let pathPrefix: [UInt8]
        /// The sample that last listed it; older means the VM went away.
        var generation = 0

        init(name: String, fieldCount: Int) {
            baseline = Array(repeating: DebugfsSource.none, count: fieldCount)
            last = Array(repeating: DebugfsSource.none, count: fieldCount)
            pathPrefix = Array(name.utf8) + [UInt8(ascii: "/")]
        }
    }

    public init(configuration: SourceConfiguration) throws(SourceError) {
        architecture = configuration.architecture
        directory = configuration.paths.debugfsKVM
        includePast = configuration.includePast
        pid = configuration.pid
        let entries: [FileSystem.DirectoryEntry]
        do { entries = try FileSystem.listDirectory(directory) } catch {
            throw SourceError("cannot read \(directory): \(error)")
        }
        fields = entries.filter { !$0.isDirectory && Self.isCounter($0.name) }.map(\.name)
        cNames = fields.map { Array($0.utf8CString) }
        let architecture = configuration.architecture
        keys = fields.map { field in
            architecture.debugfsParent(of: field).map { field + " " + $0 } ?? field
        }
        unreadable = Array(repeating: false, count: fields.count)
        wanted = select(configuration.fieldFilter)
        kvmDirectory = try? FileDescriptor.open(directory, [.directory, .pathOnly])
        _ = sample()
    }

    deinit {
        close()
        scratch.deallocate()
        pathBuffer.deallocate()
    }

    public func availableFields() -> [String] { fields }

    /// Indices of the filter's fields plus the parents of wanted children.
    private func select(_ filter: FieldFilter?) -> [Int] {
        var chosen = fields.indices.filter { filter.wants(fields[$0]) }
        var present = Set(chosen)
        for index in chosen {
            if let parent = architecture.debugfsParent(of: fields[index]),
               let parentIndex = fields.firstIndex(of: parent), !present.contains(parentIndex) {
                chosen.append(parentIndex)
                present.insert(parentIndex)
            }
        }
        return chosen
    }

    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        wanted = select(filter)
    }

    public func setPid(_ pid: Int) throws(SourceError) {
        self.pid = pid
    }

    public func read(byGuest: Bool) throws(SourceError) -> [String: Int] {
        sample(byGuest: byGuest)
    }

    /// New baselines: everything counts from now.
    /// New baselines from the values read now, as upstream's read(1) takes them.
    public func reset() throws(SourceError) {
        for path in vms.keys {
            vms[path]?.baseline = Array(repeating: Self.none, count: fields.count)
        }
        departed.removeAll()
        resetting = true
        defer { resetting = false }
        _ = sample()
    }

    public func takeWarnings() -> [String] {
        defer { warnings.removeAll() }
        return warnings
    }

    public func close() {
        kvmDirectory?.close()
        kvmDirectory = nil
    }

    /// The VM directories `<pid>-<fd>`.
    private func listVMs() -> [String] {
        guard let entries = try? FileSystem.listDirectory(directory) else { return [] }
        return entries.compactMap { $0.isDirectory && $0.name.contains("-") ? $0.name : nil }
    }

    /// Reads every wanted field of the VMs in view and returns counts since the baselines.
    /// The first call (from init) reads every VM, whatever the pid, to take baselines.
    private func sample(byGuest: Bool = false) -> [String: Int] {
        let initial = !started
        started = true
        generation &+= 1
        let present = listVMs()

        let prefix = "\(pid)-"
        var sums = Array(repeating: 0, count: fields.count)
        var contributed = Array(repeating: false, count: fields.count)
        var guestSums: [String: Int] = [:]
        // Per field: VMs that answered (a value or EPERM), and those that said EPERM.
        var answered = Array(repeating: 0, count: fields.count)
        var denied = Array(repeating: 0, count: fields.count)
        var newVMs = false
        for path in present {
            var state: VMState
            var bornLater = false
            let tracked = vms[path] != nil
            if let known = vms[path] {
                state = known
            } else {
                state = VMState(name: path, fieldCount: fields.count)
                // Counters of a VM created after kvmstat started all happened while it watched.
                bornLater = !initial && !seen.contains(path)
                if !seen.contains(path) {
                    seen.insert(path)
                    newVMs = true
                }
            }
            state.generation = generation
            defer { vms[path] = state }
            let counted = pid == 0 || path.hasPrefix(prefix)
            guard initial || counted else { continue }
            // A VM we have never seen may lift the lockdown verdict: look again.
            if newVMs {
                for index in unreadable.indices { unreadable[index] = false }
                newVMs = false
            }
            let guest = byGuest ? String(path.prefix { $0 != "-" }) : ""
            for index in wanted where !unreadable[index] {
                var value: Int
                switch readField(index, prefix: state.pathPrefix) {
                case .value(let v):
                    value = v
                    answered[index] += 1
                case .denied:
                    denied[index] += 1
                    answered[index] += 1
                    continue
                case .missing:
                    // Vanished mid-sample: keep the last value we had.
                    guard state.last[index] != Self.none else { continue }
                    value = state.last[index]
                }
                if state.baseline[index] == Self.none {
                    // -i: a VM's whole past, for VMs of the first sample (also for fields
                    // wanted later), never again for one that seemed to go and came back.
                    let fromZero = bornLater || (includePast && (initial || tracked))
                    state.baseline[index] = fromZero && !resetting ? 0 : value
                }
                state.last[index] = value
                guard counted else { continue }
                let increment = value - state.baseline[index]
                if byGuest && keys[index] == fields[index] {
                    guestSums[guest, default: 0] += increment
                } else {
                    sums[index] += increment
                    contributed[index] = true
                }
            }
        }
        // VMs that went away keep what they counted.
        for (path, state) in vms where state.generation != generation {
            let guestPid = String(path.prefix { $0 != "-" })
            var counts = departed[guestPid] ?? Array(repeating: Self.none, count: fields.count)
            for index in fields.indices where state.last[index] != Self.none {
                counts[index] = (counts[index] == Self.none ? 0 : counts[index])
                    + state.last[index] - state.baseline[index]
            }
            departed[guestPid] = counts
            vms[path] = nil
        }
        if !byGuest {
            for (guestPid, counts) in departed where pid == 0 || guestPid == String(pid) {
                for index in fields.indices where counts[index] != Self.none {
                    sums[index] += counts[index]
                    contributed[index] = true
                }
            }
        }
        noteDenied(denied, answered: answered)
        var results = guestSums
        for index in wanted where contributed[index] { results[keys[index]] = sums[index] }
        return results
    }

    /// Fields denied in every VM that answered are dropped from the reading and reported
    /// once (a VM that vanished mid-sample answered nothing and does not count).
    private func noteDenied(_ denied: [Int], answered: [Int]) {
        let everywhere = denied.indices.filter { denied[$0] > 0 && denied[$0] == answered[$0] }
        guard !everywhere.isEmpty else { return }
        for index in everywhere { unreadable[index] = true }
        let fresh = everywhere.map { fields[$0] }.filter { !reported.contains($0) }.sorted()
        guard !fresh.isEmpty else { return }
        reported.formUnion(fresh)
        warnings.append("debugfs fields not readable in any VM (Operation not permitted): "
            + fresh.joined(separator: ", ")
            + "; kernel lockdown is the likely cause; -t gives tracepoint counts")
    }

    enum FieldRead {
        case value(Int)
        case denied
        case missing
    }

    /// Opens, reads and closes one statistics file of a VM, by its path relative to the kvm
    /// directory (`<vm>/<field>`), built in a reused buffer.
    private func readField(_ index: Int, prefix: [UInt8]) -> FieldRead {
        guard let kvmDirectory else { return .missing }
        let name = cNames[index]
        guard prefix.count + name.count < pathBuffer.count else { return .missing }
        prefix.withUnsafeBufferPointer { bytes in
            _ = UnsafeMutableBufferPointer(rebasing: pathBuffer[0..<bytes.count]).initialize(from: bytes)
        }
        name.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: UInt8.self) { bytes in
                _ = UnsafeMutableBufferPointer(rebasing: pathBuffer[prefix.count..<(prefix.count + bytes.count)])
                    .initialize(from: bytes)
            }
        }
        let fd: FileDescriptor
        do {
            fd = try pathBuffer.withMemoryRebound(to: CChar.self) { (path) throws(Errno) in
                try FileDescriptor.open(path.baseAddress!, relativeTo: kvmDirectory)
            }
        } catch {
            return error == .notPermitted || error == .permissionDenied ? .denied : .missing
        }
        defer { fd.close() }
        guard let value = try? fd.readLeadingInteger(scratch: scratch) else { return .missing }
        return .value(value)
    }
}
