import KVMCore

/// What the tracepoint source counts, known before anything is opened: whether this host has
/// what it needs, every field (the kvm tracepoints and their exit-reason children), the key and
/// family each reports under, and how to open each (its tracepoint id and filter).
final class TracepointCatalog {
    let architecture: any Architecture
    let fields: [String]
    /// Per field: the key it reports under (`kvm_exit(HLT)` under `kvm_exit`).
    let keys: [EventID]
    /// Every tracepoint is a family of its own; its children (exit reasons) belong to it.
    let families: [String: MetricFamily]
    private let eventsDirectory: String
    /// Tracepoints that get one child per named value: tracepoint → (field, values), and the
    /// children's values by tracepoint and reason name.
    private let childFilters: [String: (field: String, reasons: [ExitReason])]
    private let childValues: [String: [String: Int]]
    private var tracepointIDs: [String: UInt64] = [:]
    private var plans: [Int: EventPlan] = [:]

    init(configuration: SourceConfiguration) throws(SourceError) {
        architecture = configuration.architecture
        eventsDirectory = configuration.paths.kvmEvents
        let filters = Self.childFilters(architecture)
        childFilters = filters
        childValues = filters.mapValues { spec in
            Dictionary(spec.reasons.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        }
        fields = try Self.fieldNames(configuration)
        let architecture = architecture
        keys = fields.map { EventID($0, parent: architecture.tracepointParent(of: $0)) }
        families = Dictionary(keys.filter { $0.parent == nil }.map {
            ($0.name, MetricFamily($0.name, kind: .counter, help: "KVM tracepoint \($0.name)", origin: .tracepoint))
        }, uniquingKeysWith: { first, _ in first })
    }

    /// The fields `filter` wants (and the parents of wanted children), by index.
    func select(_ filter: FieldFilter?) -> [Int] {
        filter.select(fields, parentOf: architecture.tracepointParent(of:))
    }

    /// How to open one field's counter: its tracepoint and, for a child, its filter.
    struct EventPlan: Sendable {
        let field: Int
        let tracepointID: UInt64
        let filter: String?
    }

    /// The plan of field `field`; nil when tracefs lacks its tracepoint or the reason.
    func plan(for field: Int) -> EventPlan? {
        if let known = plans[field] { return known }
        let name = fields[field]
        let tracepoint = keys[field].parent ?? name
        guard let id = tracepointID(tracepoint) else { return nil }
        var filter: String?
        if tracepoint != name, let (reasonField, _) = childFilters[tracepoint] {
            guard let reasonName = keys[field].childLabel, let value = childValues[tracepoint]?[reasonName] else {
                return nil
            }
            filter = "\(reasonField)==\(value)"
        }
        let plan = EventPlan(field: field, tracepointID: id, filter: filter)
        plans[field] = plan
        return plan
    }

    /// For the bpf source: the record field whose value picks a tracepoint's children
    /// (`reason` of `kvm_userspace_exit`), nil for one without children.
    func reasonField(of tracepoint: String) -> String? { childFilters[tracepoint]?.field }

    /// The value a child field stands for (`kvm_userspace_exit(IO)` → 2), nil for a parent.
    func reasonValue(of field: Int) -> Int? {
        guard let parent = keys[field].parent, let label = keys[field].childLabel else { return nil }
        return childValues[parent]?[label]
    }

    /// A tracepoint's directory in tracefs.
    func directory(of tracepoint: String) -> String { "\(eventsDirectory)/\(tracepoint)" }

    func tracepointID(_ tracepoint: String) -> UInt64? {
        if let id = tracepointIDs[tracepoint] { return id }
        guard let text = try? FileSystem.readText("\(eventsDirectory)/\(tracepoint)/id"),
              let id = UInt64(text.trimmingBlanks())
        else { return nil }
        tracepointIDs[tracepoint] = id
        return id
    }

    /// Upstream's words where upstream has them: tracing missing (CONFIG_TRACING), KVM's
    /// tracepoints missing (the module is not loaded), no permission (not root), or an
    /// architecture of another machine (its perf numbers are not this kernel's).
    static func unavailableReason(_ configuration: SourceConfiguration) -> String? {
        let paths = configuration.paths
        let architecture = configuration.architecture
        guard configuration.architectureIsHosts else {
            return "kvmstat: tracepoints cannot be counted for --arch \(architecture.name) on this host: "
                + "its perf_event_open is syscall \(architecture.perfEventOpenSyscall) and its ioctls "
                + "are \(architecture.name)'s, not this kernel's; use -d (debugfs) or --arch-info"
        }
        if FileSystem.isDirectory(paths.kvmEvents) { return nil }
        do throws(Errno) {
            if try FileSystem.status(paths.tracing + "/events").isDirectory {
                return "Please make sure that CONFIG_KVM is enabled in your kernel and that the modules are loaded."
            }
        } catch {
            if error == .permissionDenied {
                return "kvmstat: cannot access \(paths.tracing): \(error): kvmstat needs root "
                    + "(tracefs is readable by root only)"
            }
        }
        // Upstream's words, then the likeliest cause on today's hosts: tracefs not mounted.
        return "Please enable CONFIG_TRACING in your kernel when using the option -t (default).\n"
            + "If it is enabled, make \(paths.tracing) readable by the current user."
            + (FileSystem.isDirectory(paths.tracing + "/events") ? ""
                : "\n(tracefs is not mounted at \(paths.tracing): 'mount -t tracefs tracefs /sys/kernel/tracing')")
    }

    /// Tracepoints that get one child per named value: tracepoint → (field, values).
    static func childFilters(_ architecture: any Architecture) -> [String: (field: String, reasons: [ExitReason])] {
        var filters: [String: (field: String, reasons: [ExitReason])] = [
            "kvm_userspace_exit": ("reason", UserspaceExitReasons.table),
        ]
        if let field = architecture.exitReasonField, architecture.hasExitReasonChildren {
            filters["kvm_exit"] = (field, architecture.exitReasons)
        }
        return filters
    }

    /// Every field: the kvm tracepoints and their children, read from tracefs alone.
    static func fieldNames(_ configuration: SourceConfiguration) throws(SourceError) -> [String] {
        let directory = configuration.paths.kvmEvents
        let entries: [FileSystem.DirectoryEntry]
        do { entries = try FileSystem.listDirectory(directory) } catch {
            throw SourceError("cannot list tracepoints in \(directory)", errno: error)
        }
        let filters = childFilters(configuration.architecture)
        var all = entries.filter(\.isDirectory).map(\.name)
        for tracepoint in all {
            guard let (_, reasons) = filters[tracepoint] else { continue }
            all += reasons.map { "\(tracepoint)(\($0.name))" }
        }
        // A crafted tracefs may hold a directory named like a child (`kvm_exit(HLT)`): one
        // field of each name.
        var unique = Set<String>()
        return all.filter { unique.insert($0).inserted }
    }

    static func onlineCPUs(_ paths: SystemPaths) throws(SourceError) -> [Int] {
        let path = paths.sys + "/devices/system/cpu/online"
        guard let text = try? FileSystem.readText(path), let cpus = Self.parseCPUList(text) else {
            throw SourceError("cannot read the online CPUs from \(path)")
        }
        return cpus
    }

    /// `0-3,8,10-11` → [0, 1, 2, 3, 8, 10, 11].
    static func parseCPUList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for member in text.trimmingBlanks().split(separator: ",") {
            let bounds = member.split(separator: "-", omittingEmptySubsequences: false)
            guard let first = Int(bounds[0]) else { return nil }
            if bounds.count == 1 {
                cpus.append(first)
            } else if bounds.count == 2, let last = Int(bounds[1]), last >= first {
                cpus.append(contentsOf: first...last)
            } else {
                return nil
            }
        }
        return cpus.isEmpty ? nil : cpus
    }
}
