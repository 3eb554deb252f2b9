import KVMCore

/// The two programs that time a `LatencyPair` in the kernel. The start program notes, per
/// thread, when the start tracepoint fired and with which reason; the end program, on the
/// same thread's next end hit, takes the difference and files it in a log2 histogram keyed
/// by thread, thread group, reason and bucket — with the sum, the minimum and the maximum in
/// three more slots, so the mean and the extremes are exact, not guessed from buckets.
///
/// Histogram key, 16 bytes: `u32 tid, u32 tgid, u32 reason, u32 slot`; slot 0 counts 0 ns,
/// slot i (1...64) counts [2^(i-1), 2^i) ns (the `Histogram` log2 layout), `sumSlot`,
/// `minSlot` and `maxSlot` hold nanoseconds.
enum LatencyPrograms {
    static let buckets = 65
    static let sumSlot: UInt32 = 65
    static let minSlot: UInt32 = 66
    static let maxSlot: UInt32 = 67
    /// Start map: tid → `u64 nanoseconds, u32 reason, u32 0`.
    static let startValueSize = 16

    /// On the start tracepoint: starts[tid] = (now, reason).
    static func start(reason: TracepointFormat.Field?, starts: FileDescriptor) -> [BPFInstruction]? {
        var code = BPFAssembler()
        code.emit(.move(.r6, .r1))
        code.emit(.call(.ktimeGetNanoseconds))
        code.emit(.store(.double, .r10, -32, .r0))
        if let reason {
            guard let size = BPFInstruction.Size(bytes: reason.size), let offset = Int16(exactly: reason.offset) else {
                return nil
            }
            code.emit(.load(size, .r1, .r6, offset), .store(.word, .r10, -24, .r1))
        } else {
            code.emit(.store(.word, .r10, -24, Int32(bitPattern: CountingProgram.noReason)))
        }
        code.emit(.store(.word, .r10, -20, 0))
        code.emit(.call(.getCurrentPidTgid))
        code.emit(.store(.word, .r10, -8, .r0))
        code.emit(BPFInstruction.loadMap(.r1, starts))
        code.emit(.move(.r2, .r10), .add(.r2, -8), .move(.r3, .r10), .add(.r3, -32))
        code.emit(.move(.r4, Int32(BPFSystem.updateAny)))
        code.emit(.call(.mapUpdateElem))
        code.emit(.move(.r0, 1), .exit)
        return code.assembled()
    }

    /// On the end tracepoint: if this thread has a start, file now − start under its reason.
    static func end(condition: (field: TracepointFormat.Field, value: Int)?, starts: FileDescriptor,
                    histograms: FileDescriptor, dropped: FileDescriptor) -> [BPFInstruction]? {
        var code = BPFAssembler()
        code.emit(.move(.r6, .r1))
        if let condition {
            guard let size = BPFInstruction.Size(bytes: condition.field.size),
                  let offset = Int16(exactly: condition.field.offset), let value = Int32(exactly: condition.value)
            else { return nil }
            code.emit(.load(size, .r1, .r6, offset))
            code.jump(to: "done") { .jumpIfNotEqual(.r1, value, $0) }
        }
        code.emit(.call(.ktimeGetNanoseconds))
        code.emit(.move(.r7, .r0))
        code.emit(.call(.getCurrentPidTgid))
        code.emit(.move(.r8, .r0))
        code.emit(.store(.word, .r10, -8, .r8))
        code.emit(BPFInstruction.loadMap(.r1, starts))
        code.emit(.move(.r2, .r10), .add(.r2, -8))
        code.emit(.call(.mapLookupElem))
        code.jump(to: "done") { .jumpIfEqual(.r0, 0, $0) }
        code.emit(.load(.double, .r1, .r0, 0), .load(.word, .r9, .r0, 8))
        code.emit(.subtract(.r7, .r1))  // r7: the latency in ns
        code.emit(BPFInstruction.loadMap(.r1, starts))
        code.emit(.move(.r2, .r10), .add(.r2, -8))
        code.emit(.call(.mapDeleteElem))
        // The key: tid, tgid, reason, then the slot.
        code.emit(.store(.word, .r10, -32, .r8))
        code.emit(.move(.r1, .r8), .shiftRight(.r1, 32), .store(.word, .r10, -28, .r1))
        code.emit(.store(.word, .r10, -24, .r9))
        // The bucket: 0 for 0 ns, else floor(log2(ns)) + 1, by halving steps (no loops).
        code.emit(.move(.r2, 0))
        code.jump(to: "bucket") { .jumpIfEqual(.r7, 0, $0) }
        code.emit(.move(.r3, .r7), .move(.r2, 1))
        for step: Int32 in [32, 16, 8, 4, 2, 1] {
            code.emit(.move(.r4, .r3), .shiftRight(.r4, step))
            code.emit(.jumpIfEqual(.r4, 0, 2))
            code.emit(.move(.r3, .r4), .add(.r2, step))
        }
        code.label("bucket")
        code.emit(.store(.word, .r10, -20, .r2))
        update(&code, slot: nil, .count, histograms: histograms, dropped: dropped, tag: "b")
        update(&code, slot: sumSlot, .add, histograms: histograms, dropped: dropped, tag: "s")
        update(&code, slot: minSlot, .min, histograms: histograms, dropped: dropped, tag: "n")
        update(&code, slot: maxSlot, .max, histograms: histograms, dropped: dropped, tag: "x")
        code.label("done")
        code.emit(.move(.r0, 1), .exit)
        return code.assembled()
    }

    /// The histogram key's slot (`nil`: the bucket already on the stack), then its update.
    private static func update(_ code: inout BPFAssembler, slot: UInt32?, _ operation: MapUpdate.Operation,
                               histograms: FileDescriptor, dropped: FileDescriptor, tag: String) {
        if let slot { code.emit(.store(.word, .r10, -20, Int32(bitPattern: slot))) }
        MapUpdate.emit(&code, operation, map: histograms, key: -32, scratch: -40, dropped: dropped, tag: tag)
    }
}
