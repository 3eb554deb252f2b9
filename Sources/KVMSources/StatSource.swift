import KVMCore

/// A provider of KVM event counts (upstream's "provider"). Counts are cumulative since the
/// source's baseline; `Stats` turns them into values and deltas.
///
/// Counts are keyed by `EventID`: an event, a child under its parent, and with `byGuest` a
/// guest's events taken together.
public protocol StatSource: AnyObject {
    /// The name users pick it by (`--source tracepoint`).
    var name: String { get }
    /// Every field this source can report, filter or not (for `-f help`).
    func availableFields() -> [String]
    /// Applies a new field filter (nil: all fields), adding the parents of wanted children.
    func updateFields(_ filter: FieldFilter?) throws(SourceError)
    /// Restricts counting to one process (0: all).
    func setPid(_ pid: Int) throws(SourceError)
    /// Counts of the wanted fields: cumulative for counters, the current level for instant
    /// values.
    func read(byGuest: Bool) throws(SourceError) -> [EventID: UInt64]
    /// Starts counting from zero again.
    func reset() throws(SourceError)
    /// Whether the source can key its counts by guest (`b` in the screen).
    var supportsByGuest: Bool { get }
    /// Messages for the operator that arose since the last call (printed once, on stderr).
    func takeWarnings() -> [String]
    /// Releases kernel resources; called once at exit. Must not keep the user waiting.
    func close()
    /// The wanted histogram statistics as last read (most sources have none).
    func histograms() -> [EventID: Histogram]
    /// How the source set itself up, in a line per choice it made (`--verbose`).
    func setupNotes() -> [String]
    /// The fields that are levels (instant or peak values), not counts.
    func levelFields() -> Set<String>
    /// Asks for (or stops asking for) per-guest values of every wanted event, kept from each
    /// read for `guestEvents` (Prometheus's guest labels).
    func setGuestEvents(_ wanted: Bool) throws(SourceError)
    /// The last read's values per guest and event: keys with `guest` set and the event's
    /// name (`EventID("exits(vcpu0)", parent: "exits", guest: 4242, vcpu: 0)`).
    func guestEvents() -> [EventID: UInt64]
}

extension StatSource {
    public func histograms() -> [EventID: Histogram] { [:] }
    public func setupNotes() -> [String] { [] }
    public func levelFields() -> Set<String> { [] }
    public func setGuestEvents(_ wanted: Bool) throws(SourceError) {}
    public func guestEvents() -> [EventID: UInt64] { [:] }
}

/// A source failure the operator must see, as one line, keeping its cause: what was being
/// done, the system's error number when a call failed, and advice on what to do about it.
public struct SourceError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let errno: Errno?
    public let advice: String?

    /// A failed system call while doing `operation`.
    public init(_ operation: String, errno: Errno, advice: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.advice = advice
    }

    /// A failure with no system error behind it.
    public init(_ description: String) {
        operation = description
        errno = nil
        advice = nil
    }

    public var description: String {
        operation + (errno.map { ": \($0)" } ?? "") + (advice.map { "; " + $0 } ?? "")
    }
}

/// What a source is built from: the host's paths and architecture and the command line's
/// choices. Each source reads what it needs and ignores the rest (its description says
/// which options it reads).
public struct SourceConfiguration: Sendable {
    public var paths: SystemPaths
    public var architecture: any Architecture
    /// Whether `architecture` is the running host's (not one named with `--arch` for another
    /// machine): a source that calls the kernel with the architecture's numbers needs it.
    public var architectureIsHosts: Bool
    public var pid: Int
    public var fieldFilter: FieldFilter?
    public var includePast: Bool
    /// `--connect URI`: the management daemon to ask (libvirt), nil for its default.
    public var connectURI: String?

    public init(paths: SystemPaths, architecture: any Architecture, architectureIsHosts: Bool = true,
                pid: Int = 0, fieldFilter: FieldFilter? = nil, includePast: Bool = false,
                connectURI: String? = nil) {
        self.paths = paths
        self.architecture = architecture
        self.architectureIsHosts = architectureIsHosts
        self.pid = pid
        self.fieldFilter = fieldFilter
        self.includePast = includePast
        self.connectURI = connectURI
    }
}

/// The command-line choices a source may read, for `--source help` and for telling the user
/// when an option means nothing to the sources chosen.
public enum SourceOption: String, Sendable, CaseIterable {
    case pid = "-p/-g"
    case fields = "-f"
    case includePast = "-i"
    case connect = "--connect"
}

/// Everything kvmstat needs to know about a source without opening it: the launcher picks,
/// checks and lists sources from these answers alone, never by name.
public struct SourceDescription: Sendable {
    public typealias Factory = @Sendable (SourceConfiguration) throws(SourceError) -> any StatSource

    /// The name users pick it by (`--source debugfs`).
    public let name: String
    public let summary: String
    /// How upstream's screen names it in "Command not available with … enabled", and in
    /// "Restart with … and try again!" (`debugfs only (see option '-d')`).
    public let enabledPhrase: String
    public let onlyHint: String
    /// Whether it can key counts by guest (the screen's `b`) and by vCPU.
    public let byGuest: Bool
    public let byVCPU: Bool
    public let reads: Set<SourceOption>
    /// Candidates for the default, lowest first (upstream: tracepoints when available, else
    /// debugfs); nil when it is used only when asked for.
    public let defaultRank: Int?
    /// Nil when the host (and the chosen architecture) has what the source needs, else why
    /// not, in words for the operator.
    public let unavailableReason: @Sendable (SourceConfiguration) -> String?
    /// The upstream option that picks it alone (`-d`, `-t`), if any.
    public let shorthand: String?
    /// Every field it could report, without opening any counter (`-f help`).
    public let fields: @Sendable (SourceConfiguration) throws(SourceError) -> [String]
    public let make: Factory

    public init(name: String, summary: String, enabledPhrase: String, onlyHint: String,
                byGuest: Bool, byVCPU: Bool,
                reads: Set<SourceOption>, defaultRank: Int?,
                shorthand: String? = nil,
                unavailableReason: @escaping @Sendable (SourceConfiguration) -> String?,
                fields: @escaping @Sendable (SourceConfiguration) throws(SourceError) -> [String],
                make: @escaping Factory) {
        self.name = name
        self.summary = summary
        self.enabledPhrase = enabledPhrase
        self.onlyHint = onlyHint
        self.byGuest = byGuest
        self.byVCPU = byVCPU
        self.reads = reads
        self.defaultRank = defaultRank
        self.unavailableReason = unavailableReason
        self.shorthand = shorthand
        self.fields = fields
        self.make = make
    }
}

/// Sources by the names users type, in registration order.
public struct SourceRegistry: Sendable {
    public private(set) var entries: [SourceDescription] = []

    public init(_ entries: [SourceDescription] = []) {
        self.entries = entries
    }

    public mutating func register(_ description: SourceDescription) {
        entries.append(description)
    }

    public var names: [String] { entries.map(\.name) }

    public func entry(named name: String) -> SourceDescription? { entries.first { $0.name == name } }

    /// The default candidates in order of preference.
    public var defaultCandidates: [SourceDescription] {
        entries.filter { $0.defaultRank != nil }.sorted { $0.defaultRank! < $1.defaultRank! }
    }
}
