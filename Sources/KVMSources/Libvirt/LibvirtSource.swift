#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// KVM's binary statistics of every running domain of one libvirt (`--connect URI`, default
/// `qemu:///system`, read-only): one `virConnectGetAllDomainStats` call per sample with the
/// VM and vCPU groups (libvirt ≥ 8.9), the way to KVM's counters for libvirt's guests, whose
/// QEMU monitor libvirt holds. Names as debugfs's (`exits`, `pages_4k`); per-vCPU values as
/// children (`exits(vcpu0)`); guests for the by-guest view, keyed by their QEMU's pid.
///
/// libvirt names a statistic's kind by its suffix: `.sum` is cumulative (a counter), `.cur`
/// and `.max` are levels. Histograms libvirt does not pass on.
public final class LibvirtSource: StatSource {
    public let name = "libvirt"
    public var supportsByGuest: Bool { Self.description.byGuest }

    public static let defaultURI = "qemu:///system"

    public static let description = SourceDescription(
        name: "libvirt", summary: "KVM's statistics of libvirt's domains (--connect URI), per guest and vCPU",
        enabledPhrase: "libvirt", byGuest: true, reads: [.pid, .fields, .includePast, .connect], defaultRank: nil,
        unavailableReason: { _ in
            do throws(SharedLibrary.Failure) {
                _ = try LibvirtAPI.load()
                return nil
            } catch {
                return "kvmstat: --source libvirt needs libvirt's client library (\(error)); "
                    + LibvirtAPI.missingAdvice
            }
        },
        fields: { (configuration) throws(SourceError) in try fieldNames(configuration) },
        make: { (configuration) throws(SourceError) in try LibvirtSource(configuration: configuration) })

    /// How long libvirt may take to answer a sample, and the first one (connecting).
    static let timeout = 0.5
    static let firstTimeout = 5.0

    private let client: LibvirtClient
    private let proc: String
    private let includePast: Bool
    private let local: Bool
    private var filter: FieldFilter?
    private var pid: Int
    private var book = GuestStatBook()
    private var started = false
    /// The guest key of each domain seen, by name and id (a domain started again gets a new
    /// id and a new QEMU: a new guest).
    private var keys: [String: Int] = [:]
    private var warnings: [String] = []
    private var emptyNotice = EmptyNotice()
    /// What each statistic is.
    private var families: [String: MetricFamily] = [:]
    /// Why libvirt did not answer, while it does not (said once per episode).
    private var trouble: String?
    /// Each domain's last field names and what they were found to be, by guest key.
    private var layouts: [Int: Layout] = [:]

    /// A domain's field names as the last call gave them, and per value its statistic's number
    /// and vCPU (-1: the VM's; statistic -1: not one kvmstat takes). libvirt lists a domain's
    /// statistics in the same order every call, so a call whose names are byte for byte the
    /// last one's is taken by number, no name parsed or looked up.
    private struct Layout {
        var fieldBytes: [UInt8]
        var fieldEnds: [Int32]
        var numbered: [(statistic: Int32, vcpu: Int32)]

        /// Whether `domain`'s field names are these, byte for byte.
        func names(of domain: LibvirtAPI.DomainStats) -> Bool {
            Self.same(fieldEnds, domain.fieldEnds) && Self.same(fieldBytes, domain.fieldBytes)
        }

        /// Two arrays' bytes compared in one `memcmp` (a domain's names are ≈ 10 KB).
        private static func same<Element: BitwiseCopyable>(_ a: [Element], _ b: [Element]) -> Bool {
            a.count == b.count && a.withUnsafeBytes { a in
                b.withUnsafeBytes { b in a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
            }
        }
    }

    init(configuration: SourceConfiguration) throws(SourceError) {
        let api: LibvirtAPI
        do throws(SharedLibrary.Failure) { api = try LibvirtAPI.load() } catch {
            throw SourceError("libvirt: \(error); \(LibvirtAPI.missingAdvice)")
        }
        let uri = configuration.connectURI ?? Self.defaultURI
        client = LibvirtClient(api: api, uri: uri)
        proc = configuration.paths.proc
        includePast = configuration.includePast
        filter = configuration.fieldFilter
        pid = configuration.pid
        local = Self.isLocal(uri)
        switch client.fetch(timeout: Self.firstTimeout) {
        case .stats(let domains): take(domains)
        case .failed(let message, _):
            client.close()
            throw SourceError("libvirt: cannot read \(uri): \(message)")
        case .timedOut:
            throw SourceError("libvirt: \(uri) did not answer within \(Int(Self.firstTimeout)) s")
        }
    }

    /// Statistics of the first running domain (none without one).
    static func fieldNames(_ configuration: SourceConfiguration) throws(SourceError) -> [String] {
        guard let api = try? LibvirtAPI.load() else { return [] }
        let client = LibvirtClient(api: api, uri: configuration.connectURI ?? defaultURI)
        defer { client.close() }
        guard case .stats(let domains) = client.fetch(timeout: firstTimeout), let first = domains.first
        else { return [] }
        return Set(first.values.indices.compactMap { parse(first.field($0)).map(\.name) }).sorted()
    }

    /// A URI without a host names this machine's libvirt, whose guests' processes are ours
    /// to find (`qemu:///system`, not `qemu+ssh://host/system`).
    static func isLocal(_ uri: String) -> Bool {
        let parts = uri.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count < 2 || parts[1].isEmpty || parts[1].first == "/"
    }

    /// `vcpu.N.NAME.sum|cur|max` and `vm.NAME.sum|cur|max`: the statistic, its vCPU and kind;
    /// nil for libvirt's own values (`vcpu.N.time`, `vcpu.current`).
    static func parse(_ field: String) -> (name: String, vcpu: Int?, kind: StatKind)? {
        let parts = field.split(separator: ".", omittingEmptySubsequences: false)
        let kind: StatKind
        switch parts.last {
        case "sum": kind = .counter
        case "cur", "max": kind = .level
        default: return nil
        }
        if parts.count == 3, parts[0] == "vm", !parts[1].isEmpty { return (String(parts[1]), nil, kind) }
        if parts.count == 4, parts[0] == "vcpu", let vcpu = Int(parts[1]), vcpu >= 0, !parts[2].isEmpty {
            return (String(parts[2]), vcpu, kind)
        }
        return nil
    }

    public func availableFields() -> [String] { book.fields }

    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        self.filter = filter
        selectFields()
    }

    public func setPid(_ pid: Int) throws(SourceError) { self.pid = pid }

    public func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        poll()
        var reading = book.reading(request, pid: pid, families: families, origin: name)
        reading.warnings = warnings
        warnings.removeAll()
        return reading
    }

    /// What a statistic is: its kind from libvirt's suffix; its unit from KVM's naming
    /// (`*_ns` are nanoseconds), as libvirt passes on no units.
    static func family(_ name: String, kind: StatKind) -> MetricFamily {
        let unit: MetricUnit = name.hasSuffix("_ns") ? .nanoseconds : kind == .counter ? .events : .none
        return MetricFamily(name, kind: kind == .counter ? .counter : .gauge, unit: unit,
                            help: "KVM statistic \(name)", origin: .kvmStatistic)
    }

    public func reset() throws(SourceError) {
        let answered = poll()
        book.reset(readNow: answered ? Set(book.pids) : [])
    }

    public func close() { client.close() }

    /// One call; false when libvirt gave no answer (every guest keeps its counts).
    @discardableResult
    private func poll() -> Bool {
        switch client.fetch(timeout: Self.timeout) {
        case .stats(let domains):
            if trouble != nil {
                warnings.append("libvirt: \(client.uri) answers again; counting resumed")
                trouble = nil
            }
            take(domains)
            if let notice = emptyNotice.check(empty: domains.isEmpty,
                                              "libvirt: \(client.uri) has no running domain: nothing to show until one starts") {
                warnings.append(notice)
            }
            return true
        case .failed(let message, let connected):
            complain(connected ? "libvirt: reading \(client.uri) failed: \(message)"
                : "libvirt: lost the connection to \(client.uri) (\(message))")
        case .timedOut:
            complain("libvirt: \(client.uri) did not answer within \(Self.timeout) s")
        }
        return false
    }

    private func complain(_ message: String) {
        guard trouble == nil else { return }
        trouble = message
        warnings.append(message + "; retrying every sample, the guests' counts kept")
    }

    private func take(_ domains: [LibvirtAPI.DomainStats]) {
        let initial = !started
        started = true
        var present = Set<Int>()
        var seen: [String: Int] = [:]
        var readings: [NumberedReading] = []
        for domain in domains {
            let identity = "\(domain.id) \(domain.name)"
            let key = keys[identity] ?? guestKey(domain)
            seen[identity] = key
            present.insert(key)
            // A domain running before kvmstat started counts from its first reading (or from
            // zero with -i); one started later counts everything.
            book.admit(key, name: domain.name, countsFromZero: !initial || includePast)
            // The same names as last time are known by position; others are learnt.
            if !(layouts[key]?.names(of: domain) ?? false) {
                layouts[key] = learn(domain, of: key)
            }
            let numbered = layouts[key]!.numbered
            readings.removeAll(keepingCapacity: true)
            for (index, value) in domain.values.enumerated() where numbered[index].statistic >= 0 {
                readings.append(NumberedReading(statistic: numbered[index].statistic, vcpu: numbered[index].vcpu, value: value))
            }
            for name in book.record(numbered: readings, of: key) {
                warnings.append("libvirt: \(name) of domain \(domain.name) went backwards; counted from the new value")
            }
        }
        keys = seen
        layouts = layouts.filter { present.contains($0.key) }
        book.keepOnly(present, watching: pid, proc: proc)
        selectFields()
    }

    /// Parses a domain's field names (its first call, or names that changed): their
    /// statistics' kinds and descriptions, and their numbers.
    private func learn(_ domain: LibvirtAPI.DomainStats, of key: Int) -> Layout {
        var kinds = book.kinds(of: key)
        let parsed = domain.values.indices.map { Self.parse(domain.field($0)) }
        for stat in parsed.compactMap({ $0 }) {
            kinds[stat.name] = stat.kind
            if families[stat.name] == nil { families[stat.name] = Self.family(stat.name, kind: stat.kind) }
        }
        book.setKinds(kinds, of: key)
        // A vCPU index out of KVM's range is no field (the numbering refuses it).
        let numbered = parsed.map { stat -> (statistic: Int32, vcpu: Int32) in
            guard let stat, let statistic = book.statisticNumber(stat.name) else { return (-1, -1) }
            return (statistic, stat.vcpu.map { (0..<StatisticNumbering.maxVCPUs).contains($0) ? Int32($0) : Int32.max } ?? -1)
        }
        return Layout(fieldBytes: domain.fieldBytes, fieldEnds: domain.fieldEnds, numbered: numbered)
    }

    /// The domain's QEMU pid where it runs here (libvirt's pid file, checked against the
    /// process's `-name`); else a key of its own far below zero, which names no process (and
    /// no special row).
    private func guestKey(_ domain: LibvirtAPI.DomainStats) -> Int {
        if local {
            for directory in Self.pidFileDirectories {
                guard let text = try? FileSystem.readText("\(directory)/\(domain.name).pid"),
                      let pid = Int(text.trimmingBlanks()), pid > 0,
                      Guests(proc: proc).name(of: pid) == domain.name
                else { continue }
                return pid
            }
        }
        return -1_000_000 - domain.id
    }

    /// Where libvirt's QEMU driver keeps its pid files: the system daemon's and the session's.
    private static var pidFileDirectories: [String] {
        ["/run/libvirt/qemu"]
            + (getenv("XDG_RUNTIME_DIR").map { ["\(String(cString: $0))/libvirt/qemu/run"] } ?? [])
    }

    private func selectFields() { book.select(filter) }
}
