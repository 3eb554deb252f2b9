import KVMCore

/// One JSON object per sample, for log pipelines:
/// `{"timestamp": "...", "interval_s": 1.0, "events": {"kvm_exit": {"total": 5, "delta": 1}, ...}}`.
/// Child events appear under their own names with a `"parent"` key. Keys are stable and
/// numbers are integers. Histogram statistics (qmp), when there are any, follow under
/// `"histograms"`: `{"halt_wait_hist": {"scale": "log2", "unit": "seconds", "base": 10,
/// "exponent": -9, "buckets": [...]}}`, per-vCPU ones with a `"parent"` key.
public struct JSONLinesFormat: Format {
    public init() {}

    public var name: String { "jsonl" }
    public var repeatsBannerInFile: Bool { false }
    public var recordsStandAlone: Bool { true }
    public var showsHistograms: Bool { true }

    /// Served as JSON Lines (one record) to a client that asks for it.
    public var mediaTypes: [MediaType] {
        [MediaType("application/jsonl", quality: 0.5), MediaType("application/x-ndjson", quality: 0.5)]
    }

    public func banner(keys: [EventID], of sample: Sample) -> String? { nil }

    public func record(_ sample: Sample, keys: [EventID]) -> String {
        var events: [(String, JSONValue)] = []
        var guests: [JSONValue] = []
        events.reserveCapacity(keys.count)
        for key in keys {
            if key.isGuestTotal, let pid = key.guest {
                // By-guest records: `{"pid": 4242, "name": "web1", "total": .., "delta": ..}`;
                // rows that are not one guest have a null pid and say what they hold.
                let stat = sample.values[key] ?? .zero
                let special = EventID.specialGuestLabel(pid)
                guests.append(.object([("pid", special == nil ? .int(pid) : .null),
                                       ("name", .string(special ?? sample.guestNames[pid] ?? "")),
                                       ("total", .uint(stat.value)), ("delta", .int(Int(stat.delta)))]))
                continue
            }
            let stat = sample.values[key] ?? .zero
            var members: [(String, JSONValue)] = [("total", .uint(stat.value)),
                                                  ("delta", .int(Int(stat.delta)))]
            if let parent = key.parent { members.append(("parent", .string(parent))) }
            events.append((sample.name(of: key), .object(members)))
        }
        let interval = (sample.interval * 1000).rounded() / 1000
        var members: [(String, JSONValue)] = [
            ("timestamp", .string(sample.time.rfc3339)),
            ("interval_s", .double(interval)),
            ("events", .object(events)),
        ]
        if !guests.isEmpty { members.append(("guests", .array(guests))) }
        // A record holds the host's (or the watched guest's) histograms; guests' own are for
        // the formats that label series by guest.
        let histogramKeys = sample.histograms.keys.filter { $0.guest == nil }
        if !histogramKeys.isEmpty {
            members.append(("histograms", .object(histogramKeys.sorted().map { key in
                (sample.name(of: key), Self.histogram(sample.histograms[key]!, parent: key.parent))
            })))
        }
        return JSONValue.object(members).rendered()
    }

    private static func histogram(_ histogram: Histogram, parent: String?) -> JSONValue {
        var members: [(String, JSONValue)]
        switch histogram.scale {
        case .log2: members = [("scale", .string("log2"))]
        case .linear(let size): members = [("scale", .string("linear")), ("bucket_size", .uint(size))]
        }
        if let unit = histogram.unit { members.append(("unit", .string(unit))) }
        members += [("base", .int(histogram.base)), ("exponent", .int(histogram.exponent)),
                    ("buckets", .array(histogram.buckets.map { .uint($0) }))]
        if let parent { members.append(("parent", .string(parent))) }
        return .object(members)
    }

    public func batch(_ sample: Sample) -> String {
        record(sample, keys: sample.sortedKeys) + "\n"
    }
}
