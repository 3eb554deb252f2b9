import KVMCore

/// An output format for batch (`-1`) and log (`-l`, `-L`) modes. Formats turn samples into
/// text; they never read the kernel and never know which source made a number.
public protocol Format: Sendable {
    /// The name users pick it by (`--format csv`).
    var name: String { get }
    /// The header naming the columns `keys`, or nil when the format has none.
    func banner(keys: [EventID]) -> String?
    /// One log record: the deltas of `keys` in `sample`.
    func record(_ sample: Sample, keys: [EventID]) -> String
    /// Batch mode's whole output for one sample (every key, sorted).
    func batch(_ sample: Sample) -> String
    /// Whether the banner is repeated every 20 records in a log file (upstream repeats the
    /// text banner everywhere, the CSV header only on a terminal or pipe).
    var repeatsBannerInFile: Bool { get }
    /// The upstream option that picks it (`-c`), if any.
    var shorthand: String? { get }
    /// Whether records stand alone, so that the rows may differ from one record to the next
    /// (by-guest logs, where guests come and go); columns under one banner cannot.
    var recordsStandAlone: Bool { get }
    /// Whether each record replaces a log file's content (atomically) instead of being
    /// appended: node_exporter's textfile collector reads whole files.
    var replacesFile: Bool { get }
    /// Whether records carry per-guest values (`Sample.guestEvents`) when sources have them.
    var wantsGuestEvents: Bool { get }
}

extension Format {
    public var shorthand: String? { nil }
    public var recordsStandAlone: Bool { false }
    public var replacesFile: Bool { false }
    public var wantsGuestEvents: Bool { false }
}

/// Formats by the names users type; the executable registers the built-ins.
public struct FormatRegistry: Sendable {
    public struct Entry: Sendable {
        public let format: any Format
        public let summary: String
    }

    public private(set) var entries: [Entry] = []

    public init(_ formats: [(any Format, String)] = []) {
        entries = formats.map { Entry(format: $0.0, summary: $0.1) }
    }

    public mutating func register(_ format: any Format, summary: String) {
        entries.append(Entry(format: format, summary: summary))
    }

    public var names: [String] { entries.map(\.format.name) }

    /// The format used when none is asked for: the first registered.
    public var defaultFormat: (any Format)? { entries.first?.format }

    /// The format an upstream option such as `-c` picks.
    public func format(shorthand: String) -> (any Format)? {
        entries.first { $0.format.shorthand == shorthand }?.format
    }

    public func format(named name: String) -> (any Format)? {
        entries.first { $0.format.name == name }?.format
    }
}

extension Sample {
    /// Events in upstream's order (its sort of `child parent` keys).
    public var sortedKeys: [EventID] { values.keys.sorted() }
}
