import KVMCore

/// One `LatencyPair` timed in the kernel (`LatencyPrograms`): its maps, its two programs and
/// their perf events, and the reading of its histograms — per exit reason, for every thread
/// or one thread group's.
final class LatencyTimer {
    let pair: LatencyPair
    private let bpf: BPFSystem
    private let starts: FileDescriptor
    private let histograms: FileDescriptor
    private(set) var descriptors: [FileDescriptor] = []
    /// Whether the kernel reads the map in batches (until it says it cannot).
    private var batchLookups = true
    private let reasonNames: [UInt32: String]

    /// Keys the histogram map holds at most: (thread, reason, slot) for ~3,000 vCPUs.
    static let maxKeys = 131_072

    /// Loads and attaches both programs; a failure says which step and why.
    init(pair: LatencyPair, catalog: TracepointCatalog, bpf: BPFSystem, dropped: FileDescriptor, attach: (String, [BPFInstruction]) throws(SourceError) -> [FileDescriptor])
        throws(SourceError)
    {
        self.pair = pair
        self.bpf = bpf
        reasonNames = Dictionary(pair.reasons.compactMap { reason in UInt32(exactly: reason.value).map { ($0, reason.name) } },
                                 uniquingKeysWith: { first, _ in first })
        do throws(Errno) {
            starts = try bpf.createMap(.hash, keySize: 4, valueSize: LatencyPrograms.startValueSize,
                                       maxEntries: BPFSource.maxKeys, name: "kvmstat_starts", noPrealloc: true)
        } catch {
            throw SourceError("the bpf source could not create the map timing \(pair.name)", errno: error)
        }
        do throws(Errno) {
            histograms = try bpf.createMap(.hash, keySize: 16, valueSize: 8, maxEntries: Self.maxKeys,
                                           name: "kvmstat_latency", noPrealloc: true)
        } catch {
            starts.close()
            throw SourceError("the bpf source could not create the histogram map of \(pair.name)", errno: error)
        }
        descriptors = [starts, histograms]
        func field(_ tracepoint: String, _ name: String) throws(SourceError) -> TracepointFormat.Field {
            guard let found = TracepointFormat.read(catalog.directory(of: tracepoint))?.fields[name] else {
                throw SourceError("the bpf source cannot time \(pair.name): the format of \(tracepoint) "
                    + "in \(catalog.directory(of: tracepoint)) has no field '\(name)'")
            }
            return found
        }
        do throws(SourceError) {
            let reason = try pair.reasonField.map { (name) throws(SourceError) in try field(pair.start, name) }
            let condition = try pair.endCondition.map { (c) throws(SourceError) in (try field(pair.end, c.field), c.value) }
            guard let startCode = LatencyPrograms.start(reason: reason, starts: starts),
                  let endCode = LatencyPrograms.end(condition: condition, starts: starts, histograms: histograms,
                                                    dropped: dropped)
            else {
                throw SourceError("the bpf source cannot time \(pair.name): a field it reads has an odd width")
            }
            descriptors += try attach(pair.start, startCode)
            descriptors += try attach(pair.end, endCode)
        } catch {
            for fd in descriptors { fd.close() }
            descriptors = []
            throw error
        }
    }

    /// Every reason's histogram (of thread group `pid` alone when not 0), keyed as
    /// `userspace_exit_latency(IO)` under `userspace_exit_latency`; also each of `guests`'s
    /// (running guest processes), keyed with its pid as guest.
    func read(pid: Int, guests: Set<UInt32> = []) -> [EventID: Histogram] {
        /// Thread group 0 stands for the host's (or `pid`'s) sum.
        struct Slot: Hashable {
            var tgid: UInt32
            var reason: UInt32
        }
        var byReason: [Slot: Histogram] = [:]
        func add(_ slot: Slot, _ index: UInt32, _ value: UInt64) {
            var histogram = byReason[slot] ?? Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9,
                                                        buckets: Array(repeating: 0, count: LatencyPrograms.buckets))
            switch index {
            case 0..<UInt32(LatencyPrograms.buckets): histogram.buckets[Int(index)] &+= value
            case LatencyPrograms.sumSlot: histogram.sum = (histogram.sum ?? 0) &+ value
            case LatencyPrograms.minSlot: histogram.minimum = min(histogram.minimum ?? .max, value)
            case LatencyPrograms.maxSlot: histogram.maximum = max(histogram.maximum ?? 0, value)
            default: break
            }
            byReason[slot] = histogram
        }
        func add(_ key: (UInt32, UInt32, UInt32, UInt32), _ value: UInt64) {
            guard pid == 0 || Int(key.1) == pid else { return }
            add(Slot(tgid: 0, reason: key.2), key.3, value)
            if guests.contains(key.1) { add(Slot(tgid: key.1, reason: key.2), key.3, value) }
        }
        // A read that fails shows what was timed so far (the next sample reads again).
        if let all = try? bpf.elements(histograms, keySize: 16, valueSize: 8, batched: &batchLookups) {
            all.keys.withUnsafeBytes { keys in
                all.values.withUnsafeBytes { values in
                    for i in 0..<all.count {
                        let base = i * 16
                        add((keys.load(fromByteOffset: base, as: UInt32.self), keys.load(fromByteOffset: base + 4, as: UInt32.self),
                             keys.load(fromByteOffset: base + 8, as: UInt32.self), keys.load(fromByteOffset: base + 12, as: UInt32.self)),
                            values.load(fromByteOffset: i * 8, as: UInt64.self))
                    }
                }
            }
        }
        var result: [EventID: Histogram] = [:]
        for (slot, var histogram) in byReason {
            // Trailing empty buckets say nothing.
            while let last = histogram.buckets.last, last == 0, histogram.buckets.count > 1 { histogram.buckets.removeLast() }
            let reason = slot.reason
            let name = reasonNames[reason].map { "\(pair.name)(\($0))" }
                ?? (reason == CountingProgram.noReason ? pair.name : "\(pair.name)(\(reason))")
            let key = EventID(name, parent: name == pair.name ? nil : pair.name)
            result[slot.tgid == 0 ? key : key.of(guest: Int(slot.tgid))] = histogram
        }
        return result
    }

    var family: MetricFamily {
        MetricFamily(pair.name, kind: .histogram, unit: MetricUnit("seconds", base: 10, exponent: -9), help: pair.help,
                     origin: .kvmStatistic)
    }
}
