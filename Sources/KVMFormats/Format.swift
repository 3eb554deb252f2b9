import KVMCore

/// An output format for batch (`-1`), log (`-l`, `-L`) and listen (`--listen`) modes.
/// Formats turn samples into text; they never read the kernel, never know which source made
/// a number, and take what a number is (counter or level, unit, help) from the sample's
/// family descriptions, never from its name.
public protocol Format: Sendable {
    /// The name users pick it by (`--format csv`).
    var name: String { get }
    /// The header naming the columns `keys` of `sample`, or nil when the format has none.
    func banner(keys: [EventID], of sample: Sample) -> String?
    /// One log record: the deltas of `keys` in `sample`.
    func record(_ sample: Sample, keys: [EventID]) -> String
    /// Batch mode's whole output for one sample (every key, sorted), and the endpoint's
    /// document.
    func batch(_ sample: Sample) -> String
    /// `batch` as UTF-8 bytes, for the endpoint (a format that writes bytes makes them
    /// without going through a String: a big host's exposition is megabytes).
    func batchBytes(_ sample: Sample) -> [UInt8]
    /// `batchBytes` with room made for about `expectedSize` bytes (the last sample's length,
    /// 0: unknown): a big host's exposition is made in one buffer of its size, not grown by
    /// doubling while the old and the new are both held.
    func batchBytes(_ sample: Sample, expectedSize: Int) -> [UInt8]
    /// `batchBytes` handed to `sink` piece by piece as they are made, so that a consumer
    /// (the endpoint's gzip) need never hold the whole text.
    func batchBytes(_ sample: Sample, into sink: (UnsafeRawBufferPointer) -> Void)
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
    /// Whether records label every guest's series themselves (`Sample.guestValues`): the
    /// sources are asked for per-guest values, and `--by-guest` (rows by guest) is refused
    /// as redundant.
    var labelsGuests: Bool { get }
    /// Whether records show histograms (`Sample.histograms`): sources are asked for them only
    /// then.
    var showsHistograms: Bool { get }
    /// What `--listen` may serve it as, best first: an HTTP scrape gets the format whose
    /// media type its Accept header rates highest. Empty: not served.
    var mediaTypes: [MediaType] { get }
}

extension Format {
    public var shorthand: String? { nil }
    public var recordsStandAlone: Bool { false }
    public var replacesFile: Bool { false }
    public var labelsGuests: Bool { false }
    public var showsHistograms: Bool { false }
    public var mediaTypes: [MediaType] { [] }
    public func batchBytes(_ sample: Sample) -> [UInt8] { Array(batch(sample).utf8) }
    public func batchBytes(_ sample: Sample, expectedSize: Int) -> [UInt8] { batchBytes(sample) }
    public func batchBytes(_ sample: Sample, into sink: (UnsafeRawBufferPointer) -> Void) {
        batchBytes(sample).withUnsafeBytes(sink)
    }
}

/// A media type a format serves on the endpoint (`text/plain; version=0.0.4`), and how much
/// the server likes to serve it (HTTP's source quality: a scraper that accepts anything
/// gets the best-liked).
public struct MediaType: Sendable, Equatable {
    /// `type/subtype`, lower case.
    public var type: String
    /// The parameters sent with it in Content-Type (`version=0.0.4; charset=utf-8`).
    public var parameters: String
    /// 0...1: the server's preference among formats a client accepts equally.
    public var quality: Double

    public init(_ type: String, parameters: String = "", quality: Double = 1) {
        self.type = type
        self.parameters = parameters
        self.quality = quality
    }

    /// The Content-Type header's value.
    public var contentType: String { parameters.isEmpty ? type : type + "; " + parameters }
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

    /// The format and media type to answer an HTTP request with `Accept: accept` (nil: the
    /// header was absent, anything goes): the highest product of the client's q and the
    /// type's own quality, the earlier registered on a tie; nil when no served type is
    /// acceptable (406).
    public func negotiate(accept: String?) -> (format: any Format, mediaType: MediaType)? {
        let ranges = AcceptHeader.parse(accept ?? "*/*")
        var best: (format: any Format, mediaType: MediaType, score: Double)?
        for entry in entries {
            for type in entry.format.mediaTypes {
                let score = AcceptHeader.quality(of: type.type, in: ranges) * type.quality
                guard score > 0, score > best?.score ?? 0 else { continue }
                best = (entry.format, type, score)
            }
        }
        return best.map { ($0.format, $0.mediaType) }
    }
}
