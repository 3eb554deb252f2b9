/// One of KVM's histogram statistics (`halt_wait_hist`): bucket counts as the kernel keeps
/// them, cumulative since the VM started. Bucket i of a log2 histogram counts values in
/// [2^(i-1), 2^i) units (bucket 0: the value 0); of a linear one, [i·size, (i+1)·size).
/// A value's unit is `unit` × `base`^`exponent` (nanoseconds: seconds, 10, -9).
public struct Histogram: Sendable, Equatable {
    public enum Scale: Sendable, Equatable {
        case log2
        case linear(bucketSize: UInt64)
    }

    public var scale: Scale
    public var unit: String?
    public var base: Int
    public var exponent: Int
    public var buckets: [UInt64]
    /// The sum, least and greatest of the values counted, in units, where the source keeps
    /// them (the bpf source's latencies; KVM's own histograms keep none).
    public var sum: UInt64?
    public var minimum: UInt64?
    public var maximum: UInt64?

    public init(scale: Scale, unit: String? = nil, base: Int = 10, exponent: Int = 0, buckets: [UInt64] = [],
                sum: UInt64? = nil, minimum: UInt64? = nil, maximum: UInt64? = nil) {
        self.scale = scale
        self.unit = unit
        self.base = base
        self.exponent = exponent
        self.buckets = buckets
        self.sum = sum
        self.minimum = minimum
        self.maximum = maximum
    }

    /// How many values were counted.
    public var count: UInt64 { buckets.reduce(0, &+) }

    /// Adds another histogram's buckets (several vCPUs or guests), wrapping as counters do.
    public mutating func add(_ other: [UInt64]) {
        if other.count > buckets.count { buckets += Array(repeating: 0, count: other.count - buckets.count) }
        for (index, count) in other.enumerated() { buckets[index] &+= count }
    }
}
