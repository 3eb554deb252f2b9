import KVMCore

/// A provider of KVM event counts (upstream's "provider"). Each read returns a `Reading`:
/// every value of that sample with the descriptions of the families they belong to, counters
/// cumulative since the source's baseline; `Stats` merges readings into a `Sample`.
///
/// Keys are `EventID`s: an event, a child under its parent, a guest's value, and with
/// `ReadRequest.byGuest` a guest's events taken together.
public protocol StatSource: AnyObject {
    /// The name users pick it by (`--source tracepoint`).
    var name: String { get }
    /// Every field this source can report, filter or not (for `-f help`).
    func availableFields() -> [String]
    /// Applies a new field filter (nil: all fields), adding the parents of wanted children.
    func updateFields(_ filter: FieldFilter?) throws(SourceError)
    /// Restricts counting to one process (0: all).
    func setPid(_ pid: Int) throws(SourceError)
    /// Everything of this sample: the wanted fields' counts (cumulative) and levels (as they
    /// are), what `request` asks beyond them, and the warnings that arose since the last read.
    func read(_ request: ReadRequest) throws(SourceError) -> Reading
    /// Starts counting from zero again.
    func reset() throws(SourceError)
    /// Whether the source can key its counts by guest (`b` in the screen).
    var supportsByGuest: Bool { get }
    /// Releases kernel resources; called once at exit. Must not keep the user waiting.
    func close()
    /// How the source set itself up, in a line per choice it made (`--verbose`).
    func setupNotes() -> [String]
}

extension StatSource {
    public func setupNotes() -> [String] { [] }

    /// A read of events (or guest rows) alone.
    public func read(byGuest: Bool) throws(SourceError) -> Reading {
        try read(ReadRequest(byGuest: byGuest))
    }
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
    /// `--latency`: time the architecture's latency pairs (the bpf source).
    public var latency: Bool = false

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
    case latency = "--latency"
}

/// Everything kvmstat needs to know about a source without opening it: the launcher picks,
/// checks and lists sources from these answers alone, never by name.
public struct SourceDescription: Sendable {
    public typealias Factory = @Sendable (SourceConfiguration) throws(SourceError) -> any StatSource

    /// The name users pick it by (`--source debugfs`).
    public let name: String
    public let summary: String
    /// How upstream's screen names it in "Command not available with … enabled".
    public let enabledPhrase: String
    /// Whether it can key counts by guest (the screen's `b`).
    public let byGuest: Bool
    public let reads: Set<SourceOption>
    /// Candidates for the default, lowest first (upstream: tracepoints when available, else
    /// debugfs); nil when it is used only when asked for.
    public let defaultRank: Int?
    /// Nil when the host (and the chosen architecture) has what the source needs, else why
    /// not, in words for the operator.
    public let unavailableReason: @Sendable (SourceConfiguration) -> String?
    /// The upstream option that picks it alone (`-d`, `-t`), if any.
    public let shorthand: String?

    /// How a user picks it alone: its shorthand, else `--source NAME`.
    public var selection: String { shorthand ?? "--source \(name)" }
    /// Every field it could report, without opening any counter (`-f help`).
    public let fields: @Sendable (SourceConfiguration) throws(SourceError) -> [String]
    public let make: Factory

    public init(name: String, summary: String, enabledPhrase: String,
                byGuest: Bool,
                reads: Set<SourceOption>, defaultRank: Int?,
                shorthand: String? = nil,
                unavailableReason: @escaping @Sendable (SourceConfiguration) -> String?,
                fields: @escaping @Sendable (SourceConfiguration) throws(SourceError) -> [String],
                make: @escaping Factory) {
        self.name = name
        self.summary = summary
        self.enabledPhrase = enabledPhrase
        self.byGuest = byGuest
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
