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
            book.record(field, statistic: "halt_wait_hist", buckets: [1, pid == 10 ? 2 : 5], of: pid)
        }
        let wanted: Set<String> = ["halt_wait_hist", "halt_wait_hist(vcpu0)"]
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [2, 7])
        book.forget(20, numbering: numbering)
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [2, 7])
        #expect(book.totals(wanted: wanted, pid: 0, numbering: numbering)[EventID("halt_wait_hist(vcpu0)", parent: "halt_wait_hist", vcpu: 0)]?.buckets == [2, 7])
        // Watching one guest: only its own.
        #expect(book.totals(wanted: wanted, pid: 10, numbering: numbering)[EventID("halt_wait_hist")]?.buckets == [1, 2])
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
        book.record(field, statistic: "h", buckets: ArraySlice(repeating: 1, count: HistogramBook.maxBuckets + 1), of: 1)
        #expect(book.totals(wanted: ["h"], pid: 0, numbering: numbering).isEmpty)
        book.record(field, statistic: "h", buckets: ArraySlice(repeating: 1, count: 64), of: 1)
        #expect(book.totals(wanted: ["h"], pid: 0, numbering: numbering)[EventID("h")]?.buckets.count == 64)
    }
}
