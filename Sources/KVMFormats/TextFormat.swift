import KVMCore

/// Upstream kvm_stat's plain output, byte for byte: batch lines `%-42s%10d%10d` (name, total,
/// delta) and log records of `%9d` deltas under a banner of names. Names with control or
/// format characters (another user's guest name) are shown escaped: a line stays a line.
public struct TextFormat: Format {
    public init() {}

    public var name: String { "text" }
    public var repeatsBannerInFile: Bool { true }

    public func banner(keys: [EventID], of sample: Sample) -> String? {
        keys.map { sample.name(of: $0).escapedForDisplay + " " }.joined()
    }

    public func record(_ sample: Sample, keys: [EventID]) -> String {
        var line = sample.time.logStamp
        for key in keys {
            line += " " + String(sample.values[key]?.delta ?? 0).rightAligned(to: 9)
        }
        return line
    }

    public func batch(_ sample: Sample) -> String {
        var out = ""
        for key in sample.sortedKeys {
            let stat = sample.values[key]!
            out += sample.label(key).escapedForDisplay.padded(to: 42) + String(stat.value).rightAligned(to: 10)
                + String(stat.delta).rightAligned(to: 10) + "\n"
        }
        return out
    }
}
