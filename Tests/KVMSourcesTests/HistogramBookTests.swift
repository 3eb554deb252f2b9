import KVMCore
@testable import KVMSources
import Testing

/// Host histograms are sums over guests; a guest that goes away keeps its buckets in them, so
/// they never go down (Prometheus would read a drop as a reset).
struct HistogramBookTests {
    @Test func departedGuestsKeepTheirBuckets() {
        var book = HistogramBook()
        var numbering = StatisticNumbering()
        let field = numbering.field(numbering.numbering("halt_wait_hist")!, vcpu: 0)!
        let shape = Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9)
        for pid in [10, 20] {
            book.setShapes(["halt_wait_hist": shape], of: pid)
            book.record(field, "halt_wait_hist", [1, pid == 10 ? 2 : 5], numbering, of: pid)
        }
        let wanted: Set<String> = ["halt_wait_hist", "halt_wait_hist(vcpu0)"]
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [2, 7])
        book.forget(20)
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [2, 7])
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist(vcpu0)", parent: "halt_wait_hist", vcpu: 0)]?.buckets == [2, 7])
        // Watching one guest: only its own.
        #expect(book.totals(wanted: wanted, pid: 10, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [1, 2])
    }
}

extension HistogramBook {
    /// One histogram as a guest's answer gives it.
    mutating func record(_ field: Int32, _ statistic: String, _ buckets: [UInt64], _ numbering: StatisticNumbering,
                         of pid: Int) {
        record([Reading(field: field, statistic: numbering.number(of: statistic)!, buckets: 0..<buckets.count)],
               buckets: buckets, numbering: numbering, of: pid)
    }
}

/// A guest's histograms are its latest answer's, replaced in place (they are cumulative in
/// the kernel), of statistics its schema calls histograms only.
struct HistogramReplacementTests {
    @Test func latestAnswerReplacesAndOnlyShapedAreKept() {
        var book = HistogramBook()
        var numbering = StatisticNumbering()
        let hist = numbering.field(numbering.numbering("halt_wait_hist")!, vcpu: 1)!
        let other = numbering.field(numbering.numbering("odd_hist")!, vcpu: 1)!
        book.setShapes(["halt_wait_hist": Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9)], of: 7)
        let answer: [UInt64] = [1, 2, 3, 9, 9, 9, 9]
        book.record([.init(field: hist, statistic: 0, buckets: 0..<3), .init(field: other, statistic: 1, buckets: 3..<7)],
                    buckets: answer, numbering: numbering, of: 7)
        let wanted: Set<String> = ["halt_wait_hist", "odd_hist"]
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [1, 2, 3])
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("odd_hist")] == nil)
        #expect(book.names(numbering) == ["halt_wait_hist", "halt_wait_hist(vcpu1)"])
        book.record(hist, "halt_wait_hist", [4, 5, 6], numbering, of: 7)
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [4, 5, 6])
        book.record(hist, "halt_wait_hist", [4, 5, 6, 1], numbering, of: 7)
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [4, 5, 6, 1])
    }
}

/// The host's sums, kept as answers come, are always what adding up the guests' latest
/// buckets (and the departed ones') gives: values that fall, wrap at 2^64 or change length.
struct HistogramSumTests {
    @Test func keptSumsAreTheSumOfTheLatest() {
        var book = HistogramBook()
        var numbering = StatisticNumbering()
        let field = numbering.field(numbering.numbering("h")!, vcpu: 0)!
        let shape = Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9)
        for pid in [1, 2, 3] { book.setShapes(["h": shape], of: pid) }
        let answers: [(Int, [UInt64])] = [
            (1, [1, 2, 3]), (2, [10, 20, 30]), (1, [4, 5, 6]), (3, [UInt64.max, 1, 0]), (2, [0, 0, 0]),
            (3, [UInt64.max, UInt64.max, 7]), (1, [4, 5, 6, 9]), (2, [1, 1]),
        ]
        var latest: [Int: [UInt64]] = [:]
        for (pid, buckets) in answers {
            book.record(field, "h", buckets, numbering, of: pid)
            latest[pid] = buckets
            var expected = [UInt64](repeating: 0, count: 4)
            for counts in latest.values { for (index, count) in counts.enumerated() { expected[index] &+= count } }
            let sum = book.totals(wanted: ["h"], pid: 0, numbering: numbering)[EventID("h")]?.buckets ?? []
            #expect(sum + Array(repeating: 0, count: max(0, 4 - sum.count)) == expected, "after \(pid): \(buckets)")
            #expect(book.totals(wanted: ["h"], pid: pid, numbering: numbering)[EventID("h")]?.buckets == buckets)
        }
        // A guest that went away stays in the sums, not in its own view.
        book.forget(3)
        #expect(book.totals(wanted: ["h"], pid: 3, numbering: numbering).isEmpty)
        #expect(book.totals(wanted: ["h"], pid: 0, numbering: numbering)[EventID("h")]?.buckets
                == [4 &+ 1 &+ UInt64.max, 5 &+ 1 &+ UInt64.max, 6 &+ 7, 9])
    }
}

/// A guest's histograms are found where its last answer had them; answers whose order,
/// length or fields change (a hostile monitor's, a vCPU plugged) are taken all the same, and
/// a statistic given a shape later is kept from then on.
struct HistogramPositionTests {
    @Test func answersInAnyOrderKeepTheSums() {
        var book = HistogramBook()
        var numbering = StatisticNumbering()
        let shape = Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9)
        let statistic = numbering.numbering("h")!
        let late = numbering.numbering("late_hist")!
        let fields = (0..<6).map { numbering.field(statistic, vcpu: Int32($0))! }
        let lateField = numbering.field(late, vcpu: 0)!
        book.setShapes(["h": shape], of: 1)
        var latest: [Int32: [UInt64]] = [:]
        var random = SystemRandomNumberGenerator()
        for round in 0..<300 {
            // Some of the fields, in any order, one maybe twice (the last one counts), of any length.
            var chosen = fields.shuffled(using: &random).prefix(Int.random(in: 1...6, using: &random)).map { $0 }
            if Bool.random(using: &random) { chosen.append(chosen[0]) }
            var buckets: [UInt64] = []
            var readings: [HistogramBook.Reading] = []
            for field in chosen {
                let counts = (0..<Int.random(in: 0...5, using: &random)).map { _ in
                    Bool.random(using: &random) ? UInt64.random(in: 0...9, using: &random) : UInt64.max - UInt64.random(in: 0...2, using: &random)
                }
                readings.append(.init(field: field, statistic: statistic, buckets: buckets.count..<buckets.count + counts.count))
                buckets += counts
                latest[field] = counts
            }
            // A statistic with no shape yet is not kept; once its shape comes, it is.
            let lateCounts: [UInt64] = [UInt64(round), 1]
            readings.insert(.init(field: lateField, statistic: late, buckets: buckets.count..<buckets.count + 2), at: 0)
            buckets += lateCounts
            if round == 150 { book.setShapes(["h": shape, "late_hist": shape], of: 1) }
            book.record(readings, buckets: buckets, numbering: numbering, of: 1)
            var expected = [UInt64](repeating: 0, count: 5)
            for counts in latest.values { for (index, count) in counts.enumerated() { expected[index] &+= count } }
            let totals = book.totals(wanted: ["h", "late_hist"], pid: 0, numbering: numbering)
            let sum = totals[EventID("h")]?.buckets ?? []
            #expect(sum + Array(repeating: 0, count: max(0, 5 - sum.count)) == expected, "round \(round)")
            #expect(totals[EventID("late_hist")]?.buckets == (round >= 150 ? lateCounts : nil), "round \(round)")
        }
    }
}

/// A guest's shapes that change (its schema asked again) apply to every histogram it has,
/// whether or not the next answer has it; one that loses its shape and gets it back counts
/// its buckets once.
struct HistogramShapeChangeTests {
    @Test func shapesLostAndGivenBackCountOnce() {
        var book = HistogramBook()
        var numbering = StatisticNumbering()
        let shape = Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9)
        let h = numbering.numbering("h")!, g = numbering.numbering("g")!
        let hField = numbering.field(h, vcpu: 0)!, gField = numbering.field(g, vcpu: 0)!
        func answer(_ items: [(Int32, Int32, [UInt64])]) {
            var buckets: [UInt64] = []
            var readings: [HistogramBook.Reading] = []
            for (field, statistic, counts) in items {
                readings.append(.init(field: field, statistic: statistic, buckets: buckets.count..<buckets.count + counts.count))
                buckets += counts
            }
            book.record(readings, buckets: buckets, numbering: numbering, of: 1)
        }
        func sum(_ name: String) -> [UInt64]? { book.totals(wanted: [name], pid: 0, numbering: numbering)[EventID(name)]?.buckets }
        book.setShapes(["h": shape], of: 1)
        answer([(hField, h, [5, 5]), (gField, g, [1, 1])])
        #expect(sum("h") == [5, 5] && sum("g") == nil)
        // Its shape gone: its last buckets stay in the sum, new ones change nothing.
        book.setShapes([:], of: 1)
        answer([(hField, h, [7, 7]), (gField, g, [2, 2])])
        #expect(sum("h") == [5, 5])
        // Given back: the sum is its buckets once, not added on top of the last.
        book.setShapes(["h": shape, "g": shape], of: 1)
        // An answer without g (a vCPU gone a moment): g's shape is taken all the same.
        answer([(hField, h, [6, 6])])
        #expect(sum("h") == [6, 6])
        answer([(hField, h, [6, 7]), (gField, g, [3, 3])])
        #expect(sum("h") == [6, 7] && sum("g") == [3, 3])
        #expect(book.names(numbering).contains("g(vcpu0)"))
    }
}

/// What a monitor's schema may say of a histogram is bounded: QEMU's own units only.
struct HistogramBoundsTests {
    @Test func unitsBeyondKVMsAreNotHistograms() {
        func shape(_ base: Int, _ exponent: Int, unit: String = "seconds") -> Histogram? {
            HistogramBook.shape(.object([("type", .string("log2-histogram")), ("unit", .string(unit)),
                                         ("base", .int(base)), ("exponent", .int(exponent))]))
        }
        #expect(shape(10, -9)?.exponent == -9 && shape(2, 10)?.base == 2)
        for (base, exponent) in [(10, Int.min), (10, Int.max), (2, Int.min), (2, 1_000_000_000_000_000_000), (7, 1), (0, 0)] {
            #expect(shape(base, exponent) == nil, "\(base)^\(exponent)")
        }
        #expect(shape(10, -9, unit: "seconds\r\nkvm_fake 1") == nil)
    }

    @Test func tooManyBucketsAreNotKept() {
        var book = HistogramBook()
        var numbering = StatisticNumbering()
        let field = numbering.field(numbering.numbering("h")!, vcpu: -1)!
        book.setShapes(["h": Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9)], of: 1)
        book.record(field, "h", Array(repeating: 1, count: HistogramBook.maxBuckets + 1), numbering, of: 1)
        #expect(book.totals(wanted: ["h"], pid: 0, numbering: numbering).isEmpty)
        book.record(field, "h", Array(repeating: 1, count: 64), numbering, of: 1)
        #expect(book.totals(wanted: ["h"], pid: 0, numbering: numbering)[EventID("h")]?.buckets.count == 64)
    }
}
