#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// One guest's `query-stats` answers (its VM's and its vCPUs'), read where they lie on a
/// worker thread: the values in the order QEMU gave them, each statistic by its number in a
/// copy of the book's `StatisticNumbering` (names it does not know yet listed once in
/// `newNames`), histograms' buckets in one flat array. No String per value, no tree.
///
/// What another user's process says is bounded here: names (`QMPSource.acceptable`, escapes
/// not accepted: KVM's names need none), values a guest (`QMPSource.maxValues`), statistics
/// (`GuestStatBook.maxStatistics`), buckets a histogram (`HistogramBook.maxBuckets`).
struct StatsAnswer: Sendable {
    struct Value: Sendable {
        /// The statistic's number; below zero, `newNames[-1 - statistic]`.
        var statistic: Int32
        /// Index in `blocks`: whose value it is.
        var block: Int32
        /// The value; for a histogram, where its buckets start in `buckets`.
        var number: UInt64
        /// For a histogram, where its buckets end in `buckets`; else -1.
        var bucketsEnd: Int32
    }

    /// The `kvm` provider's blocks: a vCPU's QOM path, nil for the VM's.
    var blocks: [String?] = []
    var values: [Value] = []
    var buckets: [UInt64] = []
    var newNames: [String] = []
    /// Whether values were left out (names too long or odd, too many).
    var dropped = false

    private var newNumbers: [String: Int32] = [:]
    /// The statistics of this guest's last answer, by position: QEMU gives them in the same
    /// order every time, so a name is checked against the one expected there before it is
    /// looked up.
    private let expected: [Int32]
    /// The last answer's blocks' paths: one read again is that String, not a new one.
    private let expectedPaths: [String?]

    /// What a guest's last answer leads its next one to expect: its statistics by position,
    /// its blocks' paths, its buckets' count (room made for as many: an answer read without
    /// growing its arrays step by step).
    struct Expectation: Sendable, Equatable {
        var statistics: [Int32] = []
        var paths: [String?] = []
        var buckets = 0
    }

    init(expecting expected: Expectation = Expectation()) {
        self.expected = expected.statistics
        expectedPaths = expected.paths
        values.reserveCapacity(expected.statistics.count)
        blocks.reserveCapacity(expected.paths.count)
        buckets.reserveCapacity(expected.buckets)
    }

    /// What this answer leads the next one to expect (new names not yet: -1), reusing
    /// `last`'s arrays where they are the same (guests of one QEMU answer alike: one copy
    /// shared by all, none made each sample).
    func expectation(reusing last: Expectation) -> Expectation {
        var next = last
        let same = values.count == last.statistics.count
            && values.indices.allSatisfy { max(values[$0].statistic, -1) == last.statistics[$0] }
        if !same { next.statistics = values.map { max($0.statistic, -1) } }
        if blocks != last.paths { next.paths = blocks }
        next.buckets = buckets.count
        return next
    }

    /// Reads one `query-stats` return value: an array of providers' blocks, each with its
    /// `provider`, `qom-path` (vCPUs) and `stats` (`name`, `value`) in any order.
    mutating func read(_ scanner: inout JSONScanner, numbering: StatisticNumbering) throws(JSONValue.ParseError) {
        try scanner.elements(depth: 1) { (scanner) throws(JSONValue.ParseError) in
            let block = Int32(blocks.count)
            let firstValue = values.count
            let firstBucket = buckets.count
            var isKVM = false
            var path: String?
            try scanner.members(depth: 2) { (scanner, key) throws(JSONValue.ParseError) in
                if scanner.bytes(key, equal: "provider") {
                    let (value, _) = try scanner.string()
                    isKVM = scanner.bytes(value, equal: "kvm")
                } else if scanner.bytes(key, equal: "qom-path"), scanner.peek() == UInt8(ascii: "\"") {
                    let decoded = try readPath(&scanner, expected: Int(block) < expectedPaths.count ? expectedPaths[Int(block)] : nil)
                    path = decoded.utf8.count <= QMPSource.maxPathLength ? decoded : nil
                } else if scanner.bytes(key, equal: "stats") {
                    try readStatistics(&scanner, block: block, numbering: numbering)
                } else {
                    try scanner.skipValue(depth: 2)
                }
            }
            // Another provider's statistics (not KVM's) are none of kvmstat's.
            if isKVM {
                blocks.append(path)
            } else {
                values.removeSubrange(firstValue...)
                buckets.removeSubrange(firstBucket...)
            }
        }
    }

    /// A block's path: `expected` itself when it is the same bytes, unescaped; else decoded.
    private func readPath(_ scanner: inout JSONScanner, expected: String?) throws(JSONValue.ParseError) -> String {
        let mark = scanner.index
        let (range, escaped) = try scanner.string()
        if !escaped, var expected, expected.utf8.count == range.count, range.count > 0,
           expected.withUTF8({ memcmp($0.baseAddress!, scanner.bytes.baseAddress! + range.lowerBound, range.count) == 0 }) {
            return expected
        }
        scanner.rewind(to: mark)
        return try scanner.decodedString()
    }

    /// A block's `stats`, `[{"name": ..., "value": ...}, ...]`: QEMU's own layout read
    /// straight (`QuickStatistic`), a name where the last answer had it compared whole, not
    /// scanned and looked up; any other element (members in another order, blanks, escapes,
    /// numbers at their limits) the general way.
    private mutating func readStatistics(_ scanner: inout JSONScanner, block: Int32,
                                         numbering: StatisticNumbering) throws(JSONValue.ParseError) {
        try numbering.withNames { (names) throws(JSONValue.ParseError) in
            try scanner.elements(depth: 3) { (scanner) throws(JSONValue.ParseError) in
                _ = scanner.peek()
                let firstBucket = buckets.count
                let expectedNumber = values.count < expected.count ? expected[values.count] : -1
                if let found = QuickStatistic.read(scanner.bytes, at: scanner.index, expecting: names[expectedNumber],
                                                   buckets: &buckets) {
                    scanner.advance(to: found.end)
                    take(found.name, number: found.number, histogram: found.histogram ? firstBucket..<buckets.count : nil,
                         scanner, block: block, numbering: numbering, known: found.expectedName ? expectedNumber : nil)
                } else {
                    try readAnyStatistic(&scanner, block: block, numbering: numbering)
                }
            }
        }
    }

    /// One statistic's object, its members in any order.
    private mutating func readAnyStatistic(_ scanner: inout JSONScanner, block: Int32,
                                           numbering: StatisticNumbering) throws(JSONValue.ParseError) {
        var name: Range<Int>?
        var nameEscaped = false
        var number: UInt64?
        var histogram: Range<Int>?
        var histogramValid = true
        let firstBucket = buckets.count
        try scanner.members(depth: 4) { (scanner, key) throws(JSONValue.ParseError) in
            if scanner.bytes(key, equal: "name"), scanner.peek() == UInt8(ascii: "\"") {
                (name, nameEscaped) = try scanner.string()
            } else if scanner.bytes(key, equal: "value") {
                if let flag = try scanner.boolean() {
                    number = flag ? 1 : 0
                } else if scanner.atArray() {
                    let start = buckets.count
                    try scanner.elements(depth: 5) { (scanner) throws(JSONValue.ParseError) in
                        // Buckets are counts: anything else makes the histogram one not kept.
                        guard let peeked = scanner.peek(), peeked == UInt8(ascii: "-") || (0x30...0x39).contains(peeked) else {
                            histogramValid = false
                            try scanner.skipValue(depth: 5)
                            return
                        }
                        let bucket = try scanner.unsignedNumber()
                        guard histogramValid, let bucket, buckets.count - start < HistogramBook.maxBuckets else {
                            histogramValid = false
                            return
                        }
                        buckets.append(bucket)
                    }
                    histogram = start..<buckets.count
                } else if let peeked = scanner.peek(), peeked == UInt8(ascii: "-") || (0x30...0x39).contains(peeked) {
                    number = try scanner.unsignedNumber()
                } else {
                    try scanner.skipValue(depth: 4)
                }
            } else {
                try scanner.skipValue(depth: 4)
            }
        }
        guard let name, number != nil || (histogram != nil && histogramValid) else {
            buckets.removeSubrange(firstBucket...)
            return
        }
        guard !nameEscaped else {
            dropped = true
            buckets.removeSubrange(firstBucket...)
            return
        }
        take(name, number: number ?? 0, histogram: histogram, scanner, block: block, numbering: numbering)
    }

    /// Keeps a statistic's value (or histogram: its buckets already in `buckets`), when its
    /// name is one kvmstat takes and there is room.
    /// `known`: its number, when the name was found to be the expected one already.
    private mutating func take(_ name: Range<Int>, number: UInt64, histogram: Range<Int>?, _ scanner: JSONScanner,
                               block: Int32, numbering: StatisticNumbering, known: Int32? = nil) {
        guard values.count < QMPSource.maxValues,
              let statistic = known ?? statisticNumber(UnsafeBufferPointer(rebasing: scanner.bytes[name]), numbering)
        else {
            dropped = true
            if let histogram { buckets.removeSubrange(histogram.lowerBound...) }
            return
        }
        if let histogram {
            values.append(Value(statistic: statistic, block: block, number: UInt64(histogram.lowerBound),
                                bucketsEnd: Int32(histogram.upperBound)))
        } else {
            values.append(Value(statistic: statistic, block: block, number: number, bucketsEnd: -1))
        }
    }

    /// A name's number: the book's, or one of this answer's new names; nil for a name
    /// kvmstat does not take (odd, or one too many).
    private mutating func statisticNumber(_ name: UnsafeBufferPointer<UInt8>, _ numbering: StatisticNumbering) -> Int32? {
        let position = values.count
        if position < expected.count, numbering.name(expected[position], is: name) { return expected[position] }
        if let known = numbering.number(ofBytes: name) { return known }
        guard QMPSource.acceptable(name) else { return nil }
        let text = String(decoding: name, as: UTF8.self)
        if let new = newNumbers[text] { return new }
        guard numbering.statisticCount + newNames.count < GuestStatBook.maxStatistics else { return nil }
        newNames.append(text)
        let number = Int32(-newNames.count)
        newNumbers[text] = number
        return number
    }
}

/// QEMU's own layout of one statistic, `{"name": "NAME", "value": V}` with V an unsigned
/// integer (at most 19 digits), `true`, `false` or `[N, N, ...]` of such integers, read in one
/// loop without a call per byte: hundreds of these a guest every sample. Anything else, or at
/// an edge (a 20-digit number, a leading zero, a fraction, an escape, another order), is nil
/// and left to the general reader, which takes it or says why not: this reader only ever
/// accepts what that one accepts, and reads it alike.
enum QuickStatistic {
    struct Found {
        var name: Range<Int>
        var number: UInt64
        /// Whether the value was a histogram (its buckets appended to the caller's).
        var histogram: Bool
        /// Where the statistic's object ends.
        var end: Int
        /// Whether the name was the one expected.
        var expectedName = false
    }

    /// `expecting`: the name expected (empty: none), compared whole before the name is
    /// scanned (it is one kvmstat accepted: no quote, escape or control byte in it).
    static func read(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int, expecting: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0),
                     buckets: inout [UInt64]) -> Found? {
        var i = start
        guard literal(bytes, &i, "{\"name\": \"") else { return nil }
        let nameStart = i
        let expectedName = !expecting.isEmpty && i + expecting.count < bytes.count
            && bytes[i + expecting.count] == UInt8(ascii: "\"")
            && same(UnsafeRawPointer(bytes.baseAddress! + i), UnsafeRawPointer(expecting.baseAddress!), expecting.count)
        if expectedName {
            i += expecting.count
        } else {
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                guard bytes[i] >= 0x20, bytes[i] != UInt8(ascii: "\\") else { return nil }
                i += 1
            }
            guard i < bytes.count else { return nil }
        }
        let name = nameStart..<i
        i += 1
        guard literal(bytes, &i, ", \"value\": "), i < bytes.count else { return nil }
        var number: UInt64 = 0
        var histogram = false
        let firstBucket = buckets.count
        switch bytes[i] {
        case UInt8(ascii: "t"):
            guard literal(bytes, &i, "true") else { return nil }
            number = 1
        case UInt8(ascii: "f"):
            guard literal(bytes, &i, "false") else { return nil }
        case UInt8(ascii: "["):
            histogram = true
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                i += 1
            } else {
                while true {
                    guard buckets.count - firstBucket < HistogramBook.maxBuckets, let bucket = integer(bytes, &i) else {
                        buckets.removeSubrange(firstBucket...)
                        return nil
                    }
                    buckets.append(bucket)
                    if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                        i += 1
                        break
                    }
                    guard literal(bytes, &i, ", ") else {
                        buckets.removeSubrange(firstBucket...)
                        return nil
                    }
                }
            }
        default:
            guard let value = integer(bytes, &i) else { return nil }
            number = value
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "}") else {
            buckets.removeSubrange(firstBucket...)
            return nil
        }
        return Found(name: name, number: number, histogram: histogram, end: i + 1, expectedName: expectedName)
    }

    @inline(__always)
    private static func literal(_ bytes: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard i + count <= bytes.count, same(UnsafeRawPointer(bytes.baseAddress! + i), UnsafeRawPointer(text.utf8Start), count)
        else { return false }
        i += count
        return true
    }

    /// Whether `count` bytes at `a` and `b` are the same: eight at a time (names and QEMU's
    /// separators are a few words long; no call to memcmp for each).
    @inline(__always)
    private static func same(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
        var offset = 0
        while offset + 8 <= count {
            guard a.loadUnaligned(fromByteOffset: offset, as: UInt64.self) == b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            else { return false }
            offset += 8
        }
        while offset < count {
            guard a.load(fromByteOffset: offset, as: UInt8.self) == b.load(fromByteOffset: offset, as: UInt8.self) else { return false }
            offset += 1
        }
        return true
    }

    /// 1 to 19 digits (no overflow), no leading zero, not followed by a fraction or exponent.
    @inline(__always)
    private static func integer(_ bytes: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> UInt64? {
        let start = i
        var value: UInt64 = 0
        while i < bytes.count, bytes[i] &- 0x30 < 10, i - start < 19 {
            value = value &* 10 &+ UInt64(bytes[i] &- 0x30)
            i += 1
        }
        let count = i - start
        guard count > 0, count == 1 || bytes[start] != 0x30 else { return nil }
        if i < bytes.count {
            switch bytes[i] {
            case 0x30...0x39, UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
            default: break
            }
        }
        return value
    }
}
