import KVMCore

/// Upstream's CSV log: a `timestamp,name,...` header and rows of deltas. In batch mode, the
/// header and one row of the one-second deltas.
public struct CSVFormat: Format {
    public init() {}

    public var name: String { "csv" }
    public var repeatsBannerInFile: Bool { false }

    public func banner(keys: [String]) -> String? {
        "timestamp" + keys.map { "," + FieldKey($0).name }.joined()
    }

    public func record(_ sample: Sample, keys: [String]) -> String {
        sample.time.logStamp + keys.map { "," + String(sample.values[$0]?.delta ?? 0) }.joined()
    }

    public func batch(_ sample: Sample) -> String {
        let keys = sample.sortedKeys
        return banner(keys: keys)! + "\n" + record(sample, keys: keys) + "\n"
    }
}
