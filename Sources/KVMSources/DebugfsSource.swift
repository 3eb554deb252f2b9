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
    private var fields: [String] = []
    private var wanted: [String] = []
    private var pid: Int
    /// Per VM directory: the baseline and the last value read of each field.
    private var vms: [String: VMState] = [:]
    /// Counts of VMs that went away, by key, so totals never go backwards.
    private var departed: [String: Int] = [:]
    /// Fields no VM would let us read, and those already reported.
    private var unreadable: Set<String> = []
    private var reported: Set<String> = []
    private var warnings: [String] = []
    private var buffer = [UInt8](repeating: 0, count: 64)
    /// Every VM directory ever listed, and whether the first sample has been taken.
    private var seen: Set<String> = []
    private var started = false

    struct VMState {
        var baseline: [String: Int] = [:]
        var last: [String: Int] = [:]
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
        wanted = select(configuration.fieldFilter)
        _ = sample()
    }

    public func availableFields() -> [String] { fields }

    private func select(_ filter: FieldFilter?) -> [String] {
        var chosen = fields.filter { filter.wants($0) }
        var present = Set(chosen)
        for field in chosen {
            if let parent = architecture.debugfsParent(of: field), !present.contains(parent) {
                chosen.append(parent)
                present.insert(parent)
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
    public func reset() throws(SourceError) {
        for (path, state) in vms { vms[path]?.baseline = state.last }
        departed.removeAll()
    }

    public func takeWarnings() -> [String] {
        defer { warnings.removeAll() }
        return warnings
    }

    public func close() {}

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
        let present = listVMs()
        let presentSet = Set(present)
        // VMs that went away keep what they counted.
        for (path, state) in vms where !presentSet.contains(path) {
            for (field, value) in state.last {
                departed[key(for: field, path: path, byGuest: false), default: 0]
                    += value - (state.baseline[field] ?? 0)
            }
            vms[path] = nil
        }
        // A VM we have never seen may lift the lockdown verdict: look again.
        if present.contains(where: { !seen.contains($0) }) { unreadable.removeAll() }

        let prefix = "\(pid)-"
        var results: [String: Int] = byGuest ? [:] : departed
        var denied: [String: Int] = [:]
        var vmsRead = 0
        for path in present where initial || pid == 0 || path.hasPrefix(prefix) {
            // Counters of a VM created after kvmstat started all happened while it watched.
            let bornLater = !initial && !seen.contains(path)
            seen.insert(path)
            var state = vms[path] ?? VMState()
            var answered = false
            for field in wanted where !unreadable.contains(field) {
                var value: Int
                switch readField(path, field) {
                case .value(let v):
                    value = v
                    answered = true
                case .denied:
                    denied[field, default: 0] += 1
                    answered = true
                    continue
                case .missing:
                    // Vanished mid-sample: keep the last value we had.
                    guard let last = state.last[field] else { continue }
                    value = last
                }
                if state.baseline[field] == nil {
                    state.baseline[field] = bornLater || includePast ? 0 : value
                }
                state.last[field] = value
                if initial && pid != 0 && !path.hasPrefix(prefix) { continue }
                results[key(for: field, path: path, byGuest: byGuest), default: 0]
                    += value - state.baseline[field]!
            }
            if answered { vmsRead += 1 }
            if !state.last.isEmpty || vms[path] != nil { vms[path] = state }
        }
        if vmsRead > 0 { noteDenied(denied, vmCount: vmsRead) }
        return results
    }

    /// Fields denied in every VM are dropped from the reading and reported once.
    private func noteDenied(_ denied: [String: Int], vmCount: Int) {
        let everywhere = denied.filter { $0.value == vmCount }.map(\.key)
        guard !everywhere.isEmpty else { return }
        unreadable.formUnion(everywhere)
        let fresh = everywhere.filter { !reported.contains($0) }.sorted()
        guard !fresh.isEmpty else { return }
        reported.formUnion(fresh)
        warnings.append("debugfs fields not readable in any VM (Operation not permitted): "
            + fresh.joined(separator: ", ")
            + "; kernel lockdown is the likely cause; -t gives tracepoint counts")
    }

    /// Upstream's key form: child fields are `child parent`, by-guest keys the guest's pid.
    private func key(for field: String, path: String, byGuest: Bool) -> String {
        if let parent = architecture.debugfsParent(of: field) { return field + " " + parent }
        if byGuest { return String(path.prefix { $0 != "-" }) }
        return field
    }

    enum FieldRead {
        case value(Int)
        case denied
        case missing
    }

    /// Opens, reads and closes one statistics file.
    private func readField(_ path: String, _ field: String) -> FieldRead {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open("\(directory)/\(path)/\(field)") } catch {
            return error == .notPermitted || error == .permissionDenied ? .denied : .missing
        }
        defer { fd.close() }
        var result: FieldRead = .missing
        buffer.withUnsafeMutableBytes { raw in
            guard let n = try? fd.read(into: raw), n > 0 else { return }
            var value = 0
            var sawDigit = false
            for byte in raw.prefix(n) {
                guard byte >= 0x30 && byte <= 0x39 else { break }
                value = value &* 10 &+ Int(byte - 0x30)
                sawDigit = true
            }
            if sawDigit { result = .value(value) }
        }
        return result
    }
}
