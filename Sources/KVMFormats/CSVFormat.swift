import KVMCore

/// Upstream's CSV log: a `timestamp,name,...` header and rows of deltas. In batch mode, the
/// header and one row of the one-second deltas.
public struct CSVFormat: Format {
    public init() {}

    public var name: String { "csv" }
    public var repeatsBannerInFile: Bool { false }
    public var shorthand: String? { "-c" }

    /// Served as `text/csv` (the header and one row) to a scraper that asks for it.
    public var mediaTypes: [MediaType] { [MediaType("text/csv", parameters: "charset=utf-8", quality: 0.3)] }

    public func banner(keys: [EventID], of sample: Sample) -> String? {
        "timestamp" + keys.map { "," + Self.quoted(sample.name(of: $0)) }.joined()
    }

    /// A field as RFC 4180 wants it: names are the kernel's data, and one with a comma, a
    /// quote or a line break is quoted (quotes doubled) so the columns stay the columns.
    static func quoted(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return field }
        return "\"" + field.map { $0 == "\"" ? "\"\"" : String($0) }.joined() + "\""
    }

    public func record(_ sample: Sample, keys: [EventID]) -> String {
        sample.time.logStamp + keys.map { "," + String(sample.values[$0]?.delta ?? 0) }.joined()
    }

    public func batch(_ sample: Sample) -> String {
        let keys = sample.sortedKeys
        return "timestamp" + keys.map { "," + Self.quoted(sample.label($0)) }.joined() + "\n"
            + record(sample, keys: keys) + "\n"
    }
}
