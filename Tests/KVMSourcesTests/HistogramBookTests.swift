import KVMCore
@testable import KVMSources
import Testing

/// Host histograms are sums over guests; a guest that goes away keeps its buckets in them, so
/// they never go down (Prometheus would read a drop as a reset).
struct HistogramBookTests {
    @Test func departedGuestsKeepTheirBuckets() {
        var book = HistogramBook()
        let shape = Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9)
        for pid in [10, 20] {
            book.setShapes(["halt_wait_hist": shape], of: pid)
            book.record("halt_wait_hist", vcpu: 0, buckets: [.uint(1), .uint(pid == 10 ? 2 : 5)], of: pid)
        }
        let wanted: Set<String> = ["halt_wait_hist", "halt_wait_hist(vcpu0)"]
        #expect(book.totals(wanted: wanted, pid: 0)[EventID("halt_wait_hist")]?.buckets == [2, 7])
        book.forget(20)
        #expect(book.totals(wanted: wanted, pid: 0)[EventID("halt_wait_hist")]?.buckets == [2, 7])
        #expect(book.totals(wanted: wanted, pid: 0)[EventID("halt_wait_hist(vcpu0)", parent: "halt_wait_hist", vcpu: 0)]?.buckets == [2, 7])
        // Watching one guest: only its own.
        #expect(book.totals(wanted: wanted, pid: 10)[EventID("halt_wait_hist")]?.buckets == [1, 2])
    }
}
