import KVMCore

/// Reads KVM's per-VM statistics files under `<debugfs>/kvm/<pid>-<fd>/`, as upstream's
/// DebugfsProvider: counters count from a baseline taken when a VM is first seen (or from
/// zero with `includePast`, and for VMs created later), summed over VMs, or keyed by guest
/// pid.
///
/// Unlike upstream it never holds a VM's file open between samples (an open file pins the VM
/// in the kernel), keeps what VMs that went away counted so totals never drop, shows instant
/// values (`pages_4k`, `blocking`, `max_mmu_*`) as the current level of the VMs in view,
/// tells a re-created VM or kvm directory from the old one by inode, and stops reading fields
/// that no VM lets it read (kernel lockdown), saying so once.
public final class DebugfsSource: StatSource {
    public let name = "debugfs"
    public var supportsByGuest: Bool { Self.description.byGuest }

    public static let description = SourceDescription(
        name: "debugfs", summary: "KVM's per-VM statistics files in debugfs",
        enabledPhrase: "debugfs", byGuest: true, reads: [.pid, .fields, .includePast], defaultRank: 1,
        shorthand: "-d",
        unavailableReason: { unavailableReason($0.paths) },
        fields: { (configuration) throws(SourceError) in try fieldNames(configuration.paths) },
        make: { (configuration) throws(SourceError) in try DebugfsSource(configuration: configuration) })

    /// Upstream's words where upstream has them (scripts grep for them).
    static func unavailableReason(_ paths: SystemPaths) -> String? {
        guard paths.debugfsMounted else {
            return "Please make sure that CONFIG_DEBUG_FS is enabled in your kernel, mounted and\n"
                + "readable by the current user:\n('mount -t debugfs debugfs /sys/kernel/debug')"
        }
        do throws(Errno) {
            if try FileSystem.status(paths.debugfsKVM).isDirectory { return nil }
        } catch {
            if error == .permissionDenied {
                return "kvmstat: cannot access \(paths.debugfsKVM): \(error): kvmstat needs root "
                    + "(debugfs is readable by root only)"
            }
        }
        return "Please make sure that CONFIG_KVM is enabled in your kernel and that the modules are loaded."
    }

    /// The statistics: the kvm directory's own files (host-wide sums) but for upstream's
    /// exempt list, whether or not a VM exists.
    static func fieldNames(_ paths: SystemPaths) throws(SourceError) -> [String] {
        let directory = paths.debugfsKVM
        do {
            return try FileSystem.listDirectory(directory).filter { !$0.isDirectory && isCounter($0.name) }.map(\.name)
        } catch {
            throw SourceError("cannot read \(directory)", errno: error)
        }
    }

    /// Files in the kvm directory upstream leaves out. The histograms (`halt_wait_hist`, ...)
    /// are not among them: KVM's debugfs file of a histogram reads as one number, its first
    /// bucket (the whole histogram is the qmp source's), and upstream lists and counts it so.
    static let exempt: Set<String> = ["halt_poll_fail_ns", "halt_poll_success_ns", "halt_wait_ns"]

    static func isCounter(_ name: String) -> Bool {
        !exempt.contains(name)
    }

    /// Whether a statistic is a level rather than a count, by the kernel's own marks: KVM
    /// creates instant statistics read-only (0444) and cumulative and peak ones 0644, and
    /// names its peaks `max_*`. A level is shown as it is now; a count as what happened.
    static func isLevel(_ name: String, status: FileSystem.Status?) -> Bool {
        name.hasPrefix("max_") || status.map { !$0.isWritable } ?? false
    }

    private let architecture: any Architecture
    private let directory: String
    private let proc: String
    private let includePast: Bool
    private let fields: [String]
    /// Per-guest sums of the last sample, by guest pid and field, when it was asked for them.
    private var perGuest: [Int: [UInt64]] = [:]
    /// What each field is, by name (a child's is its parent's).
    private let families: [String: MetricFamily]
    private var guestNames: GuestNames
    /// Per field (by index into `fields`): its name as a C string for openat(2), the key it
    /// reports under (`child/parent` for a child), and whether it is a level.
    private let cNames: [[CChar]]
    private let keys: [EventID]
    private let levels: [Bool]
    private var wanted: [Int] = []
    private var pid: Int
    /// The VM directories present at the last sample, by name.
    private var vms: [String: DebugfsVM] = [:]
    /// Each VM's readings and counts by field index (under the VM's serial number: a name
    /// and an inode can both come back), and what VMs that went away counted.
    private var book = CounterBook<Int, Int>()
    private var serials = 0
    /// Fields no VM would let us read, and those already reported.
    private var unreadable: [Bool]
    private var reported: Set<String> = []
    /// Fields already reported as going backwards or holding no number.
    private var oddities: Set<String> = []
    private var warnings: [String] = []
    private var started = false
    private var generation = 0
    /// The kvm directory, held for openat(2) (a directory pins no VM), and its inode: when
    /// the module is reloaded the directory is re-created and the held one is empty forever.
    private var kvmDirectory: FileDescriptor?
    private var kvmInode: UInt64 = 0
    private let reader = DebugfsReader()

    public init(configuration: SourceConfiguration) throws(SourceError) {
        architecture = configuration.architecture
        directory = configuration.paths.debugfsKVM
        proc = configuration.paths.proc
        includePast = configuration.includePast
        pid = configuration.pid
        fields = try Self.fieldNames(configuration.paths)
        cNames = fields.map { Array($0.utf8CString) }
        let architecture = configuration.architecture
        keys = fields.map { field in
            EventID(field, parent: architecture.debugfsParent(of: field))
        }
        let directory = self.directory
        levels = fields.map { Self.isLevel($0, status: try? FileSystem.status("\(directory)/\($0)")) }
        unreadable = Array(repeating: false, count: fields.count)
        var families: [String: MetricFamily] = [:]
        for (index, key) in keys.enumerated() where key.parent == nil {
            families[key.name] = Self.family(key.name, isLevel: levels[index])
        }
        self.families = families
        guestNames = GuestNames(proc: configuration.paths.proc)
        wanted = select(configuration.fieldFilter)
        openKVMDirectory()
        noteDeniedHostWide()
        _ = sample()
    }

    deinit { close() }

    public func availableFields() -> [String] { fields }

    private func select(_ filter: FieldFilter?) -> [Int] {
        filter.select(fields, parentOf: architecture.debugfsParent(of:))
    }

    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        wanted = select(filter)
    }

    public func setPid(_ pid: Int) throws(SourceError) {
        self.pid = pid
    }

    /// What a statistic is, by KVM's conventions: levels are gauges, `pages_*` count pages.
    static func family(_ name: String, isLevel: Bool) -> MetricFamily {
        let unit: MetricUnit = name.hasPrefix("pages_") ? .pages : isLevel ? .none : .events
        return MetricFamily(name, kind: isLevel ? .gauge : .counter, unit: unit,
                            help: "KVM statistic \(name)", origin: .kvmStatistic)
    }

    public func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        let values = sample(byGuest: request.byGuest, perGuest: request.perGuest)
        var reading = Reading(families: families, values: values, warnings: warnings)
        warnings.removeAll()
        if request.perGuest && !perGuest.isEmpty {
            let readable = wanted.filter { !unreadable[$0] }
            let columns = readable.map { reading.guestValues.column(keys[$0]) }
            for (guestPid, sums) in perGuest {
                let row = reading.guestValues.row(guestPid)
                for (index, column) in zip(readable, columns) { reading.guestValues.set(sums[index], row: row, column: column) }
            }
        }
        if request.byGuest || request.perGuest {
            reading.guestNames = guestNames.names(of: Array(perGuest.keys) + values.keys.compactMap(\.guest))
        }
        return reading
    }

    /// New baselines from the values read now, as upstream's read(1) takes them. What this
    /// sample did not read (VMs of other guests, fields not wanted) takes its baseline when
    /// it is next read, and nothing counts from zero any more.
    public func reset() throws(SourceError) {
        _ = sample()
        var readNow = Array(repeating: false, count: fields.count)
        for index in wanted { readNow[index] = true }
        let inView = { (name: String) in self.pid == 0 || self.vms[name]?.guestPid == self.pid }
        let inViewSerials = Set(vms.filter { inView($0.key) }.map(\.value.serial))
        book.reset(keepingLastOf: inViewSerials.contains)
        for serial in inViewSerials {
            book.forget(fields.indices.filter { !readNow[$0] }, of: serial)
        }
    }

    /// What the source keeps per VM and per departed guest (tests check it stays bounded).
    var bookkeeping: (vms: Int, departedGuests: Int) { (vms.count, book.departed.guestCount) }

    public func close() {
        kvmDirectory?.close()
        kvmDirectory = nil
    }

    private func openKVMDirectory() {
        close()
        kvmDirectory = try? FileDescriptor.open(directory, [.directory, .pathOnly])
        kvmInode = kvmDirectory.flatMap { try? FileSystem.status(of: $0).inode } ?? 0
    }

    /// The kvm directory as it is now: re-opened when it was re-created (module reload).
    private func refreshKVMDirectory() {
        let current = (try? FileSystem.status(directory))?.inode
        if current != kvmInode || kvmDirectory == nil { openKVMDirectory() }
    }

    /// The VM directories `<pid>-<fd>` and their inodes. When the kvm directory cannot be
    /// listed (out of descriptors or memory), the VMs known so far: a listing that fails is
    /// no news of VMs leaving (those that did read as missing and keep their counts).
    private func listVMs() -> [FileSystem.DirectoryEntry] {
        guard let entries = try? FileSystem.listDirectory(directory) else {
            return FileSystem.exists(directory)
                ? vms.map { FileSystem.DirectoryEntry(name: $0.key, isDirectory: true, inode: $0.value.inode) }
                : []
        }
        return entries.filter { $0.isDirectory && $0.name.contains("-") }
    }

    /// Reads every wanted field of the VMs in view and returns their counts and levels.
    /// The first call (from init) reads every VM, whatever the pid, to take baselines.
    private func sample(byGuest: Bool = false, perGuest guestValuesWanted: Bool = false) -> [EventID: UInt64] {
        let initial = !started
        started = true
        generation &+= 1
        refreshKVMDirectory()
        let present = listVMs()

        var sums = Array(repeating: UInt64(0), count: fields.count)
        var guestSums: [EventID: UInt64] = [:]
        perGuest.removeAll(keepingCapacity: true)
        // Per field: VMs that answered (a value or EPERM), and those that said EPERM.
        var answered = Array(repeating: 0, count: fields.count)
        var denied = Array(repeating: 0, count: fields.count)
        for entry in present {
            var vm: DebugfsVM
            var isNew = false
            if let known = vms[entry.name], known.inode == entry.inode {
                vm = known
            } else {
                // A name that came back with a new inode is a new VM; the old one is gone.
                if let old = vms[entry.name] { book.depart(old.serial) }
                serials += 1
                vm = DebugfsVM(name: entry.name, inode: entry.inode, serial: serials)
                book.admit(vm.serial, guest: vm.guestPid, countsFromZero: !initial || includePast)
                isNew = true
            }
            vm.generation = generation
            defer { vms[entry.name] = vm }
            let counted = pid == 0 || vm.guestPid == pid
            guard initial || counted else { continue }
            let guest = EventID.guestTotal(vm.guestPid)
            if byGuest && counted && guestSums[guest] == nil { guestSums[guest] = 0 }
            // A new VM may lift the lockdown verdict: it is asked for every field.
            for index in wanted where !unreadable[index] || isNew {
                switch read(index, of: vm) {
                case .value(let value):
                    answered[index] += 1
                    unreadable[index] = false
                    if levels[index] {
                        book.keep(value, index, of: vm.serial)
                    } else if case .wentBackwards(let previous) = book.count(value, index, of: vm.serial) {
                        noteOddity(index, "went backwards in VM \(entry.name) (\(previous) to \(value)); "
                            + "counted from the new value, as after a reset")
                    }
                case .denied:
                    denied[index] += 1
                    answered[index] += 1
                    continue
                case .malformed:
                    noteOddity(index, "of VM \(entry.name) holds no number below 2^64; "
                        + "its last value is kept")
                case .missing:
                    break  // vanished mid-sample: its last value stays
                }
                guard counted, let amount = levels[index] ? book.last(index, of: vm.serial)
                    : book.counted(index, of: vm.serial) else { continue }
                if guestValuesWanted {
                    perGuest[vm.guestPid, default: Array(repeating: 0, count: fields.count)][index] &+= amount
                }
                if byGuest && !keys[index].isChild {
                    // A guest's row sums its events; levels are no events.
                    if !levels[index] { guestSums[guest, default: 0] &+= amount }
                } else {
                    sums[index] &+= amount
                }
            }
        }
        departVanished(into: &sums, counting: !byGuest)
        if !byGuest {
            for (index, value) in book.departed.counts(watching: pid) { sums[index] &+= value }
        }
        noteDenied(denied, answered: answered)
        var results = guestSums
        for index in wanted where !unreadable[index] {
            if byGuest && !keys[index].isChild { continue }
            results[keys[index]] = sums[index]
        }
        return results
    }

    private func read(_ index: Int, of vm: DebugfsVM) -> DebugfsReading {
        guard let kvmDirectory else { return .missing }
        return reader.read(cNames[index], prefix: vm.pathPrefix, in: kvmDirectory)
    }

    /// VMs missing from two listings in a row are gone: what they counted moves to the
    /// departed totals, their levels drop. Missing from one, a VM's levels drop but its
    /// state is kept, so a listing that missed it once cannot make it count twice.
    private func departVanished(into sums: inout [UInt64], counting: Bool) {
        var gone = false
        for (name, vm) in vms where vm.generation != generation {
            if vm.generation == generation &- 1 {
                guard counting && (pid == 0 || vm.guestPid == pid) else { continue }
                for index in wanted where !levels[index] && !unreadable[index] {
                    sums[index] &+= book.counted(index, of: vm.serial) ?? 0
                }
                continue
            }
            book.depart(vm.serial)
            vms[name] = nil
            gone = true
        }
        if gone { book.forgetEndedGuests(watching: pid, proc: proc) }
    }

    /// Says once per field that its file did something a counter should not.
    private func noteOddity(_ index: Int, _ what: String) {
        guard oddities.insert(fields[index]).inserted else { return }
        warnings.append("debugfs field \(fields[index]) \(what)")
    }

    /// Lockdown seen before any VM exists: the kvm directory's own files are refused as the
    /// VMs' are, so those fields are no columns from the first sample on.
    private func noteDeniedHostWide() {
        guard let kvmDirectory else { return }
        var denied = Array(repeating: 0, count: fields.count)
        for index in fields.indices {
            if case .denied = reader.read(cNames[index], prefix: [], in: kvmDirectory) { denied[index] = 1 }
        }
        noteDenied(denied, answered: denied)
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
            + "; kernel lockdown is the likely cause; -t gives tracepoint counts, "
            + "--source qmp or --source libvirt the same statistics from QEMU or libvirt")
    }
}
