import Glibc
import KVMCore

/// The statistics guests report and their per-vCPU fields, each numbered once for all guests:
/// a big host's guests all report the same few dozen statistics for their vCPUs, so a guest's
/// tables hold numbers, and a statistic's name, a field's key (`exits(vcpu3)` under `exits`)
/// are made once, not per guest and sample.
///
/// Names are found from their bytes too (`number(ofBytes:)`), without making a String: the
/// qmp source's workers look names up in a copy of this table while reading answers.
/// Bounded, as what another user's monitor reports must be: `maxStatistics` names,
/// `maxFields` fields, vCPU indexes below `maxVCPUs`.
public struct StatisticNumbering: Sendable {
    public static let maxStatistics = 256
    public static let maxFields = 16_384
    /// KVM's own limit is 4,096 vCPUs a VM (x86's `KVM_MAX_VCPUS` configurable up to it).
    public static let maxVCPUs = 4_096

    /// Statistic number → name.
    public private(set) var names: [String] = []
    /// Names' bytes one after the other; statistic n's from `nameEnds[n - 1]` (0 for the
    /// first) to `nameEnds[n]` (one buffer: a reader reads them all without a retain each).
    private var nameStore: [UInt8] = []
    private var nameEnds: [Int32] = []
    /// Open addressing by the name's hash: a statistic number, or -1 for an empty place (4
    /// places a name at most, so a lookup rarely probes twice).
    private var table = [Int32](repeating: -1, count: 4 * maxStatistics)

    /// Field number → its key, statistic and vCPU (-1: the VM's).
    public private(set) var keys: [EventID] = []
    public private(set) var fieldStatistic: [Int32] = []
    public private(set) var fieldVCPU: [Int32] = []
    private var fieldNumbers: [Int64: Int32] = [:]

    public init() {}

    public var statisticCount: Int { names.count }
    public var fieldCount: Int { keys.count }

    /// The number of the statistic whose name is these bytes, if it has one.
    public func number(ofBytes name: UnsafeBufferPointer<UInt8>) -> Int32? {
        withNames { names in
            var place = Self.hash(name) & (table.count - 1)
            while true {
                let number = table[place]
                if number < 0 { return nil }
                if names.name(number, is: name) { return number }
                place = (place + 1) & (table.count - 1)
            }
        }
    }

    /// Whether statistic `number`'s name is these bytes (a reader that expects it checks
    /// so, without a lookup).
    public func name(_ number: Int32, is name: UnsafeBufferPointer<UInt8>) -> Bool {
        withNames { $0.name(number, is: name) }
    }

    /// The names as bytes, for a reader of many.
    public func withNames<Result, Failure: Error>(_ body: (Names) throws(Failure) -> Result) throws(Failure) -> Result {
        try nameStore.withUnsafeBufferPointer { (store) throws(Failure) -> Result in
            try nameEnds.withUnsafeBufferPointer { (ends) throws(Failure) -> Result in
                try body(Names(store: store, ends: ends))
            }
        }
    }

    /// The names' bytes, valid within `withNames`.
    public struct Names {
        let store: UnsafeBufferPointer<UInt8>
        let ends: UnsafeBufferPointer<Int32>

        /// Statistic `number`'s name (empty for a number there is none of).
        @inline(__always)
        public subscript(number: Int32) -> UnsafeBufferPointer<UInt8> {
            guard number >= 0, Int(number) < ends.count else { return UnsafeBufferPointer(start: nil, count: 0) }
            let start = number == 0 ? 0 : Int(ends[Int(number) - 1])
            return UnsafeBufferPointer(rebasing: store[start..<Int(ends[Int(number)])])
        }

        public func name(_ number: Int32, is name: UnsafeBufferPointer<UInt8>) -> Bool {
            guard number >= 0, Int(number) < ends.count else { return false }
            let known = self[number]
            return known.count == name.count && (known.count == 0 || memcmp(known.baseAddress!, name.baseAddress!, known.count) == 0)
        }
    }

    public func number(of name: String) -> Int32? {
        var name = name
        return name.withUTF8 { number(ofBytes: $0) }
    }

    /// The statistic's number, numbering it if new; nil when the table is full.
    public mutating func numbering(_ name: String) -> Int32? {
        if let known = number(of: name) { return known }
        guard names.count < Self.maxStatistics else { return nil }
        let number = Int32(names.count)
        let bytes = Array(name.utf8)
        names.append(name)
        nameStore.append(contentsOf: bytes)
        nameEnds.append(Int32(nameStore.count))
        var place = bytes.withUnsafeBufferPointer(Self.hash) & (table.count - 1)
        while table[place] >= 0 { place = (place + 1) & (table.count - 1) }
        table[place] = number
        return number
    }

    /// The field of a statistic's value for a vCPU (`vcpu` -1: the VM's), numbering it if
    /// new; nil when the table is full or the vCPU index is out of KVM's range.
    public mutating func field(_ statistic: Int32, vcpu: Int32) -> Int32? {
        guard (-1..<Int32(Self.maxVCPUs)).contains(vcpu) else { return nil }
        let lookup = Int64(statistic) << 32 | Int64(UInt32(bitPattern: vcpu))
        if let known = fieldNumbers[lookup] { return known }
        guard keys.count < Self.maxFields else { return nil }
        let number = Int32(keys.count)
        let name = names[Int(statistic)]
        keys.append(vcpu < 0 ? EventID(name) : EventID("\(name)(vcpu\(vcpu))", parent: name, vcpu: Int(vcpu)))
        fieldStatistic.append(statistic)
        fieldVCPU.append(vcpu)
        fieldNumbers[lookup] = number
        return number
    }

    /// FNV-1a: names are short and few; this only spreads them over the table.
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: hash ^ (hash >> 29))
    }
}
