import KVMCore

/// The program kvmstat attaches to each counted tracepoint: it adds one to the count of
/// (thread, thread group, event, reason) in a hash map, so the kernel keeps per-thread counts
/// of every event and exit reason and kvmstat reads them once a sample.
///
/// The key, 16 bytes on the program's stack: `u32 tid, u32 tgid, u32 event, u32 reason`
/// (`reason` is the record's reason field, or `noReason`). A key seen for the first time is
/// inserted with count 1; when the map is full the hit is added to `dropped[0]` instead
/// (`MapUpdate`), so the keys already there stay exact and the loss is known.
enum CountingProgram {
    static let keySize = 16
    static let noReason: UInt32 = .max

    struct Key: Hashable, Sendable {
        var tid: UInt32
        var tgid: UInt32
        var event: UInt32
        var reason: UInt32
    }

    /// Where a program finds the event number it counts.
    enum EventNumber {
        /// A constant in the program: one program per tracepoint.
        case constant(UInt32)
        /// The attach cookie of the perf event it runs for: one program serves every
        /// tracepoint whose reason field (if any) sits at the same offset and size.
        case cookie
    }

    /// The instructions for event `event`, whose reason (if any) is the record field at
    /// `reason` (offset and size from the tracepoint's format).
    static func instructions(event: EventNumber, reason: TracepointFormat.Field?, counts: FileDescriptor,
                             dropped: FileDescriptor) -> [BPFInstruction]? {
        var code = BPFAssembler()
        code.emit(.move(.r6, .r1))  // the record
        switch event {
        case .constant(let number):
            code.emit(.store(.word, .r10, -8, Int32(bitPattern: number)))
        case .cookie:
            code.emit(.call(.getAttachCookie))  // r1 is still the context
            code.emit(.store(.word, .r10, -8, .r0))
        }
        code.emit(.call(.getCurrentPidTgid))  // tgid << 32 | tid
        code.emit(.store(.word, .r10, -16, .r0))
        code.emit(.shiftRight(.r0, 32))
        code.emit(.store(.word, .r10, -12, .r0))
        if let reason {
            guard let size = BPFInstruction.Size(bytes: reason.size), let offset = Int16(exactly: reason.offset) else {
                return nil
            }
            code.emit(.load(size, .r1, .r6, offset))
            code.emit(.store(.word, .r10, -4, .r1))
        } else {
            code.emit(.store(.word, .r10, -4, Int32(bitPattern: noReason)))
        }
        MapUpdate.emit(&code, .count, map: counts, key: -16, scratch: -24, dropped: dropped, tag: "count")
        // 1: the hit goes on to the tracepoint's perf events. With 0 the kernel would drop it
        // for every other perf user of the tracepoint (the tracepoint source, perf, kvm_stat).
        code.emit(.move(.r0, 1), .exit)
        return code.assembled()
    }
}
