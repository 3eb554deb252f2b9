import KVMCore

/// One JSON object per sample, for log pipelines:
/// `{"timestamp": "...", "interval_s": 1.0, "events": {"kvm_exit": {"total": 5, "delta": 1}, ...}}`.
/// Child events appear under their own names with a `"parent"` key. Keys are stable and
/// numbers are integers.
public struct JSONLinesFormat: Format {
    public init() {}

    public var name: String { "jsonl" }
    public var repeatsBannerInFile: Bool { false }

    public func banner(keys: [EventID]) -> String? { nil }

    public func record(_ sample: Sample, keys: [EventID]) -> String {
        var events: [(String, JSONValue)] = []
        events.reserveCapacity(keys.count)
        for key in keys {
            let stat = sample.values[key] ?? .zero
            var members: [(String, JSONValue)] = [("total", .uint(stat.value)),
                                                  ("delta", .int(Int(stat.delta)))]
            if let parent = key.parent { members.append(("parent", .string(parent))) }
            events.append((key.name, .object(members)))
        }
        let interval = (sample.interval * 1000).rounded() / 1000
        return JSONValue.object([
            ("timestamp", .string(sample.time.rfc3339)),
            ("interval_s", .double(interval)),
            ("events", .object(events)),
        ]).rendered()
    }

    public func batch(_ sample: Sample) -> String {
        record(sample, keys: sample.sortedKeys) + "\n"
    }
}
