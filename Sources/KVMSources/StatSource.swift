import KVMCore

/// A provider of KVM event counts (upstream's "provider"). Counts are cumulative since the
/// source's baseline; `Stats` turns them into values and deltas.
///
/// Keys are field names; a child event's key is `child/parent` (`FieldKey`),
/// and with `byGuest` the debugfs source keys by guest pid instead.
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
    func read(byGuest: Bool) throws(SourceError) -> [String: UInt64]
    /// Starts counting from zero again.
    func reset() throws(SourceError)
    /// Whether the source can key its counts by guest (`b` in the screen).
    var supportsByGuest: Bool { get }
    /// Messages for the operator that arose since the last call (printed once, on stderr).
    func takeWarnings() -> [String]
    /// Releases kernel resources; called once at exit. Must not keep the user waiting.
    func close()
}

/// A source failure the operator must see: a one-line message, no stack trace.
public struct SourceError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// What a source is built from: the host's paths and architecture and the command line's
/// choices.
public struct SourceConfiguration: Sendable {
    public var paths: SystemPaths
    public var architecture: any Architecture
    public var pid: Int
    public var fieldFilter: FieldFilter?
    public var includePast: Bool

    public init(paths: SystemPaths, architecture: any Architecture, pid: Int = 0,
                fieldFilter: FieldFilter? = nil, includePast: Bool = false) {
        self.paths = paths
        self.architecture = architecture
        self.pid = pid
        self.fieldFilter = fieldFilter
        self.includePast = includePast
    }
}

/// Sources by the names users type; the executable registers the built-ins.
public struct SourceRegistry: Sendable {
    public typealias Factory = @Sendable (SourceConfiguration) throws(SourceError) -> any StatSource

    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        public let make: Factory
    }

    public private(set) var entries: [Entry] = []

    public init() {}

    public mutating func register(name: String, summary: String, make: @escaping Factory) {
        entries.append(Entry(name: name, summary: summary, make: make))
    }

    public var names: [String] { entries.map(\.name) }

    public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }
}
