import KVMCore

/// Upstream kvm_stat's plain output, byte for byte: batch lines `%-42s%10d%10d` (name, total,
/// delta) and log records of `%9d` deltas under a banner of names.
public struct TextFormat: Format {
    public init() {}

    public var name: String { "text" }
    public var repeatsBannerInFile: Bool { true }

    public func banner(keys: [String]) -> String? {
        keys.map { FieldKey($0).name + " " }.joined()
    }

    public func record(_ sample: Sample, keys: [String]) -> String {
        var line = sample.time.logStamp
        for key in keys {
            line += " " + Self.rightAligned(sample.values[key]?.delta ?? 0, width: 9)
        }
        return line
    }

    public func batch(_ sample: Sample) -> String {
        var out = ""
        for key in sample.sortedKeys {
            let stat = sample.values[key]!
            var name = FieldKey(key).name
            if name.count < 42 { name += String(repeating: " ", count: 42 - name.count) }
            out += name + Self.rightAligned(stat.value, width: 10)
                + Self.rightAligned(stat.delta, width: 10) + "\n"
        }
        return out
    }

    /// printf's `%Nd`.
    static func rightAligned(_ value: Int, width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: " ", count: width - digits.count) + digits
    }
}
