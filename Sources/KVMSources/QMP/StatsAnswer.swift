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

    init(expecting expected: [Int32] = []) { self.expected = expected }

    /// What this answer's statistics lead the next one to expect (new names not yet: -1).
    var expectation: [Int32] { values.map { max($0.statistic, -1) } }

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
                    let decoded = try scanner.decodedString()
                    path = decoded.utf8.count <= QMPSource.maxPathLength ? decoded : nil
                } else if scanner.bytes(key, equal: "stats") {
                    try scanner.elements(depth: 3) { (scanner) throws(JSONValue.ParseError) in
                        try readStatistic(&scanner, block: block, numbering: numbering)
                    }
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

    /// One `{"name": ..., "value": ...}` of a block: QEMU's own layout read straight, any
    /// other (members in another order, blanks, escapes) the general way.
    private mutating func readStatistic(_ scanner: inout JSONScanner, block: Int32,
                                        numbering: StatisticNumbering) throws(JSONValue.ParseError) {
        _ = scanner.peek()
        let mark = scanner.index
        if scanner.match("{\"name\": \""), let name = scanner.plainStringRest(), scanner.match(", \"value\": ") {
            var number: UInt64?
            var valid = true
            var histogram: Range<Int>?
            switch scanner.peek() {
            case UInt8(ascii: "t"), UInt8(ascii: "f"): number = try scanner.boolean().map { $0 ? 1 : 0 }
            case UInt8(ascii: "["):
                histogram = try quickBuckets(&scanner)
                valid = histogram != nil
                number = 0
            case .some(let byte) where byte == UInt8(ascii: "-") || (0x30...0x39).contains(byte):
                number = try scanner.unsignedNumber()
                valid = number != nil
            default: valid = false
            }
            if valid, scanner.match("}") {
                take(name, number: number!, histogram: histogram, scanner, block: block, numbering: numbering)
                return
            }
            if let histogram { buckets.removeSubrange(histogram.lowerBound...) }
            scanner.rewind(to: mark)
        } else {
            scanner.rewind(to: mark)
        }
        try readAnyStatistic(&scanner, block: block, numbering: numbering)
    }

    /// A histogram's buckets as QEMU writes them (`[0, 12, 3]`), appended to `buckets`; nil,
    /// none kept, for any other layout (the general way reads it, or says why not).
    private mutating func quickBuckets(_ scanner: inout JSONScanner) throws(JSONValue.ParseError) -> Range<Int>? {
        let start = buckets.count
        guard scanner.match("[") else { return nil }
        if scanner.match("]") { return start..<start }
        while buckets.count - start < HistogramBook.maxBuckets {
            guard let byte = scanner.peek(), (0x30...0x39).contains(byte),
                  let bucket = try scanner.unsignedNumber() else { break }
            buckets.append(bucket)
            if scanner.match("]") { return start..<buckets.count }
            guard scanner.match(", ") else { break }
        }
        buckets.removeSubrange(start...)
        return nil
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
    private mutating func take(_ name: Range<Int>, number: UInt64, histogram: Range<Int>?, _ scanner: JSONScanner,
                               block: Int32, numbering: StatisticNumbering) {
        guard values.count < QMPSource.maxValues,
              let statistic = statisticNumber(UnsafeBufferPointer(rebasing: scanner.bytes[name]), numbering)
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
